"""The typer app and helpers shared by the commands (spaCy's CLI conventions)."""

import os
import re
import sys
from pathlib import Path
from typing import IO, Any, Callable, Dict, Iterable, Iterator, List, Optional, TypeVar

import typer
from spacy.language import Language
from typer.core import TyperGroup
from wasabi import Printer, msg
from wasabi.util import supports_ansi

from ..components.pipes import Classifier, classify_texts, only_component  # noqa: F401  (used by the commands)
from ..data.atomic import check_output_folder, save_directory_atomically
from ..errors import Errors

NAME = "spacy-bertcat"
HELP = """spacy-bertcat: data conversion, training (also data-parallel), evaluation
reports, threshold tuning, calibration, prediction (local or on Ray) and
serving optimization for spaCy text classification pipelines (bertcat, textcat).
Run `python -m spacy_bertcat COMMAND --help` for a command's options.
"""


class _Commands(TyperGroup):
    """The app's command group: an invalid value of an argument or option (a path
    that does not exist, a number out of range) fails like any bad input, with a
    coded message (BC092) and exit status 1; a malformed command line (an unknown
    option, a missing argument) stays click's usage error (exit status 2)."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except typer.BadParameter as e:  # typer's click (typer vendors click from 0.2x on)
            if type(e).__name__ == "MissingParameter":  # a usage error
                raise
            command = ctx.invoked_subcommand or ""
            problem = e.format_message().rstrip()
            if re.search(r"(?i)is not (readable|writable)", problem):
                fix = "Check that this user may read (or write) it (e.g. `chmod a+r FILE`, or `chmod -R a+rX` on a folder)."
            elif re.search(r"(?i)\b(path|file|directory) '", problem):
                fix = f"Check the path (a relative path starts from the current folder, {Path.cwd()})."
            else:
                fix = ""
            problem += "" if problem.endswith((".", ")")) else "."
            msg.fail(Errors.BC092.format(problem=problem, fix=fix, command=command).replace("  ", " "), exits=1)


app = typer.Typer(
    name=NAME,
    help=HELP,
    cls=_Commands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Shorthands, as in spacy.cli._util.
Arg = typer.Argument
Opt = typer.Option

T = TypeVar("T")


def setup_gpu(gpu_id: int) -> None:
    """Use GPU `gpu_id` for thinc and torch, or the CPU for -1."""
    from thinc.api import require_gpu

    if gpu_id >= 0:
        msg.info(f"Using GPU: {gpu_id}")
        require_gpu(gpu_id)
    else:
        msg.info("Using CPU")


def load_pipeline(model: str, gpu_id: int = -1) -> Language:
    """Load a pipeline by package name or path, failing with a coded CLI message
    (the component's own, e.g. BC012 or BC048, or BC086)."""
    import spacy

    setup_gpu(gpu_id)
    try:
        return spacy.load(model)
    except (OSError, ValueError, KeyError) as e:
        text = str(e)
        if not text.startswith("[BC"):
            if isinstance(e, OSError) and e.filename:
                detail = f"{e.strerror or e}: {e.filename}"
            else:
                detail = " ".join(text.split()) or type(e).__name__
            text = Errors.BC086.format(model=model, detail=detail.rstrip("."))
        msg.fail(text, exits=1)
        raise  # for type checkers: msg.fail exits


def fail_on_value_error(error: ValueError) -> None:
    """Print a bertcat/spaCy error as a CLI failure and exit with status 1."""
    msg.fail(str(error), exits=1)


def progress(
    items: Iterable[T], *, total: Optional[int], desc: str, disable: bool = False, initial: int = 0
) -> Iterator[T]:
    """Wrap an iterable in a tqdm progress bar on stderr, shown only when stderr is
    a terminal (redrawn with carriage returns, a bar would fill a log file)."""
    from tqdm import tqdm

    disable = disable or not sys.stderr.isatty()
    yield from tqdm(
        items, total=total, desc=desc, unit="doc", disable=disable, leave=False, dynamic_ncols=True, initial=initial
    )


def count_lines(path: Path, blank: bool = False) -> Optional[int]:
    """RETURNS (Optional[int]): The lines of a file (a progress bar's total),
    blank ones only if `blank`, or None for a folder."""
    if not path.is_file():
        return None
    with path.open("rb") as file_:
        return sum(1 for line in file_ if blank or line.strip())


def parse_label_list(value: Optional[str]) -> Optional[List[str]]:
    """RETURNS (Optional[List[str]]): Labels from "A,B,C" (None stays None)."""
    if value is None:
        return None
    return [label.strip() for label in value.split(",") if label.strip()]


def _print_version(value: bool) -> None:
    if value:
        import spacy
        import torch
        import transformers

        from ..about import __version__

        print(
            f"spacy-bertcat {__version__} (spaCy {spacy.__version__}, transformers {transformers.__version__}, torch {torch.__version__})"
        )
        raise typer.Exit()


@app.callback()
def _app_callback(
    version: bool = Opt(
        False, "--version", "-v", help="Show the versions and exit", callback=_print_version, is_eager=True
    ),
) -> None:
    # A callback keeps `spacy-bertcat COMMAND` a command group even when only one
    # command is registered (typer would otherwise run that command directly).
    # Messages to a file or a pipe carry no colour escape codes.
    plain_messages()


def predict_docs(nlp: Language, texts: List[str], batch_size: Optional[int], desc: str, component: str) -> List:
    """RETURNS (List[Doc]): The classifier's docs for the texts (classify_texts),
    with a progress bar."""
    return classify_texts(
        nlp, component, texts, batch_size=batch_size, progress=lambda docs: progress(docs, total=len(texts), desc=desc)
    )


def pipeline_entries(nlp: Language) -> List[str]:
    """RETURNS (List[str]): The names nlp.to_disk writes into a pipeline folder."""
    names = ["config.cfg", "meta.json", "tokenizer", "vocab"]
    return names + [name for name, proc in nlp.components if hasattr(proc, "to_disk")]


def pipeline_output(
    nlp: Optional[Language],
    output: Path,
    *,
    model: Path,
    data: Iterable[Optional[Path]],
    command: str,
    in_place: bool,
    replace: bool = False,
) -> Callable[[], None]:
    """The check of where a command saves the pipeline it updated or made
    (data/atomic.check_output_folder): a new or empty folder outside MODEL and the
    data, or, where `in_place`, MODEL itself (replaced by its updated copy, if it
    holds nothing but the files of `nlp`; None: not checked yet).

    With `replace` (the commands' --replace), OUTPUT may also be an earlier saved
    pipeline, which is replaced whole if it holds nothing but a pipeline's files.
    RETURNS (Callable[[], None]): The check, raising the coded ValueError: run it
        with run_check before the work, and give it to save_pipeline.
    """
    inputs = [model, *data]
    entries = pipeline_entries(nlp) if nlp is not None else None
    replaced: Optional[Path] = model if in_place else None
    if replace and Path(output).resolve() != Path(model).resolve() and (Path(output) / "config.cfg").is_file():
        # --replace: an earlier saved pipeline at OUTPUT (one of ours, say) is replaced whole,
        # if it holds nothing but a pipeline's files; any other folder is still refused.
        replaced = output

    def check() -> None:
        check_output_folder(output, inputs=inputs, replace_pipeline=replaced, pipeline_entries=entries, command=command)

    return check


def run_check(check: Callable[[], None]) -> None:
    """Run a check, failing with its coded message (exit status 1)."""
    try:
        check()
    except ValueError as e:
        msg.fail(str(e), exits=1)


def save_pipeline(nlp: Language, target: Path, check: Optional[Callable[[], None]] = None) -> None:
    """Save a pipeline so that `target` is never half written (data/atomic.py).
    `check` (the command's check_output_folder) runs again after the write and
    before the swap, for what appeared at `target` meanwhile. Fails with a coded
    message (BC089 for a folder that cannot be written)."""
    try:
        save_directory_atomically(target, nlp.to_disk, check=check)
    except ValueError as e:
        msg.fail(str(e), exits=1)
    except OSError as e:
        msg.fail(Errors.BC089.format(path=e.filename or target, reason=e.strerror or e), exits=1)


def given(ctx: typer.Context, name: str) -> bool:
    """Whether the option `name` (its parameter name) was given, on the command
    line or in the environment, rather than left at its default."""
    source = ctx.get_parameter_source(name)  # click's ParameterSource
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


def flag(ctx: typer.Context, name: str) -> str:
    """RETURNS (str): The option's longest flag, e.g. --num-gpus."""
    for param in ctx.command.params:
        if param.name == name:
            return max(param.opts, key=len)
    return name


def refuse_given(ctx: typer.Context, names: Dict[str, str], context: str, fix: str = "") -> None:
    """Fail with BC088 if one of the options `names` (parameter name -> what it
    does) was given although it has no effect `context`."""
    for name, detail in names.items():
        if given(ctx, name):
            msg.fail(Errors.BC088.format(option=flag(ctx, name), context=context, detail=detail, fix=fix), exits=1)


def colour_allowed(stream: IO) -> bool:
    """Whether messages written to `stream` may carry colour escape codes: only
    on a terminal (not a file or a pipe), and not with NO_COLOR or
    ANSI_COLORS_DISABLED set."""
    if os.environ.get("NO_COLOR") or not supports_ansi():
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def plain_messages(stream: Optional[IO] = None) -> None:
    """Print wasabi's messages (the commands' and spaCy's own `msg`) without colour
    escape codes unless `stream` (default: standard output, where they go) is a
    terminal."""
    msg.show_color = colour_allowed(stream if stream is not None else sys.stdout)


def divider(title: str) -> None:
    """Print a divider with a title, as msg.divider does, but without the bold
    escape codes wasabi gives it even where colour is off (a file, a pipe)."""
    text = Printer(no_print=True, line_max=msg.line_max).divider(title)
    print(text if msg.show_color else re.sub(r"\x1b\[[0-9;]*m", "", text))


def plain_in_new_printers() -> None:
    """Make the printers made later (spaCy's training logger, worker processes)
    plain too, where standard output is not a terminal: wasabi reads
    ANSI_COLORS_DISABLED when a Printer is made."""
    if not colour_allowed(sys.stdout):
        os.environ["ANSI_COLORS_DISABLED"] = "1"
