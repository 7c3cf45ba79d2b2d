"""Small helpers shared across modules."""
import os
import tempfile
from pathlib import Path
from typing import Union


def atomic_write(path: Union[str, Path], data: bytes) -> None:
    """Write bytes to a temporary file beside `path`, then rename it over `path`.

    A save interrupted at any moment leaves either the old file or the new one,
    never a truncated file (os.replace is atomic on POSIX and Windows).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
