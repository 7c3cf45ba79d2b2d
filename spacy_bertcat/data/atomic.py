"""Writing files and folders so that nothing is ever half written: the one place
that writes to a temporary sibling and renames it into place.

- ``atomic_write``: a file (component files, reports);
- ``save_directory_atomically``: a whole folder (pipelines saved by `spacy train`'s
  atomic-save callback and by the commands that write a pipeline), swapped in with
  one rename where the system allows;
- ``new_sibling``: an empty hidden folder beside a target, for writers that fill a
  folder and rename it themselves (Ray's output shards).

And the guards every command runs on its output before it writes anything, so that
no command deletes or overwrites what it did not write (issue 24):

- ``check_output_folder``: an output folder must be new or empty (or hold only an
  earlier output of the same kind, for reports), and neither inside an input nor
  containing one; a pipeline may be replaced by an updated copy of itself;
- ``check_output_file``: an output file must not be a folder or an input, and
  exists only if the caller may replace it;
- ``check_not_an_input``: the part of both about inputs.
"""

import ctypes
import functools
import glob
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable, List, Optional, Union

from ..errors import Errors

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


def save_directory_atomically(
    path: Union[str, Path], write: Callable[[Path], None], check: Optional[Callable[[], None]] = None
) -> None:
    """Call `write` on an empty directory beside `path`, then put it in place of `path`.

    Whatever moment the process dies at, `path` holds the previous save or the new
    one, never a mix; a killed write leaves a hidden `.NAME.*.tmp` directory, which
    the next save removes. `path` itself is replaced whole: callers that did not
    write it check it first (check_output_folder).

    check (Optional[Callable[[], None]]): Called after `write` and before the swap
        (e.g. check_output_folder again, for what appeared at `path` meanwhile); an
        error it raises leaves `path` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for debris in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        shutil.rmtree(debris, ignore_errors=True)
    tmp = new_sibling(path)
    try:
        write(tmp)
        if check is not None:
            check()
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


# The output guards (issue 24).

_SHOW = 5  # entries a message names


def check_output_folder(
    output: Union[str, Path],
    *,
    inputs: Iterable[Optional[Union[str, Path]]] = (),
    replace_pipeline: Optional[Union[str, Path]] = None,
    pipeline_entries: Optional[Iterable[str]] = None,
    may_hold: Iterable[str] = (),
    command: str = "This command",
) -> bool:
    """Check a folder a command is about to write, before it writes anything.

    The folder must be new or empty, and it may be neither an input nor inside one
    nor contain one. Exceptions: the pipeline `replace_pipeline` may be given as
    the output (it is replaced whole by an updated copy of itself, where it holds
    nothing but `pipeline_entries`), and a folder may hold the names `may_hold`
    (the files of an earlier output of the same kind: a report's).

    output (Union[str, Path]): The output folder.
    inputs (Iterable[Optional[Union[str, Path]]]): The command's inputs (files or
        folders; None and paths that do not exist, e.g. a package name, are skipped).
    replace_pipeline (Optional[Union[str, Path]]): The pipeline folder the command
        may replace with its updated copy.
    pipeline_entries (Optional[Iterable[str]]): The top-level names the updated
        pipeline is saved as (e.g. config.cfg, meta.json, vocab and a folder per
        component); None for no check.
    may_hold (Iterable[str]): Names an existing output folder may hold (files the
        command writes again, and their atomic_write debris).
    command (str): The command and option, for messages (e.g. "evaluate --output").
    RETURNS (bool): Whether `output` is `replace_pipeline` (an update in place).
    RAISES (ValueError): BC080 (an input), BC081 (not new or empty), BC082 (the
        pipeline holds other files).
    """
    folder = Path(output)
    target = folder.resolve()
    if replace_pipeline is not None and Path(replace_pipeline).resolve() == target:
        rest = [i for i in inputs if i is not None and not (Path(i).exists() and Path(i).resolve() == target)]
        check_not_an_input(folder, rest)  # e.g. the data inside the pipeline
        if pipeline_entries is not None and target.is_dir():
            keep = set(pipeline_entries)
            extra = sorted((p for p in target.iterdir() if p.name not in keep), key=lambda p: p.name)
            if extra:
                raise ValueError(Errors.BC082.format(path=folder, extra=_describe(extra)))
        return True
    check_not_an_input(folder, inputs)
    if folder.is_symlink() and not folder.exists():
        raise ValueError(Errors.BC081.format(path=folder, detail="it is a broken link", command=command, also=""))
    if not folder.exists():
        return False
    also = ", or one that holds only an earlier output of it" if may_hold else ""
    if not folder.is_dir():
        detail = "it is a file, not a folder"
        raise ValueError(Errors.BC081.format(path=folder, detail=detail, command=command, also=also))
    ours = set(may_hold)
    others = sorted((p for p in folder.iterdir() if not _is_ours(p.name, ours)), key=lambda p: p.name)
    if others:
        detail = f"it is not empty: it holds {_describe(others)}"
        if ours:
            detail += f" (an earlier output holds only {', '.join(sorted(ours))})"
        raise ValueError(Errors.BC081.format(path=folder, detail=detail, command=command, also=also))
    return False


def check_output_file(
    output: Union[str, Path],
    *,
    inputs: Iterable[Optional[Union[str, Path]]] = (),
    overwrite: bool = False,
    command: str = "This command",
    example: str = "output",
) -> None:
    """Check a file a command is about to write: not a folder, not an input (nor
    inside one), and new unless `overwrite` (`example`: a file name the message
    of a folder proposes).

    RAISES (ValueError): BC080 (an input), BC091 (a folder), BC085 (it exists).
    """
    path = Path(output)
    if path.is_dir():
        raise ValueError(Errors.BC091.format(path=path, command=command, example=path / example))
    check_not_an_input(path, inputs)
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise ValueError(Errors.BC085.format(path=path, command=command))


def check_not_an_input(output: Union[str, Path], inputs: Iterable[Optional[Union[str, Path]]]) -> None:
    """Raise BC080 if `output` is one of `inputs`, is inside one or contains one
    (paths compared resolved, links followed; inputs that do not exist skipped)."""
    target = Path(output).resolve()
    for given in inputs:
        if given is None or not Path(given).exists():
            continue
        source = Path(given).resolve()
        if target == source:
            relation = "is"
        elif source in target.parents:
            relation = "is inside"
        elif target in source.parents:
            relation = "contains"
        else:
            continue
        raise ValueError(Errors.BC080.format(output=output, relation=relation, input=given))


def _is_ours(name: str, ours: set) -> bool:
    """Whether a folder entry is one of `ours` or the debris of its atomic_write."""
    if name in ours:
        return True
    return name.startswith(".") and name.endswith(".tmp") and name[1:].rsplit(".", 2)[0] in ours


def _describe(entries: List[Path]) -> str:
    names = [p.name + ("/" if p.is_dir() else "") for p in entries[:_SHOW]]
    more = f" and {len(entries) - _SHOW} more" if len(entries) > _SHOW else ""
    return ", ".join(names) + more
