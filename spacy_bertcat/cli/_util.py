"""The typer app and helpers shared by the commands (spaCy's CLI conventions)."""

import sys
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, TypeVar

import typer
from spacy.language import Language
from wasabi import msg

from ..components.pipes import Classifier, classify_texts, only_component  # noqa: F401  (used by the commands)
from ..data.atomic import save_directory_atomically

NAME = "spacy-bertcat"
HELP = """spacy-bertcat: data conversion, training (also data-parallel), evaluation
reports, threshold tuning, calibration, prediction (local or on Ray) and
serving optimization for spaCy text classification pipelines (bertcat, textcat).
Run `python -m spacy_bertcat COMMAND --help` for a command's options.
"""

app = typer.Typer(
    name=NAME,
    help=HELP,
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
    """Load a pipeline by package name or path, failing with a CLI message."""
    import spacy

    setup_gpu(gpu_id)
    try:
        return spacy.load(model)
    except (OSError, ValueError) as e:
        msg.fail(f"Could not load the pipeline '{model}'", str(e), exits=1)
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
    pass


def predict_docs(nlp: Language, texts: List[str], batch_size: Optional[int], desc: str, component: str) -> List:
    """RETURNS (List[Doc]): The classifier's docs for the texts (classify_texts),
    with a progress bar."""
    return classify_texts(
        nlp, component, texts, batch_size=batch_size, progress=lambda docs: progress(docs, total=len(texts), desc=desc)
    )


def save_pipeline(nlp: Language, target: Path) -> None:
    """Save a pipeline so that `target` is never half written (data/atomic.py)."""
    save_directory_atomically(target, nlp.to_disk)
