"""File formats: the one table of the file suffixes the package reads, and the
format of a path (``detect_format``).

``SUFFIXES`` maps each suffix to its format. The record readers (records.py:
``read_rows``, ``read_records``, ``read_labelled_docs``) know the formats in
``FORMATS``; Ray prediction over files (predict/ray_files.py) reads the files of
``PREDICT_SUFFIXES``, which adds Parquet and leaves out ``.spacy``.
"""

from pathlib import Path
from typing import Dict, Iterable, Optional, Union

from ..errors import Errors

# The formats of record files (a folder of label folders is "folders").
FORMATS = ("jsonl", "csv", "tsv", "txt", "folders", "spacy")
# Every file suffix read anywhere, and its format (in the order messages list them).
SUFFIXES: Dict[str, str] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".txt": "txt",
    ".parquet": "parquet",
    ".spacy": "spacy",
}


def suffixes_of(formats: Iterable[str]) -> Dict[str, str]:
    """RETURNS (Dict[str, str]): The entries of SUFFIXES with one of `formats`."""
    formats = set(formats)
    return {suffix: format_ for suffix, format_ in SUFFIXES.items() if format_ in formats}


# The input files of Ray prediction over files (one record per line or row).
PREDICT_SUFFIXES = suffixes_of(("jsonl", "csv", "tsv", "txt", "parquet"))


def detect_format(path: Union[str, Path], file_format: Optional[str] = None) -> str:
    """RETURNS (str): The format of a path: given, a folder, or from the suffix
    (one of FORMATS)."""
    path = Path(path)
    if file_format:
        if file_format not in FORMATS:
            raise ValueError(Errors.BC032.format(path=path, suffix=file_format, formats=", ".join(FORMATS)))
        return file_format
    if path.is_dir():
        return "folders"
    found = SUFFIXES.get(path.suffix.lower())
    if found is None or found not in FORMATS:
        raise ValueError(Errors.BC032.format(path=path, suffix=path.suffix, formats=", ".join(FORMATS)))
    return found
