"""Small helpers shared across modules."""
import os
import secrets
from pathlib import Path
from typing import Union


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
