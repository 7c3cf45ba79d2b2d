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

Nothing is written before the whole input has been read once (``_scan``): a file
that does not decode, input fields named like the row's own fields (RESERVED_FIELDS
in rows.py: refused, or moved to ``input_<name>`` with ``rename_fields``) and a file
none of whose records can be classified (a forgotten text field) fail first, and
OUTPUT is checked like every command's output (data/atomic.py): never an input, a
folder, or an existing file unless ``overwrite``. A run that fails before its first
row leaves no OUTPUT.partial behind.
"""

import functools
import json
import os
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from spacy.language import Language

from ..components.pipes import Classifier
from ..data.atomic import check_output_file
from ..data.formats import detect_format
from ..data.records import check_encoding, file_encoding, read_rows
from ..errors import Errors, Warnings
from .rows import RESERVED_FIELDS, predict_records, record_problem, renamed_field, reserved_clashes

STDOUT = "-"
# A progress bar around the stream of predictions: called with the stream, the
# number of records (None if unknown) and the number already written (resume).
Progress = Callable[[Iterator[Any], Optional[int], int], Iterable[Any]]


@dataclass
class PredictResult:
    """n_rows (int): Rows in the output. n_resumed (int): Rows kept from an earlier
    run. n_empty (int): Records with empty text. n_errors (int): Records that could
    not be read. n_records (int): Records in the input (all of them, also those
    of an earlier run)."""

    n_rows: int = 0
    n_resumed: int = 0
    n_empty: int = 0
    n_errors: int = 0
    n_records: int = 0


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
    encoding: Optional[str] = None,
    fallback_encoding: Optional[str] = None,
    rename_fields: bool = False,
    overwrite: bool = False,
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
    encoding (Optional[str]): The input's encoding (default: UTF-8, a byte-order
        mark skipped).
    fallback_encoding (Optional[str]): The encoding to read the input in if it is
        not valid in `encoding` (named in a warning, BCW023); None to make that
        an error (BC047).
    rename_fields (bool): Write input fields named like the row's own fields
        (line, cats, predicted_label, predicted_labels, prediction_set, error) as
        input_<name>; without it, such fields are an error (BC083).
    overwrite (bool): Replace an existing OUTPUT file (never an input or a folder).
    RETURNS (PredictResult): What was written.
    RAISES (ValueError): A coded error (BC0xx) for an input or output that cannot
        be used, before anything is written.
    """
    input_path = Path(input_path)
    classifier = Classifier(nlp, component)
    file_format = detect_format(input_path)
    if file_format in ("folders", "spacy"):
        detail = "local prediction reads one JSONL, CSV, TSV or text file (--engine ray reads folders)"
        raise ValueError(Errors.BC043.format(path=input_path, detail=detail))
    if file_format == "txt":
        text_field = "text"  # one text per line
    to_stream = isinstance(output_path, str) and output_path == STDOUT or hasattr(output_path, "write")
    if to_stream and resume:
        raise ValueError(
            Errors.BC088.format(
                option="--resume",
                context="with standard output as OUTPUT",
                detail="it continues an OUTPUT.partial file",
                fix=", or give an output file",
            )
        )
    if not to_stream:
        output_path = Path(output_path)
        model_path = getattr(nlp, "path", None)
        check_output_file(
            output_path,
            inputs=[input_path, model_path],
            overwrite=overwrite,
            command="predict",
            example="predictions.jsonl",
        )
        partial = output_path.with_name(output_path.name + ".partial")
        if partial.exists() and not resume:
            n = _count_complete_rows(partial)
            raise ValueError(Errors.BC044.format(partial=partial, n=n, output=output_path))
        if resume and not partial.exists():
            raise ValueError(Errors.BC045.format(partial=partial, detail="there is no such file"))
    check_encoding(encoding, "--encoding")
    if fallback_encoding is not None:
        encoding = file_encoding(input_path, encoding, fallback_encoding)
    scan = _scan(input_path, file_format, text_field, encoding)
    _check_scan(scan, input_path, text_field, rename_fields)
    result = PredictResult(n_records=scan.n_records)
    if not show_progress:
        progress = None
    total = scan.n_records if progress is not None else None
    records = _records(input_path, file_format, text_field, encoding)
    write = functools.partial(
        _write_rows,
        nlp,
        classifier,
        records,
        text_field=text_field,
        keep_text=keep_text,
        batch_size=batch_size,
        total=total,
        progress=progress,
        rename=rename_fields and bool(scan.clashes),
    )
    if to_stream:
        stream = sys.stdout if output_path == STDOUT else output_path
        write(stream, result)
        _warn_about(scan, input_path)
        return result
    if resume:
        result.n_resumed = _skip_written(partial, records)
    try:
        output_path.parent.mkdir(parents=True, exist_ok=True)
        file_ = partial.open("a" if resume else "x", encoding="utf-8")
    except OSError as e:
        raise ValueError(Errors.BC089.format(path=partial, reason=e.strerror or e)) from e
    try:
        with file_:
            write(file_, result, done=result.n_resumed, name=partial)
            file_.flush()
            os.fsync(file_.fileno())
    except BaseException:
        if not resume:
            _drop_if_no_rows(partial)  # nothing to resume: leave nothing behind
        raise
    if output_path.exists() and not overwrite:  # it appeared meanwhile: keep it, and the complete partial
        raise ValueError(Errors.BC085.format(path=output_path, command="predict"))
    os.replace(partial, output_path)
    result.n_rows += result.n_resumed
    _warn_about(scan, input_path)
    return result


