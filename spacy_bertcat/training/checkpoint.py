"""Whole-pipeline atomic saves for `spacy train` (a [training.before_to_disk] callback).

spaCy's training loop saves `model-last` with `nlp.to_disk`, which writes file after
file into the existing directory: a run killed during a save (out of memory,
preempted, Ctrl-C twice) leaves a mix of old and new files, or a truncated one, and
the pipeline no longer loads. With this callback the pipeline is written into a
hidden sibling directory first and swapped in only when complete, so `model-last`
always holds one whole save.
"""
import copy
import ctypes
import functools
import glob
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Optional, Union

from spacy.language import Language
from spacy.util import registry

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


@registry.callbacks("spacy-bertcat.atomic_save.v1")
def create_atomic_save_v1(
    before_to_disk: Optional[Callable[[Language], Language]] = None,
) -> Callable[[Language], Language]:
    """A [training.before_to_disk] callback whose saves replace the directory whole.

    before_to_disk (Optional[Callable[[Language], Language]]): Another
        before_to_disk callback to apply first (spaCy takes only one).
    """

    def atomic_before_to_disk(nlp: Language) -> Language:
        if before_to_disk is not None:
            nlp = before_to_disk(nlp)
        # A shallow copy shares the pipeline; only its to_disk differs, so the
        # training loop's own nlp object is left as it was.
        saving = copy.copy(nlp)

        def to_disk(path: Union[str, Path], **kwargs: Any) -> None:
            save_directory_atomically(path, lambda tmp: nlp.to_disk(tmp, **kwargs))

        saving.to_disk = to_disk  # type: ignore[method-assign]
        return saving

    return atomic_before_to_disk


def save_directory_atomically(path: Union[str, Path], write: Callable[[Path], None]) -> None:
    """Call `write` on an empty directory beside `path`, then put it in place of `path`.

    Whatever moment the process dies at, `path` holds the previous save or the new
    one, never a mix; a killed write leaves a hidden `.NAME.*.tmp` directory, which
    the next save removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for debris in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        shutil.rmtree(debris, ignore_errors=True)
    tmp = _new_sibling(path)
    try:
        write(tmp)
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp)  # now the previous save
        else:
            old = _new_sibling(path)
            os.replace(path, old / path.name)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old / path.name, path)  # put the previous save back
                raise
            finally:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _new_sibling(path: Path) -> Path:
    """An empty hidden directory beside `path`, made like any directory (os.mkdir
    honours the umask, where tempfile.mkdtemp would make it private to the user)."""
    while True:
        candidate = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE).

    RETURNS (bool): False where the system or file system does not offer it; the
        caller then moves the old directory aside and the new one in (two renames).
    """
    renameat2 = getattr(_libc(), "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE
    )
    return result == 0


@functools.lru_cache(maxsize=None)
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # Windows: no process-wide C library handle
        return None
