"""A bertcat component's files: written atomically, read with errors that say what
is wrong (a damaged file is named; a file this user may not read is not called
damaged)."""

import getpass
import os
from pathlib import Path
from typing import Any, Callable, Union

import spacy
import srsly
from spacy.pipeline import TrainablePipe

from ..data.atomic import atomic_write
from ..errors import Errors


def write_component(pipe: TrainablePipe, path: Union[str, Path], exclude) -> None:
    """Save like TrainablePipe.to_disk, each file written atomically (see
    data/atomic.py), with the mode spaCy's own files get."""
    serialize = {
        "cfg": lambda p: atomic_write(p, srsly.json_dumps(pipe.cfg, indent=2).encode("utf8")),
        "vocab": lambda p: pipe.vocab.to_disk(p, exclude=exclude),
        "model": lambda p: atomic_write(p, pipe.model.to_bytes()),
    }
    spacy.util.to_disk(path, serialize, exclude)


def read_component(pipe: TrainablePipe, path: Union[str, Path], exclude) -> None:
    """Load like TrainablePipe.from_disk."""
    deserialize = {
        "cfg": _reader(lambda data: pipe.cfg.update(srsly.json_loads(data))),
        "vocab": lambda p: pipe.vocab.from_disk(p, exclude=exclude),
        "model": _reader(pipe.model.from_bytes),
    }
    spacy.util.from_disk(path, deserialize, exclude)


def _reader(load: Callable[[bytes], Any]) -> Callable[[Path], None]:
    def read(p: Path) -> None:
        try:
            data = Path(p).read_bytes()
        except PermissionError as e:  # not a damaged file: say so
            raise ValueError(Errors.BC048.format(path=p, user=_user())) from e
        try:
            load(data)
        except Exception as e:
            if "[BC" in str(e) and "[BC012]" not in str(e):
                raise
            reason = e.__cause__ if "[BC012]" in str(e) and e.__cause__ else e
            raise ValueError(Errors.BC012.format(where=f" in {p}", reason=repr(reason))) from e

    return read


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "this user"