predict = predict_file  # the name this function had in cli/predict.py


@dataclass
class _Scan:
    """What one read of the whole input found (before anything is written)."""

    n_records: int = 0
    n_problems: int = 0
    first_problem: Optional[Tuple[int, str]] = None
    fields: Dict[str, int] = field(default_factory=dict)  # each field and its first line
    clashes: List[str] = field(default_factory=list)


def _scan(input_path: Path, file_format: str, text_field: str, encoding: Optional[str]) -> _Scan:
    """Read the whole input once: its records, their fields and their problems.
    A file that does not decode fails here (BC047), before any row is written."""
    scan = _Scan()
    for line, row, problem in _records(input_path, file_format, text_field, encoding):
        scan.n_records += 1
        for name in row:
            scan.fields.setdefault(name, line)
        if problem is not None:
            scan.n_problems += 1
            if scan.first_problem is None:
                scan.first_problem = (line, problem)
    scan.clashes = reserved_clashes(scan.fields, "local")
    return scan


def _check_scan(scan: _Scan, input_path: Path, text_field: str, rename_fields: bool) -> None:
    """Refuse an input whose fields clash with the row's own (BC083) or none of
    whose records can be classified (BC087)."""
    if scan.clashes:
        reserved = ", ".join(RESERVED_FIELDS["local"])
        line = min(scan.fields[name] for name in scan.clashes)
        renamed = [renamed_field(name) for name in scan.clashes]
        taken = [name for name in renamed if name in scan.fields]
        if not rename_fields:
            fix = f"Rename them in the input, or pass --rename-fields to write them as {', '.join(renamed)}."
        elif taken:
            fix = f"--rename-fields cannot move them: the input has {', '.join(taken)} too. Rename them in the input."
        else:
            fix = ""
        if fix:
            fields = ", ".join(scan.clashes)
            raise ValueError(Errors.BC083.format(path=input_path, fields=fields, line=line, reserved=reserved, fix=fix))
    if scan.n_records and scan.n_problems == scan.n_records:
        line, problem = scan.first_problem or (0, "")
        if f"text field '{text_field}' is missing" in problem:
            hint = "Name the field that holds the texts with --text-field."
        elif f"text field '{text_field}' must be a string" in problem:
            hint = "Check --text-field: the field must hold the texts (strings)."
        else:
            hint = "Check that the file is what its suffix says: one JSON object per line (.jsonl), a header row and equal columns (.csv, .tsv)."
        raise ValueError(Errors.BC087.format(n=scan.n_records, path=input_path, line=line, problem=problem, hint=hint))


def _warn_about(scan: _Scan, input_path: Path) -> None:
    if not scan.n_records:
        warnings.warn(Warnings.BCW021.format(path=input_path))
    elif scan.n_problems:
        line, problem = scan.first_problem or (0, "")
        warnings.warn(
            Warnings.BCW020.format(n=scan.n_problems, total=scan.n_records, path=input_path, line=line, problem=problem)
        )


def _records(
    input_path: Path, file_format: str, text_field: str, encoding: Optional[str] = None
) -> Iterator[Tuple[int, Dict[str, Any], Optional[str]]]:
    """YIELDS (Tuple[int, Dict[str, Any], Optional[str]]): Each record's line, its
    fields and, if it cannot be classified, why."""
    rows = read_rows(input_path, file_format, keep_invalid=True, keep_blank=file_format == "txt", encoding=encoding)
    for line, row in rows:
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
    rename: bool = False,
    name: Optional[Path] = None,
) -> None:
    reserved = set(RESERVED_FIELDS["local"]) if rename else set()
    texts = ((row.get(text_field), error, (line, row)) for line, row, error in records)
    predictions = predict_records(nlp, classifier, texts, text_field=text_field, batch_size=batch_size)
    for fields, (line, row) in predictions if progress is None else progress(predictions, total, done):
        out: Dict[str, Any] = {"line": line}
        out.update(
            (renamed_field(k) if k in reserved else k, v) for k, v in row.items() if keep_text or k != text_field
        )
        out.update(fields)
        if "error" in fields:
            result.n_errors += 1
        else:
            result.n_empty += not row[text_field].strip()
        text = json.dumps(out, ensure_ascii=False) + "\n"
        if name is None:
            file_.write(text)
        else:
            try:
                file_.write(text)
            except OSError as e:  # disk full: the rows so far stay for --resume
                raise ValueError(Errors.BC089.format(path=name, reason=e.strerror or e)) from e
        result.n_rows += 1


def _drop_if_no_rows(partial: Path) -> None:
    """Remove a partial output this run created that holds no complete row."""
    try:
        if partial.exists() and _count_complete_rows(partial) == 0:
            partial.unlink()
    except OSError:
        pass


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
