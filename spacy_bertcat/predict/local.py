"""Local prediction: the records of one JSONL / CSV / TSV / text file through a
pipeline's classifier in this process, streamed into a JSONL file (``predict_file``;
`spacy-bertcat predict` with the local engine).

Every input record gives exactly one output row, in input order, carrying its line
number (`line`): a text file's blank lines and records with empty text get the
component's defined result for empty text (and no predicted label), a record that
cannot be read (invalid JSON, no text field) gets an `error` and no scores (the
row fields are rows.py's). So output rows line up with input rows, and nothing
stops a run half-way.

The output is written to `OUTPUT.partial` and renamed to OUTPUT only when the run is
complete: a run that fails or is interrupted leaves the partial file, which
``resume=True`` continues (it skips the rows already written, after checking that
they line up with the input), and never a file under the final name that looks
complete. An open text stream, or "-" for standard output, takes the rows as they
come instead.
"""

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, Optional, Tuple, Union

from spacy.language import Language

from ..components.pipes import Classifier
from ..data.formats import detect_format
from ..data.records import read_rows
from ..errors import Errors
from .rows import predict_records, record_problem

STDOUT = "-"
# A progress bar around the stream of predictions: called with the stream, the
# number of records (None if unknown) and the number already written (resume).
Progress = Callable[[Iterator[Any], Optional[int], int], Iterable[Any]]


@dataclass
class PredictResult:
    """n_rows (int): Rows in the output. n_resumed (int): Rows kept from an earlier
    run. n_empty (int): Records with empty text. n_errors (int): Records that could
    not be read."""

    n_rows: int = 0
    n_resumed: int = 0
    n_empty: int = 0
    n_errors: int = 0


def predict_file(
    nlp: Language,
    input_path: Union[str, Path],
    output_path: Any,
    *,
    text_field: str = "text",
    component: Optional[str] = None,
    batch_size: Optional[int] = None,
    keep_text: bool = True,
    show_progress: bool = True,
    resume: bool = False,
    progress: Optional[Progress] = None,
) -> PredictResult:
    """Stream the records of a file through the pipeline into a JSONL file (or a
    text stream, or "-" for standard output), one output row per input record.

    nlp (Language): The pipeline.
    input_path (Union[str, Path]): A JSONL, CSV, TSV or text file (one text per line).
    output_path (Any): The output JSONL file (a str or Path: written to
        OUTPUT.partial, renamed when complete), an open text stream, or "-".
    text_field (str): The text field (column) of JSONL/CSV/TSV records.
    component (Optional[str]): The classifier to run (default: the first that sets
        doc.cats); the pipeline's other classifiers do not run.
    batch_size (Optional[int]): Docs per nlp.pipe batch (default: the pipeline's).
    keep_text (bool): Copy the text to the output.
    show_progress (bool): Show `progress`, if given.
    resume (bool): Continue the OUTPUT.partial file an interrupted run left.
    progress (Optional[Progress]): Wraps the stream of predictions in a progress
        bar (see Progress); None for no bar.
    RETURNS (PredictResult): What was written.
    """
    input_path = Path(input_path)
    classifier = Classifier(nlp, component)
    file_format = detect_format(input_path)
    if file_format == "txt":
        text_field = "text"  # one text per line
    result = PredictResult()
    if not show_progress:
        progress = None
    total = _count_records(input_path, file_format) if progress is not None else None
    if output_path == STDOUT or hasattr(output_path, "write"):
        stream = sys.stdout if output_path == STDOUT else output_path
        _write_rows(
            nlp,
            classifier,
            _records(input_path, file_format, text_field),
            stream,
            result,
            text_field=text_field,
            keep_text=keep_text,
            batch_size=batch_size,
            total=total,
            progress=progress,
        )
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
        _write_rows(
            nlp,
            classifier,
            records,
            file_,
            result,
            text_field=text_field,
            keep_text=keep_text,
            batch_size=batch_size,
            total=total,
            progress=progress,
            done=result.n_resumed,
        )
        file_.flush()
        os.fsync(file_.fileno())
    os.replace(partial, output_path)
    result.n_rows += result.n_resumed
    return result


predict = predict_file  # the name this function had in cli/predict.py


def _records(
    input_path: Path, file_format: str, text_field: str
) -> Iterator[Tuple[int, Dict[str, Any], Optional[str]]]:
    """YIELDS (Tuple[int, Dict[str, Any], Optional[str]]): Each record's line, its
    fields and, if it cannot be classified, why."""
    for line, row in read_rows(input_path, file_format, keep_invalid=True, keep_blank=file_format == "txt"):
        yield line, row, record_problem(row, text_field)  # an InvalidRow is an empty dict


def _write_rows(
    nlp: Language,
    classifier: Classifier,
    records,
    file_: IO[str],
    result: PredictResult,
    *,
    text_field: str,
    keep_text: bool,
    batch_size: Optional[int],
    total: Optional[int],
    progress: Optional[Progress],
    done: int = 0,
) -> None:
    texts = ((row.get(text_field), error, (line, row)) for line, row, error in records)
    predictions = predict_records(nlp, classifier, texts, text_field=text_field, batch_size=batch_size)
    for fields, (line, row) in predictions if progress is None else progress(predictions, total, done):
        out: Dict[str, Any] = {"line": line}
        out.update((k, v) for k, v in row.items() if keep_text or k != text_field)
        out.update(fields)
        if "error" in fields:
            result.n_errors += 1
        else:
            result.n_empty += not row[text_field].strip()
        file_.write(json.dumps(out, ensure_ascii=False) + "\n")
        result.n_rows += 1


def _count_records(path: Path, file_format: str) -> Optional[int]:
    """RETURNS (Optional[int]): The records of a file (a progress bar's total): its
    lines that are not blank, every line of a text file, less a CSV/TSV header;
    None if it is not a file."""
    if not path.is_file():
        return None
    with path.open("rb") as file_:
        total = sum(1 for line in file_ if file_format == "txt" or line.strip())
    return max(total - 1, 0) if file_format in ("csv", "tsv") else total


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
            raise ValueError(
                Errors.BC045.format(partial=partial, detail=f"row {i + 1} is not a prediction row ({e})")
            ) from e
        record = next(records, None)
        if record is None or record[0] != line:
            detail = f"its row {i + 1} is for line {line}, but the input's record {i + 1} is on line {record[0] if record else '(none)'}"
            raise ValueError(Errors.BC045.format(partial=partial, detail=detail + "; was the input changed?"))
    return len(written)
