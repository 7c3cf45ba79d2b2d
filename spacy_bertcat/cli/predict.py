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
The prediction itself is spacy_bertcat/predict/local.py's (this module parses the
options and prints).

`--engine ray` runs the same prediction on Ray Data (spacy_bertcat/predict/ray.py): INPUT may
be a file, a folder of shards or a glob of JSONL / CSV / TSV / text / Parquet files,
OUTPUT is a folder of Parquet (or JSONL) shards, written into a hidden folder beside
it and renamed when complete. Rows carry their file (`source`) and line (or Parquet
`row`), and come out in input order.
"""

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Iterator, Optional

import typer
from wasabi import msg

from ..data.atomic import check_not_an_input
from ..errors import Errors
from ..predict.local import STDOUT, predict_file
from ..predict.rows import RESERVED_FIELDS
from ._util import Arg, Opt, app, flag, given, load_pipeline, plain_messages, progress, refuse_given

# The options of one engine only: (parameter name, what it does).
RAY_ONLY = {
    "output_format": "it sets the format of the Ray engine's shards",
    "concurrency": "it sets the number of Ray actors",
    "num_gpus": "it sets the GPUs of each Ray actor",
    "num_cpus": "it sets the CPUs of each Ray actor",
    "address": "it names the Ray cluster to connect to",
    "rows_per_file": "it sets the rows of each of the Ray engine's shards",
}
LOCAL_ONLY = {
    "resume": "it continues the OUTPUT.partial file of an interrupted local run",
    "gpu_id": "Ray actors get their GPUs from --num-gpus",
    "fallback_encoding": "the Ray engine reads every file in --encoding, and marks a line that is not valid in it",
    "rename_fields": "the Ray engine refuses input fields named like its rows' own",
    "overwrite": "the Ray engine writes a new folder and never replaces one",
}

ENGINES = ("local", "ray")
RAY_BATCH_SIZE = 256


@app.command("predict")
def predict_cli(
    # fmt: off
    ctx: typer.Context,
    model: str = Arg(..., help="Pipeline package name or path"),
    input_path: str = Arg(
        ...,
        help="Input: .jsonl or .csv/.tsv with a text field, or .txt with one text per line; with --engine ray also .parquet, a folder of such files or a glob (quoted: 'data/*.jsonl')",
    ),
    output_path: str = Arg(
        ..., help="Output JSONL file, or - for standard output; with --engine ray a new folder of shards"
    ),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field (column) of JSONL/CSV input"),
    component: Optional[str] = Opt(
        None,
        "--component",
        "-C",
        help="The classifier to run and report (default: the first that sets doc.cats); other classifiers are not run",
    ),
    batch_size: Optional[int] = Opt(
        None,
        "--batch-size",
        help=f"Docs per nlp.pipe batch (default: the pipeline's); with --engine ray, rows per Ray batch (default {RAY_BATCH_SIZE})",
        min=1,
    ),
    keep_text: bool = Opt(True, "--keep-text/--drop-text", help="Copy the text to the output"),
    resume: bool = Opt(False, "--resume", help="Continue the OUTPUT.partial file an interrupted run left"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    engine: str = Opt(
        "local",
        "--engine",
        help="local: this process, streaming one file; ray: Ray Data actors, on this machine or the cluster of --address",
    ),
    output_format: str = Opt("parquet", "--format", help="--engine ray: the shards' format, parquet or jsonl"),
    concurrency: int = Opt(
        1, "--concurrency", help="--engine ray: actors, each with its own copy of the pipeline", min=1
    ),
    num_gpus: float = Opt(
        0, "--num-gpus", help="--engine ray: GPUs per actor (0: CPU; 0.5: two actors share a GPU)", min=0
    ),
    num_cpus: Optional[float] = Opt(
        None,
        "--num-cpus",
        help="--engine ray: CPUs (torch threads) per actor (default: on a local Ray, its CPUs shared among the actors; on a cluster, 1)",
    ),
    address: Optional[str] = Opt(
        None,
        "--address",
        help="--engine ray: the Ray cluster to connect to (e.g. auto, or ray://head:10001); default: a local Ray on this machine's CPUs",
    ),
    rows_per_file: int = Opt(
        100_000, "--rows-per-file", help="--engine ray: rows to collect at least into each output shard", min=1
    ),
    encoding: Optional[str] = Opt(
        None,
        "--encoding",
        help="Encoding of the input file(s) (default: UTF-8; a byte-order mark is honoured); Parquet is UTF-8",
    ),
    fallback_encoding: Optional[str] = Opt(
        None,
        "--fallback-encoding",
        help="Read the input with this encoding (e.g. cp1252) if it is not valid in --encoding, with a warning; default: such a file is an error",
    ),
    rename_fields: bool = Opt(
        False,
        "--rename-fields",
        help=f"Write input fields named like the output's own ({', '.join(RESERVED_FIELDS['local'])}) as input_<name>; default: such fields are an error",
    ),
    overwrite: bool = Opt(False, "--overwrite", help="Replace an existing OUTPUT file (default: an error)"),
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
    Nothing is written before the whole input has been read once: input fields
    named like the output's own are an error (or renamed, --rename-fields), and
    so is an input none of whose records can be classified; an existing OUTPUT
    is replaced only with --overwrite, and never an input.
    """
    if engine not in ENGINES:
        raise typer.BadParameter(f"use one of {', '.join(ENGINES)}", param_hint="'--engine'")
    if engine == "ray":
        refuse_given(ctx, LOCAL_ONLY, "with --engine ray")
        if output_path == STDOUT:
            msg.fail(
                Errors.BC088.format(
                    option="- (standard output) as OUTPUT",
                    context="with --engine ray",
                    detail="the Ray engine writes a folder of shards",
                    fix=": give the name of a new folder instead",
                ),
                exits=1,
            )
        _predict_ray(
            model,
            input_path,
            output_path,
            output_format=output_format,
            text_field=text_field,
            component=component,
            batch_size=batch_size,
            concurrency=concurrency,
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            address=address,
            keep_text=keep_text,
            rows_per_file=rows_per_file,
            encoding=encoding,
        )
        return
    to_stdout = output_path == STDOUT
    rows_out = sys.stdout
    # With rows on standard output, every message goes to standard error.
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        if to_stdout:
            plain_messages(sys.stderr)
        refuse_given(ctx, RAY_ONLY, "with the local engine", ", or add --engine ray")
        if to_stdout:
            for name in ("resume", "overwrite"):
                if given(ctx, name):
                    detail = "the rows are streamed, no file is written"
                    option = flag(ctx, name)
                    context = "with - (standard output) as OUTPUT"
                    msg.fail(Errors.BC088.format(option=option, context=context, detail=detail, fix=""), exits=1)
        if not Path(input_path).is_file():
            what = "is a folder" if Path(input_path).is_dir() else "does not exist"
            raise typer.BadParameter(
                f"File '{input_path}' {what} (local prediction reads one file; a folder or a glob needs --engine ray).",
                param_hint="'INPUT_PATH'",
            )
        nlp = load_pipeline(model, gpu_id)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = predict_file(
                    nlp,
                    Path(input_path),
                    rows_out if to_stdout else Path(output_path),
                    text_field=text_field,
                    component=component,
                    batch_size=batch_size,
                    keep_text=keep_text,
                    resume=resume,
                    progress=_progress_bar,
                    encoding=encoding,
                    fallback_encoding=fallback_encoding,
                    rename_fields=rename_fields,
                    overwrite=overwrite,
                )
        except ValueError as e:
            msg.fail(str(e), exits=1)
        except KeyboardInterrupt:
            msg.fail("Interrupted", _resume_hint(output_path), exits=130)  # type: ignore[call-overload]
        where = "standard output" if to_stdout else output_path
        msg.good(
            f"Wrote {result.n_rows} predictions to {where}"
            + (f" ({result.n_resumed} from the earlier run)" if result.n_resumed else "")
        )
        if result.n_empty:
            msg.warn(
                f"{result.n_empty} record(s) had empty text: they have the result for empty text and no predicted label"
            )
        for warning in caught:
            if "[BCW" in str(warning.message):
                msg.warn(str(warning.message))


