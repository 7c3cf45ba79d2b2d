"""Classification data in and out: JSONL / CSV / text files, folders of text files,
record validation, and ``.spacy`` DocBins (the split is in splits.py).

Shared by the CLI (``convert``, ``evaluate``, ``predict``, ``find-thresholds``) and
the project scripts. A *record* is one text with its labels, read from one line (or
CSV row) of a file; every validation error names the file and the line.

Label fields (``label_field``, detected from the first record when not given):

- ``label``: one label per text (a string; JSON numbers become strings);
- ``labels``: a list of labels (in CSV a JSON list or ``|``-separated values);
- ``cats``: spaCy's dict of label -> 0/1 (JSONL only); labels it leaves out are
  missing values (multi-label only).
"""

import codecs
import csv
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union, cast

from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..errors import Errors, Warnings
from .atomic import atomic_write
from .formats import FORMATS, detect_format  # noqa: F401  (formats.py holds the suffix table; both stay importable from here)

LABEL_FIELDS = ("label", "labels", "cats")
SPLIT_NAMES = ("train", "dev", "test")
META_KEY = "bertcat_meta"  # doc.user_data key for a record's other fields


@dataclass
class Record:
    """One text and its gold labels.

    text (str): The text.
    cats (Dict[str, float]): The gold values given by the record (1.0 for a
        positive label, 0.0 for a negative one).
    complete (bool): Whether labels absent from `cats` are negative (`label` and
        `labels` fields) rather than missing (`cats` field).
    line (int): Line of the record in its file (1-based; 0 if not from a file).
    meta (Dict[str, Any]): The record's other fields (e.g. an id), kept as they are.
    """

    text: str
    cats: Dict[str, float] = field(default_factory=dict)
    complete: bool = True
    line: int = 0
    meta: Dict[str, Any] = field(default_factory=dict)

    @property
    def positives(self) -> List[str]:
        """RETURNS (List[str]): The labels with value 1.0, sorted."""
        return sorted(label for label, value in self.cats.items() if value == 1.0)

    def full_cats(self, labels: Sequence[str]) -> Dict[str, float]:
        """RETURNS (Dict[str, float]): doc.cats for the given label set."""
        if not self.complete:
            return {label: value for label, value in self.cats.items() if label in labels}
        return {label: self.cats.get(label, 0.0) for label in labels}


class InvalidRow(dict):
    """A row that could not be read (read_rows with keep_invalid): empty, with the
    reason in `problem`."""

    def __init__(self, problem: str) -> None:
        super().__init__()
        self.problem = problem


