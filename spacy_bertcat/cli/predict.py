"""`predict`: JSONL / CSV / text files in, JSONL with doc.cats out (streaming).

Every input record gives exactly one output row, in input order, carrying its line
number (`line`): a text file's blank lines and records with empty text get the
component's defined result for empty text (and no predicted label), a record that
cannot be read (invalid JSON, no text field) gets an `error` and no scores. So output
rows line up with input rows, and nothing stops a run half-way.

The output is written to `OUTPUT.partial` and renamed to OUTPUT only when the run is
complete: a run that fails or is interrupted leaves the partial file, which
`--resume` continues (it skips the rows already written, after checking that they
line up with the input), and never a file under the final name that looks complete.
`-` as OUTPUT streams the rows to standard output (messages go to standard error).
"""
import contextlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Optional, Tuple

from spacy.language import Language
from wasabi import msg

from ..data import InvalidRow, detect_format, read_rows
from ..errors import Errors
from ..labels import SETS
from ._util import Arg, Classifier, Opt, app, count_lines, load_pipeline, only_component, progress

STDOUT = "-"


@app.command("predict")
def predict_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline package name or path"),
    input_path: Path = Arg(..., help="Input: .jsonl or .csv/.tsv with a text field, or .txt with one text per line", exists=True, dir_okay=False),
    output_path: str = Arg(..., help="Output JSONL file, or - for standard output"),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field (column) of JSONL/CSV input"),
    component: Optional[str] = Opt(None, "--component", "-C", help="The classifier to run and report (default: the first that sets doc.cats); other classifiers are not run"),
    batch_size: Optional[int] = Opt(None, "--batch-size", help="Docs per nlp.pipe batch (default: the pipeline's)"),
    keep_text: bool = Opt(True, "--keep-text/--drop-text", help="Copy the text to the output"),
    resume: bool = Opt(False, "--resume", help="Continue the OUTPUT.partial file an interrupted run left"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    # fmt: on
):
    """
    Classify texts with a trained pipeline. Each output line holds the input
    record's line number (`line`), its fields, `cats` (the score of each label)
    and the decision: `predicted_label` (exclusive classes: the highest score) or
    `predicted_labels` (multi-label: the labels at or above their threshold);
    for a pipeline calibrated with prediction sets, `prediction_set` (see
    `calibrate`).
    Texts are streamed through nlp.pipe, so large files need little memory; the
    output appears under its name only when the run is complete (see --resume).
    """
    to_stdout = output_path == STDOUT
    rows_out = sys.stdout
    # With rows on standard output, every message goes to standard error.
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        nlp = load_pipeline(model, gpu_id)
        try:
            result = predict(
                nlp, input_path, rows_out if to_stdout else Path(output_path), text_field=text_field,
                component=component, batch_size=batch_size, keep_text=keep_text, resume=resume,
            )
        except ValueError as e:
            msg.fail(str(e), exits=1)
        except KeyboardInterrupt:
            msg.fail("Interrupted", _resume_hint(output_path), exits=130)
        where = "standard output" if to_stdout else output_path
        msg.good(f"Wrote {result.n_rows} predictions to {where}" + (f" ({result.n_resumed} from the earlier run)" if result.n_resumed else ""))
        if result.n_empty:
            msg.warn(f"{result.n_empty} record(s) had empty text: they have the result for empty text and no predicted label")
        if result.n_errors:
            msg.warn(f"{result.n_errors} record(s) could not be read: their rows have an 'error' field and no scores")


@dataclass
class PredictResult:
    """n_rows (int): Rows in the output. n_resumed (int): Rows kept from an earlier
    run. n_empty (int): Records with empty text. n_errors (int): Records that could
    not be read."""

    n_rows: int = 0
    n_resumed: int = 0
    n_empty: int = 0
    n_errors: int = 0