def _progress_bar(predictions: Iterator, total: Optional[int], done: int) -> Iterator:
    """predict_file's progress bar (shown where stderr is a terminal)."""
    return progress(predictions, total=total, desc="Predicting", initial=done)


def _resume_hint(output_path: str) -> str:
    if output_path == STDOUT or not Path(output_path + ".partial").exists():
        return ""  # a run stopped before its first row leaves no partial file
    return f"The rows written so far are in {output_path}.partial; run the same command with --resume to continue."


def _predict_ray(
    model: str,
    input_path: str,
    output_path: str,
    *,
    output_format: str,
    text_field: str,
    component: Optional[str],
    batch_size: Optional[int],
    concurrency: int,
    num_gpus: float,
    num_cpus: Optional[float],
    address: Optional[str],
    keep_text: bool,
    rows_per_file: int,
    encoding: Optional[str],
) -> None:
    """predict --engine ray: connect to (or start) Ray, run ray.predict_files and
    print a one-line summary."""
    from ..predict import ray as bertcat_ray

    try:
        ray = bertcat_ray.import_ray()
        # What can be checked here fails before Ray starts.
        bertcat_ray.check_output_folder(Path(output_path))
        check_not_an_input(Path(output_path), [Path(model), _input_root(input_path)])
        bertcat_ray.resolve_inputs(input_path)
        bertcat_ray.resolve_model(model, component)
        started = bertcat_ray.init_ray(ray, address)
        try:
            if started:
                num_cpus = bertcat_ray.check_local_resources(ray, concurrency, num_cpus, num_gpus)
            result = bertcat_ray.predict_files(
                model,
                input_path,
                output_path,
                output_format=output_format,
                text_column=text_field,
                component=component,
                batch_size=batch_size or RAY_BATCH_SIZE,
                concurrency=concurrency,
                num_gpus=num_gpus,
                num_cpus=num_cpus,
                keep_text=keep_text,
                rows_per_file=rows_per_file,
                encoding=encoding or "utf-8",
            )
        finally:
            if started:
                ray.shutdown()
    except ValueError as e:
        msg.fail(str(e), exits=1)
    except KeyboardInterrupt:
        msg.fail("Interrupted: nothing was written to OUTPUT", exits=130)  # type: ignore[call-overload]
    msg.good(
        f"Wrote {result.n_rows} predictions ({result.n_errors} with an error) in {result.seconds:.1f} s: {output_path}"
    )


def _input_root(input_path: str) -> Optional[Path]:
    """RETURNS (Optional[Path]): Ray's input as a path (a file or folder), or None
    for a glob (what it matches is checked as it is read)."""
    return None if any(c in input_path for c in "*?[") else Path(input_path)
