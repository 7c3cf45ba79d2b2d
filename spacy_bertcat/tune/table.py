"""The trials table of a study: one row per finished trial, rewritten atomically
(trials.json and trials.csv) each time a trial finishes, so that a study killed at
any moment keeps every trial it finished, and --resume reads them back."""

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from ..data.atomic import atomic_write

# A trial's status: it ran all its steps, ASHA stopped it early, the time budget
# stopped it, or it failed (its `spacy train` exited with an error or was killed).
COMPLETED, STOPPED_EARLY, STOPPED_BUDGET, FAILED = "completed", "stopped_early", "stopped_budget", "failed"
SCORED = (COMPLETED, STOPPED_EARLY, STOPPED_BUDGET)
JSON_NAME, CSV_NAME = "trials.json", "trials.csv"


@dataclass
class TrialRecord:
    """One finished trial.

    number (int): The trial's number (its folder trials/trial-NNN).
    status (str): COMPLETED, STOPPED_EARLY, STOPPED_BUDGET or FAILED.
    score (Optional[float]): Its best dev score (spaCy's weighted score, 0-1: what
        picks its model-best), None where it was never evaluated.
    params (Dict[str, Any]): The sampled parameters (a share as the share).
    settings (Dict[str, Any]): The values its config got (a share as steps).
    steps (int): The last step evaluated. evaluations (int): Evaluations reported.
    seconds (float): Its wall time. error (Optional[str]): Why it failed.
    folder (str): Its folder, relative to the study.
    defaults (bool): Whether it ran the config's own settings.
    """

    number: int
    status: str
    score: Optional[float]
    params: Dict[str, Any]
    settings: Dict[str, Any]
    steps: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    error: Optional[str] = None
    folder: str = ""
    defaults: bool = False


def best_record(records: List["TrialRecord"]) -> Optional[TrialRecord]:
    """RETURNS (Optional[TrialRecord]): The trial with the best dev score (the lower
    number on a tie, so the config's own settings win a tie), None if none scored."""
    scored = [r for r in records if r.status in SCORED and r.score is not None]
    return max(scored, key=lambda r: (r.score, -r.number)) if scored else None


def write_table(output: Path, records: List[TrialRecord]) -> None:
    """Write trials.json and trials.csv (one column per parameter) atomically."""
    rows = sorted(records, key=lambda r: r.number)
    atomic_write(output / JSON_NAME, json.dumps([asdict(r) for r in rows], indent=2).encode("utf-8"))
    params = sorted({p for r in rows for p in r.params})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    head = ["trial", "status", "dev_score", "steps", "evaluations", "seconds"]
    writer.writerow(head + params + ["error", "folder"])
    for r in rows:
        values: List[Any] = [r.settings.get(p, "") for p in params]
        score = "" if r.score is None else f"{r.score:.6f}"
        writer.writerow(
            [r.number, r.status, score, r.steps, r.evaluations, f"{r.seconds:.1f}", *values, r.error or "", r.folder]
        )
    atomic_write(output / CSV_NAME, buffer.getvalue().encode("utf-8"))


def read_table(output: Path) -> List[TrialRecord]:
    """RETURNS (List[TrialRecord]): The finished trials of a study folder (none if
    it has no table yet)."""
    path = output / JSON_NAME
    if not path.exists():
        return []
    return [TrialRecord(**row) for row in json.loads(path.read_text(encoding="utf-8"))]
