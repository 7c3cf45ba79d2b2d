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

`--engine ray` runs the same prediction on Ray Data (spacy_bertcat/ray.py): INPUT may
be a file, a folder of shards or a glob of JSONL / CSV / TSV / text / Parquet files,
OUTPUT is a folder of Parquet (or JSONL) shards, written into a hidden folder beside
it and renamed when complete. Rows carry their file (`source`) and line (or Parquet
`row`), and come out in input order.
"""
import contextlib
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, Iterator, Optional, Tuple

import typer
from spacy.language import Language
from wasabi import msg

from ..data.records import detect_format, read_rows
from ..errors import Errors
from ..predict.rows import predict_records, record_problem
from ._util import Arg, Classifier, Opt, app, count_lines, load_pipeline, progress

STDOUT = "-"
ENGINES = ("local", "ray")
RAY_BATCH_SIZE = 256


@app.command("predict")
def predict_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline package name or path"),
    input_path: str = Arg(..., help="Input: .jsonl or .csv/.tsv with a text field, or .txt with one text per line; with --engine ray also .parquet, a folder of such files or a glob (quoted: 'data/*.jsonl')"),
    output_path: str = Arg(..., help="Output JSONL file, or - for standard output; with --engine ray a new folder of shards"),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field (column) of JSONL/CSV input"),
    component: Optional[str] = Opt(None, "--component", "-C", help="The classifier to run and report (default: the first that sets doc.cats); other classifiers are not run"),
    batch_size: Optional[int] = Opt(None, "--batch-size", help=f"Docs per nlp.pipe batch (default: the pipeline's); with --engine ray, rows per Ray batch (default {RAY_BATCH_SIZE})", min=1),
    keep_text: bool = Opt(True, "--keep-text/--drop-text", help="Copy the text to the output"),
    resume: bool = Opt(False, "--resume", help="Continue the OUTPUT.partial file an interrupted run left"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    engine: str = Opt("local", "--engine", help="local: this process, streaming one file; ray: Ray Data actors, on this machine or the cluster of --address"),
    output_format: str = Opt("parquet", "--format", help="--engine ray: the shards' format, parquet or jsonl"),
    concurrency: int = Opt(1, "--concurrency", help="--engine ray: actors, each with its own copy of the pipeline", min=1),
    num_gpus: float = Opt(0, "--num-gpus", help="--engine ray: GPUs per actor (0: CPU; 0.5: two actors share a GPU)", min=0),
    num_cpus: Optional[float] = Opt(None, "--num-cpus", help="--engine ray: CPUs (torch threads) per actor (default: on a local Ray, its CPUs shared among the actors; on a cluster, 1)"),
    address: Optional[str] = Opt(None, "--address", help="--engine ray: the Ray cluster to connect to (e.g. auto, or ray://head:10001); default: a local Ray on this machine's CPUs"),
    rows_per_file: int = Opt(100_000, "--rows-per-file", help="--engine ray: rows to collect at least into each output shard", min=1),
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
    With --engine ray, Ray Data actors classify the records of a file, a folder
    or a glob into a new folder of Parquet or JSONL shards (see --format), each
    row with its `source` file and `line` (`row` in Parquet), in input order.
    """
    if engine not in ENGINES:
        raise typer.BadParameter(f"use one of {', '.join(ENGINES)}", param_hint="'--engine'")
    if engine == "ray":
        _predict_ray(
            model, input_path, output_path, output_format=output_format, text_field=text_field, component=component,
            batch_size=batch_size, concurrency=concurrency, num_gpus=num_gpus, num_cpus=num_cpus, address=address,
            keep_text=keep_text, rows_per_file=rows_per_file, resume=resume, gpu_id=gpu_id,
        )
        return
    if not Path(input_path).is_file():
        raise typer.BadParameter(f"File '{input_path}' does not exist (a folder or a glob needs --engine ray).",
                                 param_hint="'INPUT_PATH'")
    to_stdout = output_path == STDOUT
    rows_out = sys.stdout
    # With rows on standard output, every message goes to standard error.
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        nlp = load_pipeline(model, gpu_id)
        try:
            result = predict(
                nlp, Path(input_path), rows_out if to_stdout else Path(output_path), text_field=text_field,
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
        yield line, row, record_problem(row, text_field)  # an InvalidRow is an empty dict


def _write_rows(
    nlp: Language, classifier: Classifier, records, file_: IO[str], result: PredictResult, *,
    text_field: str, keep_text: bool, batch_size: Optional[int], total: Optional[int], show_progress: bool, done: int = 0,
) -> None:
    texts = ((row.get(text_field), error, (line, row)) for line, row, error in records)
    predictions = predict_records(nlp, classifier, texts, text_field=text_field, batch_size=batch_size)
    for fields, (line, row) in progress(predictions, total=total, desc="Predicting", disable=not show_progress, initial=done):
        out: Dict[str, Any] = {"line": line}
        out.update((k, v) for k, v in row.items() if keep_text or k != text_field)
        out.update(fields)
        if "error" in fields:
            result.n_errors += 1
        else:
            result.n_empty += not row[text_field].strip()
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


def _predict_ray(
    model: str, input_path: str, output_path: str, *, output_format: str, text_field: str, component: Optional[str],
    batch_size: Optional[int], concurrency: int, num_gpus: float, num_cpus: Optional[float], address: Optional[str],
    keep_text: bool, rows_per_file: int, resume: bool, gpu_id: int,
) -> None:
    """predict --engine ray: connect to (or start) Ray, run ray.predict_files and
    print a one-line summary."""
    if resume or gpu_id >= 0 or output_path == STDOUT:
        what = "--resume" if resume else "--gpu-id (use --num-gpus)" if gpu_id >= 0 else "- as OUTPUT"
        msg.fail(f"{what} does not go with --engine ray, which writes a folder of shards", exits=1)
    from ..predict import ray as bertcat_ray

    try:
        ray = bertcat_ray.import_ray()
        # What can be checked here fails before Ray starts.
        bertcat_ray.check_output_folder(Path(output_path))
        bertcat_ray.resolve_inputs(input_path)
        bertcat_ray.resolve_model(model)
        started = _init_ray(ray, address)
        try:
            if started:
                num_cpus = _check_local_resources(ray, concurrency, num_cpus, num_gpus)
            result = bertcat_ray.predict_files(
                model, input_path, output_path, output_format=output_format, text_column=text_field,
                component=component, batch_size=batch_size or RAY_BATCH_SIZE, concurrency=concurrency,
                num_gpus=num_gpus, num_cpus=num_cpus, keep_text=keep_text, rows_per_file=rows_per_file,
            )
        finally:
            if started:
                ray.shutdown()
    except ValueError as e:
        msg.fail(str(e), exits=1)
    except KeyboardInterrupt:
        msg.fail("Interrupted: nothing was written to OUTPUT", exits=130)
    msg.good(f"Wrote {result.n_rows} predictions ({result.n_errors} with an error) in {result.seconds:.1f} s: {output_path}")


def _init_ray(ray: Any, address: Optional[str]) -> bool:
    """Connect to the cluster at `address`, or start a local Ray (no dashboard,
    warnings only) unless this process is connected already.

    RETURNS (bool): Whether a local Ray was started here (to shut down after).
    """
    # Ray Data's console log: warnings only (its progress is logged at INFO where
    # stderr is not a terminal; on a terminal it draws progress bars).
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if address:
        ray.init(address=address, **quiet)
        return False
    ray.init(include_dashboard=False, **quiet)
    return True


def _check_local_resources(ray: Any, concurrency: int, num_cpus: Optional[float], num_gpus: float) -> float:
    """RETURNS (float): The CPUs per actor on the local Ray: given, or its CPUs
    shared among the actors; raises BC074 for actors that would never start (Ray
    would wait for them for ever)."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if num_cpus is None:
        num_cpus = max(1, int(cpus // concurrency))
    if concurrency * num_cpus > cpus:
        raise ValueError(Errors.BC074.format(
            setting="concurrency", value=concurrency,
            detail=f"{concurrency} actor(s) of {num_cpus:g} CPU(s) need {concurrency * num_cpus:g} CPUs, and this "
                   f"machine's Ray has {cpus:g}; use fewer actors or --num-cpus",
        ))
    if num_gpus and concurrency * num_gpus > gpus:
        raise ValueError(Errors.BC074.format(
            setting="num_gpus", value=num_gpus,
            detail=f"{concurrency} actor(s) of {num_gpus:g} GPU(s) need {concurrency * num_gpus:g} GPUs, and this "
                   f"machine's Ray sees {gpus:g}",
        ))
    return num_cpus
