"""The training logger of a trial: the config's own logger, plus one JSON line per
evaluation, flushed at once, that the trial reads to report to Ray Tune (spaCy's
ConsoleLogger writes its file buffered, so a reader would see the scores late)."""

import json
import math
from pathlib import Path
from typing import IO, Any, Callable, Dict, Optional, Tuple

from spacy.util import registry

LogStep = Callable[[Optional[Dict[str, Any]]], None]
Finalize = Callable[[], None]


@registry.loggers("spacy-bertcat.tune_logger.v1")
def create_tune_logger_v1(path: str, logger: Optional[Callable] = None) -> Callable:
    """A logger that appends each evaluation to a JSONL file and passes it on.

    path (str): The JSONL file: one line per evaluation, with the step, the epoch,
        spaCy's weighted score ("score") and the other numeric scores.
    logger (Optional[Callable]): The config's own logger (e.g. spacy.ConsoleLogger.v3),
        called as before; None for none.
    """

    def setup(nlp: Any, stdout: IO = None, stderr: IO = None) -> Tuple[LogStep, Finalize]:  # type: ignore[assignment]
        inner = logger(nlp, stdout, stderr) if logger is not None else None
        out = Path(path).open("a", encoding="utf-8")

        def log_step(info: Optional[Dict[str, Any]]) -> None:
            if inner is not None:
                inner[0](info)
            if info is None:
                return
            scores = {}
            for key, value in (info.get("other_scores") or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    scores[str(key)] = float(value)
            row = {
                "step": int(info["step"]),
                "epoch": int(info["epoch"]),
                "score": float(info["score"]),
                "scores": scores,
            }
            out.write(json.dumps(row) + "\n")
            out.flush()

        def finalize() -> None:
            out.close()
            if inner is not None:
                inner[1]()

        return log_step, finalize

    return setup
