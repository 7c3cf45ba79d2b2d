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
from pathlib import Path
from typing import Iterator, Optional

import typer
from wasabi import msg

from ..predict.local import STDOUT, predict_file
from ._util import Arg, Opt, app, load_pipeline, progress

ENGINES = ("local", "ray")
RAY_BATCH_SIZE = 256


@app.command("predict")
def predict_cli(
    # fmt: off
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
            resume=resume,
            gpu_id=gpu_id,
        )
        return
    if not Path(input_path).is_file():
        raise typer.BadParameter(
            f"File '{input_path}' does not exist (a folder or a glob needs --engine ray).", param_hint="'INPUT_PATH'"
        )
    to_stdout = output_path == STDOUT
    rows_out = sys.stdout
    # With rows on standard output, every message goes to standard error.
    with contextlib.redirect_stdout(sys.stderr) if to_stdout else contextlib.nullcontext():
        nlp = load_pipeline(model, gpu_id)
        try:
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
        if result.n_errors:
            msg.warn(f"{result.n_errors} record(s) could not be read: their rows have an 'error' field and no scores")


def _progress_bar(predictions: Iterator, total: Optional[int], done: int) -> Iterator:
    """predict_file's progress bar (shown where stderr is a terminal)."""
    return progress(predictions, total=total, desc="Predicting", initial=done)


def _resume_hint(output_path: str) -> str:
    if output_path == STDOUT:
        return ""
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
    resume: bool,
    gpu_id: int,
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