def read_rows(
    path: Union[str, Path],
    file_format: Optional[str] = None,
    *,
    keep_invalid: bool = False,
    keep_blank: bool = False,
    encoding: Optional[str] = None,
    fallback_encoding: Optional[str] = None,
) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Read the raw rows of a JSONL, CSV, TSV or text file, or of a folder with one
    subfolder of .txt files per label.

    path (Union[str, Path]): The file or folder.
    file_format (Optional[str]): One of jsonl, csv, tsv, txt, folders; None to
        detect it from the suffix.
    keep_invalid (bool): Yield an InvalidRow for a JSONL line that is not a JSON
        object or a CSV row of the wrong width, instead of raising an error.
    keep_blank (bool): Yield the blank lines of a text file too (as empty texts).
    encoding (Optional[str]): The files' encoding; None for UTF-8 (a UTF-8 or, in
        label folders, UTF-16 byte-order mark is honoured).
    fallback_encoding (Optional[str]): The encoding of files that are not valid
        in `encoding`: a label folder's files (each one named in a warning,
        BCW010) or a whole records file (checked before its first row is read,
        and named in a warning, BCW023); None to make such a file an error.
    YIELDS (Tuple[int, Dict[str, Any]]): The line of each row and its fields. A
        text file yields {"text": line} for each non-empty line; a folder yields
        {"text": ..., "label": label folder, "id": path under the folder}.
    """
    path = Path(path)
    file_format = detect_format(path, file_format)
    check_encoding(encoding, "--encoding")
    check_encoding(fallback_encoding, "--fallback-encoding")
    if file_format == "folders":
        try:
            yield from _read_folders(path, encoding, fallback_encoding)
        except OSError as e:  # a folder this user may not list
            raise ValueError(Errors.BC090.format(path=e.filename or path, reason=e.strerror or e)) from e
        return
    if file_format == "spacy":
        raise ValueError(Errors.BC032.format(path=path, suffix=".spacy", formats="jsonl, csv, tsv, txt, folders"))
    if not path.is_file():
        raise ValueError(Errors.BC043.format(path=path, detail="the file does not exist"))
    if fallback_encoding is not None:
        encoding = file_encoding(path, encoding, fallback_encoding)
    with open_for_reading(path, encoding) as file_:
        try:
            yield from read_stream_rows(file_, file_format, path, keep_invalid=keep_invalid, keep_blank=keep_blank)
        except UnicodeDecodeError as e:
            raise ValueError(Errors.BC047.format(path=path, encoding=encoding or "UTF-8", reason=e.reason)) from e


def open_for_reading(path: Path, encoding: Optional[str] = None) -> IO[str]:
    """RETURNS (IO[str]): A records file opened as text (newline="", for csv), in
    `encoding` or UTF-8 (a byte-order mark skipped). RAISES (ValueError): BC090 if
    it cannot be opened (permissions), BC084 for an unknown encoding."""
    check_encoding(encoding, "--encoding")
    try:
        return path.open(encoding=encoding or "utf-8-sig", newline="")
    except OSError as e:
        raise ValueError(Errors.BC090.format(path=path, reason=e.strerror or e)) from e


def check_encoding(encoding: Optional[str], option: str = "--encoding") -> None:
    """Raise BC084 if `encoding` (given as `option`) is not an encoding Python
    knows; None (the default, UTF-8) passes."""
    if encoding is None:
        return
    try:
        codecs.lookup(encoding)
    except LookupError as e:
        raise ValueError(Errors.BC084.format(encoding=encoding, option=option)) from e


def file_encoding(
    path: Path, encoding: Optional[str], fallback: Optional[str], warning: Optional[str] = None
) -> Optional[str]:
    """The encoding to read a whole file in: `encoding` (None: UTF-8) if the file
    decodes in it, else `fallback`, named in a warning (BCW023, or `warning`).
    Reads the file once, in blocks; without a fallback, a file that does not decode
    is an error (BC047).

    RETURNS (Optional[str]): The encoding (None for the default).
    """
    check_encoding(encoding, "--encoding")
    check_encoding(fallback, "--fallback-encoding")
    decoder = codecs.getincrementaldecoder(encoding or "utf-8-sig")()
    try:
        with path.open("rb") as file_:
            for block in iter(lambda: file_.read(1 << 20), b""):
                decoder.decode(block)
            decoder.decode(b"", final=True)
    except OSError as e:
        raise ValueError(Errors.BC090.format(path=path, reason=e.strerror or e)) from e
    except UnicodeDecodeError as e:
        if fallback is None:
            raise ValueError(Errors.BC047.format(path=path, encoding=encoding or "UTF-8", reason=e.reason)) from e
        template = warning if warning is not None else Warnings.BCW023
        warnings.warn(template.format(path=path, encoding=encoding or "UTF-8", fallback=fallback, reason=e.reason))
        return fallback
    return encoding


def read_stream_rows(
    file_: IO[str],
    file_format: str,
    path: Union[str, Path],
    *,
    keep_invalid: bool = False,
    keep_blank: bool = False,
) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """Read the raw rows of an open JSONL, CSV, TSV or text stream (see read_rows),
    e.g. a file read whole into memory (Ray prediction reads its shards this way).

    file_ (IO[str]): The text stream, opened with newline="".
    file_format (str): One of jsonl, csv, tsv, txt.
    path (Union[str, Path]): Its name, for error messages.
    keep_invalid (bool): See read_rows.
    keep_blank (bool): See read_rows.
    YIELDS (Tuple[int, Dict[str, Any]]): The line of each row and its fields.
    """
    if file_format == "jsonl":
        for i, line in enumerate(file_, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if keep_invalid:
                    yield i, InvalidRow(f"invalid JSON ({e.msg})")
                    continue
                raise ValueError(Errors.BC031.format(path=path, line=i, reason=e.msg)) from e
            if not isinstance(row, dict):
                problem = f"expected a JSON object, got {type(row).__name__}"
                if keep_invalid:
                    yield i, InvalidRow(problem)
                    continue
                raise ValueError(Errors.BC030.format(path=path, line=i, problem=problem))
            yield i, row
    elif file_format in ("csv", "tsv"):
        lines = _LineCounter(file_)
        reader = csv.DictReader(lines, delimiter="\t" if file_format == "tsv" else ",")
        _ = reader.fieldnames  # read the header
        lines.first = None
        for row in reader:
            start, lines.first = lines.first, None  # the row's first line
            if None in row or any(value is None for value in row.values()):
                problem = f"it has {len(reader.fieldnames or [])} columns in the header but a different number here"
                if keep_invalid:
                    yield start, InvalidRow(problem)  # type: ignore[misc]
                    continue
                raise ValueError(Errors.BC030.format(path=path, line=start, problem=problem))
            yield start, dict(row)  # type: ignore[misc]
    else:  # txt
        for i, line in enumerate(file_, start=1):
            if keep_blank or line.strip():
                yield i, {"text": line.rstrip("\r\n")}


class _LineCounter:
    """Iterate over a file's lines, noting the number of the first non-blank line
    read since `first` was last reset (the start of a CSV record)."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self.n = 0
        self.first: Optional[int] = None

    def __iter__(self) -> "_LineCounter":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.n += 1
        if self.first is None and line.strip():
            self.first = self.n
        return line


