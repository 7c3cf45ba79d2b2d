"""Writing files and folders so that nothing is ever half written: the one place
that writes to a temporary sibling and renames it into place.

- ``atomic_write``: a file (component files, reports);
- ``save_directory_atomically``: a whole folder (pipelines saved by `spacy train`'s
  atomic-save callback and by the commands that write a pipeline), swapped in with
  one rename where the system allows;
- ``new_sibling``: an empty hidden folder beside a target, for writers that fill a
  folder and rename it themselves (Ray's output shards).
"""

import ctypes
import functools
import glob
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Union

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def atomic_write(path: Union[str, Path], data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it over `path`.

    A save interrupted at any moment leaves either the old file or the new one,
    never a truncated file (os.replace is atomic on POSIX and Windows). The file is
    created like any other (mode 0o666 less the umask, as spaCy's own files), so a
    pipeline saved by one user loads for another: tempfile.mkstemp would make it
    private (0o600).
    """
    path = Path(path)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    tmp = new_sibling(path)
    try:
        write(tmp)
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp)  # now the previous save
        else:
            old = new_sibling(path)
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


def new_sibling(path: Path) -> Path:
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
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


@functools.lru_cache(maxsize=None)
def _libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, TypeError):  # Windows: no process-wide C library handle
        return None