def predict(
    nlp: Language,
    input_path: Path,
    output_path: Any,
    *,
    text_field: str = "text",
    component: Optional[str] = None,
    batch_size: Optional[int] = None,
    keep_text: bool = True,
    show_progress: bool = True,
    resume: bool = False,
) -> PredictResult:
    """Stream the records of a file through the pipeline into a JSONL file (or a
    text stream, or "-" for standard output), one output row per input record.

    RETURNS (PredictResult): What was written.
    """
    classifier = Classifier(nlp, component)
    file_format = detect_format(input_path)
    if file_format == "txt":
        text_field = "text"  # one text per line
    result = PredictResult()
    total = count_lines(input_path, blank=file_format == "txt")
    if total is not None and file_format in ("csv", "tsv"):
        total = max(total - 1, 0)  # the header
    if output_path == STDOUT or hasattr(output_path, "write"):
        stream = sys.stdout if output_path == STDOUT else output_path
        _write_rows(nlp, classifier, _records(input_path, file_format, text_field), stream, result,
                    text_field=text_field, keep_text=keep_text, batch_size=batch_size, total=total, show_progress=show_progress)
        return result
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    partial = output_path.with_name(output_path.name + ".partial")
    records = _records(input_path, file_format, text_field)
    if partial.exists() and not resume:
        raise ValueError(Errors.BC044.format(partial=partial, n=_count_complete_rows(partial), output=output_path))
    if resume:
        if not partial.exists():
            raise ValueError(Errors.BC045.format(partial=partial, detail="there is no such file"))
        result.n_resumed = _skip_written(partial, records)
    with partial.open("a" if resume else "w", encoding="utf-8") as file_:
        _write_rows(nlp, classifier, records, file_, result, text_field=text_field, keep_text=keep_text,
                    batch_size=batch_size, total=total, show_progress=show_progress, done=result.n_resumed)
        file_.flush()
        os.fsync(file_.fileno())
    os.replace(partial, output_path)
    result.n_rows += result.n_resumed
    return result


def _records(input_path: Path, file_format: str, text_field: str) -> Iterator[Tuple[int, Dict[str, Any], Optional[str]]]:
    """YIELDS (Tuple[int, Dict[str, Any], Optional[str]]): Each record's line, its
    fields and, if it cannot be classified, why."""
    for line, row in read_rows(input_path, file_format, keep_invalid=True, keep_blank=file_format == "txt"):
        if isinstance(row, InvalidRow):
            yield line, {}, row.problem
        elif text_field not in row:
            yield line, row, f"the text field '{text_field}' is missing (fields: {sorted(row)})"
        elif not isinstance(row[text_field], str):
            yield line, row, f"the text field '{text_field}' must be a string, got {row[text_field]!r}"
        else:
            yield line, row, None


def _write_rows(
    nlp: Language, classifier: Classifier, records, file_: IO[str], result: PredictResult, *,
    text_field: str, keep_text: bool, batch_size: Optional[int], total: Optional[int], show_progress: bool, done: int = 0,
) -> None:
    texts = ((row.get(text_field) if error is None else "", (line, row, error)) for line, row, error in records)
    with only_component(nlp, classifier.name):
        docs = nlp.pipe(texts, as_tuples=True, batch_size=batch_size or nlp.batch_size)
        for doc, (line, row, error) in progress(docs, total=total, desc="Predicting", disable=not show_progress, initial=done):
            out: Dict[str, Any] = {"line": line}
            out.update((k, v) for k, v in row.items() if keep_text or k != text_field)
            if error is not None:
                out["error"] = error
                result.n_errors += 1
            else:
                empty = not doc.text.strip()
                result.n_empty += empty
                out["cats"] = {label: doc.cats[label] for label in classifier.labels if label in doc.cats}
                if classifier.exclusive:
                    out["predicted_label"] = None if empty or not out["cats"] else max(out["cats"], key=out["cats"].get)
                else:
                    out["predicted_labels"] = [] if empty else [
                        label for label, score in out["cats"].items() if score >= classifier.thresholds[label]
                    ]
                prediction_set = (doc._.get(SETS) or {}).get(classifier.name)
                if prediction_set is not None:
                    out["prediction_set"] = prediction_set
            file_.write(json.dumps(out, ensure_ascii=False) + "\n")
            result.n_rows += 1


def _count_complete_rows(path: Path) -> int:
    with path.open("rb") as file_:
        return sum(1 for line in file_ if line.endswith(b"\n"))


def _skip_written(partial: Path, records: Iterator) -> int:
    """Cut an unfinished last row off the partial output, and skip as many input
    records as it holds, checking that their lines match.

    RETURNS (int): The number of rows kept.
    """
    data = partial.read_bytes()
    keep = data[: data.rfind(b"\n") + 1]
    if len(keep) != len(data):
        with partial.open("r+b") as file_:
            file_.truncate(len(keep))
    written = keep.decode("utf-8").splitlines()
    for i, text in enumerate(written):
        try:
            line = json.loads(text)["line"]
        except (ValueError, KeyError, TypeError) as e:
            raise ValueError(Errors.BC045.format(partial=partial, detail=f"row {i + 1} is not a prediction row ({e})")) from e
        record = next(records, None)
        if record is None or record[0] != line:
            detail = f"its row {i + 1} is for line {line}, but the input's record {i + 1} is on line {record[0] if record else '(none)'}"
            raise ValueError(Errors.BC045.format(partial=partial, detail=detail + "; was the input changed?"))
    return len(written)


def _resume_hint(output_path: str) -> str:
    if output_path == STDOUT:
        return ""
    return f"The rows written so far are in {output_path}.partial; run the same command with --resume to continue."