def _read_folders(
    path: Path, encoding: Optional[str] = None, fallback: Optional[str] = None
) -> Iterator[Tuple[int, Dict[str, Any]]]:
    """The .txt files under each label folder, its subfolders included (the label
    is the top folder's name; the id the file's path under it, without .txt)."""
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise ValueError(Errors.BC043.format(path=path, detail="the folder has no subfolders (one per label)"))
    n = 0
    for folder in folders:
        files = sorted(
            p
            for p in folder.rglob("*.txt")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        )
        for file_ in files:
            n += 1
            text = read_text_file(file_, encoding, fallback)
            if not text:
                raise ValueError(
                    Errors.BC043.format(path=file_, detail="the file is empty (a text per file is expected)")
                )
            rel = file_.relative_to(path).with_suffix("").as_posix()
            yield n, {"text": text, "label": folder.name, "id": rel}


_BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def read_text_file(path: Path, encoding: Optional[str] = None, fallback: Optional[str] = None) -> str:
    """RETURNS (str): A text file decoded as `encoding`, or as UTF-8 (UTF-8 and
    UTF-16 byte-order marks honoured); line ends as \\n, stripped. A file that does
    not decode (another 8-bit encoding, UTF-16 without a byte-order mark) is an
    error that names it, or, with a `fallback` encoding, decoded with that and named
    in a warning: never a silent guess."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(Errors.BC090.format(path=path, reason=e.strerror or e)) from e
    if encoding is None:
        encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
        if encoding == "utf-8" and b"\x00" in data:
            raise ValueError(
                Errors.BC047.format(
                    path=path, encoding="UTF-8", reason="it has NUL bytes, as UTF-16 without a byte-order mark has"
                )
            )
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        if fallback is None:
            raise ValueError(Errors.BC047.format(path=path, encoding=encoding, reason=e.reason)) from e
        warnings.warn(Warnings.BCW010.format(path=path, encoding=encoding, fallback=fallback, reason=e.reason))
        text = data.decode(fallback)
    return text.replace("\r\n", "\n").replace("\r", "\n").strip()


def read_records(
    path: Union[str, Path],
    *,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    file_format: Optional[str] = None,
    require_labels: bool = True,
    exclusive: Optional[bool] = None,
    allowed_labels: Optional[Sequence[str]] = None,
    encoding: Optional[str] = None,
    fallback_encoding: Optional[str] = None,
) -> Iterator[Record]:
    """Read and validate the records of a file; errors name the file and line.

    path (Union[str, Path]): A JSONL, CSV, TSV or text file, or a folder of
        label subfolders.
    text_field (str): The field holding the text.
    label_field (Optional[str]): The field holding the labels ("label",
        "labels", "cats" or any name; its kind is read from the values). None to
        use whichever of "label", "labels", "cats" the first record has.
    labels_sep (str): Separator of several labels in one CSV/TSV value.
    file_format (Optional[str]): The format; None to detect it from the suffix.
    require_labels (bool): Whether every record must carry labels (False for
        prediction; labels are then read where present).
    exclusive (Optional[bool]): True to require exactly one positive label per
        record, False to allow any number; None for no check.
    allowed_labels (Optional[Sequence[str]]): The label set; other labels are an
        error. None for any labels.
    encoding, fallback_encoding (Optional[str]): See read_rows.
    YIELDS (Record): The records, in file order.
    """
    path = Path(path)
    allowed = set(allowed_labels) if allowed_labels is not None else None
    for line, row in read_rows(path, file_format, encoding=encoding, fallback_encoding=fallback_encoding):
        if label_field is None:
            label_field = next((f for f in LABEL_FIELDS if f in row), "")
            if not label_field and require_labels:
                problem = f"it has no label field (looked for {', '.join(LABEL_FIELDS)}; found {sorted(row)})"
                raise ValueError(
                    Errors.BC030.format(path=path, line=line, problem=problem + ". Name the field with --label-field")
                )
        yield make_record(
            row,
            line=line,
            path=path,
            text_field=text_field,
            label_field=label_field,
            labels_sep=labels_sep,
            require_labels=require_labels,
            exclusive=exclusive,
            allowed=allowed,
        )


def make_record(
    row: Dict[str, Any],
    *,
    line: int,
    path: Union[str, Path],
    text_field: str,
    label_field: str,
    labels_sep: str = "|",
    require_labels: bool = True,
    exclusive: Optional[bool] = None,
    allowed: Optional[set] = None,
) -> Record:
    """Validate one raw row and turn it into a Record (see read_records)."""

    def fail(problem: str) -> ValueError:
        return ValueError(Errors.BC030.format(path=path, line=line, problem=problem))

    text = row.get(text_field)
    if text_field not in row:
        raise fail(f"the text field '{text_field}' is missing (fields: {sorted(row)}); name it with --text-field")
    if not isinstance(text, str) or not text.strip():
        raise fail(f"the text field '{text_field}' must be a non-empty string, got {text!r}")
    meta = {k: v for k, v in row.items() if k not in (text_field, label_field)}
    if not require_labels and (not label_field or row.get(label_field) in (None, "")):
        return Record(text, {}, complete=False, line=line, meta=meta)
    if label_field not in row:
        raise fail(f"the label field '{label_field}' is missing (fields: {sorted(row)}); name it with --label-field")
    cats, complete = _parse_labels(row[label_field], label_field, labels_sep, fail)
    if allowed is not None:
        unknown = sorted(set(cats) - allowed)
        if unknown:
            raise fail(f"unknown label(s) {unknown}; the labels are {sorted(allowed)}")
    n_positive = sum(1 for v in cats.values() if v == 1.0)
    if exclusive and n_positive != 1:
        raise fail(
            f"it has {n_positive} positive labels {sorted(k for k, v in cats.items() if v == 1.0)}, but the "
            "classes are exclusive (exactly one label per text); use --multilabel for multi-label data"
        )
    return Record(text, cats, complete=complete, line=line, meta=meta)


def _parse_labels(value: Any, label_field: str, labels_sep: str, fail) -> Tuple[Dict[str, float], bool]:
    if isinstance(value, dict):
        cats = {}
        for label, v in value.items():
            if isinstance(v, bool):
                v = float(v)
            if v not in (0, 1) or isinstance(v, str):
                raise fail(f"the value of label '{label}' in '{label_field}' is {v!r}; use 0 or 1")
            cats[str(label)] = float(v)
        return cats, False
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise fail(f"the labels {value!r} are not a valid JSON list")
    if isinstance(value, str) and label_field != "label" and labels_sep in value:
        value = value.split(labels_sep)
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise fail(f"'{label_field}' must be a label, a list of labels or a dict of label: 0/1, got {value!r}")
    labels = []
    for label in value:
        if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
            raise fail(f"invalid label {label!r} in '{label_field}'; labels are non-empty strings")
        labels.append(str(label).strip())
    return {label: 1.0 for label in labels}, True


def collect_labels(records: Iterable[Record]) -> List[str]:
    """RETURNS (List[str]): Every label the records mention, sorted."""
    return sorted({label for record in records for label in record.cats})


def check_labels(records: Sequence[Record], exclusive: bool, path: Union[str, Path]) -> List[str]:
    """Check that exclusive data has at least two classes.

    RETURNS (List[str]): The labels, sorted.
    """
    labels = collect_labels(records)
    if not records:
        raise ValueError(Errors.BC043.format(path=path, detail="it holds no records"))
    if exclusive and len(labels) < 2:
        raise ValueError(Errors.BC037.format(path=path, n=len(labels), labels=labels))
    return labels


def records_to_docs(
    nlp: Language, records: Iterable[Record], labels: Sequence[str], *, batch_size: int = 256
) -> Iterator[Doc]:
    """Tokenize records into Docs with gold doc.cats over `labels` (and the
    record's other fields in doc.user_data["bertcat_meta"]).

    YIELDS (Doc): One doc per record.
    """
    records = list(records)
    docs = cast(Any, nlp.tokenizer).pipe((r.text for r in records), batch_size=batch_size)
    for record, doc in zip(records, docs):
        doc.cats = record.full_cats(labels)
        if record.meta:
            doc.user_data[META_KEY] = record.meta
        yield doc


def write_docbin(docs: Iterable[Doc], path: Union[str, Path]) -> int:
    """Save docs (with cats and user data) as a .spacy file.

    RETURNS (int): The number of docs written.
    """
    doc_bin = DocBin(attrs=["ORTH", "SPACY"], store_user_data=True)
    for doc in docs:
        doc_bin.add(doc)
    path = Path(path)
    data = doc_bin.to_bytes()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)  # never a truncated file under the final name
    except OSError as e:
        raise ValueError(Errors.BC089.format(path=path, reason=e.strerror or e)) from e
    return len(doc_bin)


def read_docbin(path: Union[str, Path], nlp: Language) -> List[Doc]:
    """RETURNS (List[Doc]): The docs of a .spacy file. RAISES (ValueError): BC043
    if it is missing or not a .spacy file, BC090 if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(Errors.BC043.format(path=path, detail="the file does not exist"))
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ValueError(Errors.BC090.format(path=path, reason=e.strerror or e)) from e
    try:
        return list(DocBin().from_bytes(data).get_docs(nlp.vocab))
    except Exception as e:  # zlib, msgpack and key errors of a file that is no DocBin
        detail = f"it is not a .spacy file written by DocBin ({type(e).__name__}: {e})"
        raise ValueError(Errors.BC043.format(path=path, detail=detail)) from e


def read_labelled_docs(
    path: Union[str, Path],
    nlp: Language,
    *,
    labels: Optional[Sequence[str]] = None,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    exclusive: Optional[bool] = None,
) -> List[Doc]:
    """Gold docs from a .spacy file, or from a JSONL/CSV/TSV file or label folders.

    labels (Optional[Sequence[str]]): The label set (a pipeline's labels): records
        with other labels are an error. None for the labels of the data.
    RETURNS (List[Doc]): Docs with gold doc.cats.
    """
    file_format = detect_format(path)
    if file_format == "spacy":
        docs = read_docbin(path, nlp)
        if not docs:
            raise ValueError(Errors.BC043.format(path=path, detail="it holds no docs"))
        return docs
    records = list(
        read_records(
            path,
            text_field=text_field,
            label_field=label_field,
            labels_sep=labels_sep,
            file_format=file_format,
            exclusive=exclusive,
            allowed_labels=labels,
        )
    )
    if not records:
        raise ValueError(Errors.BC043.format(path=path, detail="it holds no records"))
    return list(records_to_docs(nlp, records, labels if labels is not None else collect_labels(records)))


def write_jsonl(rows: Iterable[Dict[str, Any]], path: Union[str, Path]) -> int:
    """Write dicts as JSON lines (UTF-8, non-ASCII kept as is).

    RETURNS (int): The number of lines written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as file_:
        for row in rows:
            file_.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def record_to_row(record: Record, text_field: str = "text") -> Dict[str, Any]:
    """RETURNS (Dict[str, Any]): A record as a JSONL row ("label" if exclusive-
    looking, "labels" for several, "cats" when labels may be missing)."""
    row: Dict[str, Any] = {text_field: record.text}
    if not record.complete:
        row["cats"] = record.cats
    elif len(record.positives) == 1:
        row["label"] = record.positives[0]
    else:
        row["labels"] = record.positives
    row.update(record.meta)
    return row
