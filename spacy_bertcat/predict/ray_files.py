"""Ray prediction over files (``spacy-bertcat predict --engine ray``):
``predict_files`` finds the input files, parses them into Arrow tables with one
schema unified over all files, runs ``predict`` (ray_dataset.py) over them and
commits the output folder of shards (ray_shards.py) only when it is complete.

Its names are public through spacy_bertcat.predict.ray.
"""

import codecs
import csv
import io
import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

from ..data.atomic import check_output_folder as shared_check_output_folder
from ..data.formats import PREDICT_SUFFIXES, detect_format
from ..data.records import InvalidRow, read_stream_rows
from ..errors import Errors
from .ray_dataset import (
    READ_ERROR,
    Concurrency,
    _check_setting,
    _is_count,
    find_load_error,
    import_ray,
    predict,
    quiet_ray_data_errors,
    ray_log_folder,
    reserved_error,
    resolve_model,
    root_cause,
    user_name,
)
from .rows import RESERVED_FIELDS as ROW_RESERVED
from .rows import record_problem, text_problem

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow
    import ray.data

OUTPUT_FORMATS = ("parquet", "jsonl")
# Input files predict_files reads, by suffix (the one table is data/formats.py's).
FILE_FORMATS = PREDICT_SUFFIXES
# The fields predict_files' rows carry besides the input's: an input field of one
# of these names is refused (BC124), never dropped or overwritten.
# The fields the rows of Ray over files carry besides the input's (predict/rows.py).
RESERVED_FIELDS = ROW_RESERVED["ray"]
# The schema metadata key under which parse_file lists a file's reserved fields.
RESERVED_KEY = b"spacy_bertcat.reserved"
# Bytes that do not decode in the files' encoding become lone surrogates
# U+DC00-U+DCFF (which no decoder produces from valid text), so that the lines
# and records holding them are found after the whole file is decoded at once.
MARK_UNDECODABLE = "spacy_bertcat.mark_undecodable"
_MARKS = re.compile("[\udc00-\udcff]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _mark_undecodable(error: UnicodeError) -> Tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return "".join(chr(0xDC00 + byte) for byte in error.object[error.start : error.end]), error.end


codecs.register_error(MARK_UNDECODABLE, _mark_undecodable)


@dataclass
class RayPredictResult:
    """n_rows (int): Rows written. n_errors (int): Rows with an error (not
    classified). n_files (int): Output files. seconds (float): Wall time."""

    n_rows: int = 0
    n_errors: int = 0
    n_files: int = 0
    seconds: float = 0.0


def predict_files(
    model: Union[str, Path],
    inputs: Union[str, Path],
    output: Union[str, Path],
    *,
    output_format: str = "parquet",
    text_column: str = "text",
    component: Optional[str] = None,
    batch_size: int = 256,
    concurrency: Concurrency = 1,
    num_gpus: float = 0,
    num_cpus: Optional[float] = None,
    keep_text: bool = True,
    rows_per_file: Optional[int] = None,
    encoding: str = "utf-8",
) -> RayPredictResult:
    """Classify the records of files into a folder of Parquet or JSONL shards, on
    the Ray instance this process is connected to (ray.init first, or one is
    started with Ray's defaults).

    Each output row is an input record's fields, ``source`` (its file, relative to
    the input folder or glob) and ``line`` (its line in a JSONL/CSV/TSV/text file,
    from 1) or ``row`` (its row in a Parquet file, from 1), then the prediction
    columns (see predict). A record that cannot be read (invalid JSON, no text,
    a line that is not valid text in `encoding`) gets an ``error`` and null
    scores, and a file that cannot be read at all (a damaged Parquet file) one
    such row; rows are in input order: files sorted by name, then their lines.
    Each file is read whole by one Ray task: shard very large inputs.

    Checked before Ray runs anything: the settings, OUTPUT, that every input
    file can be read (BC123), the pipeline folder (BC075, resolve_model); and,
    before prediction, that no input field is named like a field the rows add
    (``source``, ``line``, ``row`` and the prediction fields; BC124). An actor
    that cannot load the pipeline stops the run with its cause (BC122).

    The shards are written into a hidden folder beside OUTPUT, which is renamed
    to OUTPUT when the run is complete (removed if it fails), so a folder under
    the final name is always complete.

    model (Union[str, Path]): A saved pipeline's path or a package name.
    inputs (Union[str, Path]): A file, a folder of files, or a glob (data/*.jsonl).
    output (Union[str, Path]): The output folder: new, or empty.
    output_format (str): "parquet" or "jsonl".
    rows_per_file (Optional[int]): Rows to collect at least into each output file
        (None: one per batch).
    encoding (str): The encoding of the text files (JSONL, CSV, TSV, text; a
        UTF-8 byte-order mark is skipped); Parquet strings are UTF-8.
    For the other arguments see predict.
    RETURNS (RayPredictResult): What was written.
    """
    import_ray()
    start = time.perf_counter()
    if output_format not in OUTPUT_FORMATS:
        detail = f"use one of {', '.join(OUTPUT_FORMATS)}"
        raise ValueError(Errors.BC074.format(setting="format", value=output_format, detail=detail))
    _check_setting(
        "rows_per_file",
        rows_per_file,
        rows_per_file is None or _is_count(rows_per_file),
        "give a whole number of rows, 1 or more, or None",
    )
    check_encoding(encoding)
    check_text_column(text_column)
    output = Path(output)
    check_output_folder(output)
    files = resolve_inputs(inputs)
    model = resolve_model(model, component)
    ds = read_files(files, text_column=text_column, encoding=encoding)
    out = predict(
        ds,
        model,
        text_column=text_column,
        component=component,
        batch_size=batch_size,
        concurrency=concurrency,
        num_gpus=num_gpus,
        num_cpus=num_cpus,
        keep_text=keep_text,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.{secrets.token_hex(4)}.partial"
    try:
        from .ray_shards import JsonlShards, ParquetShards

        sink = (ParquetShards if output_format == "parquet" else JsonlShards)(str(tmp), min_rows_per_file=rows_per_file)
        write(out, sink)
        result = count_output(tmp, output_format)
        if sink.rows_written is not None and result.n_rows != sink.rows_written:
            # Write tasks on other nodes wrote to their own disks: not a complete output here.
            raise ValueError(Errors.BC077.format(written=sink.rows_written, found=result.n_rows, path=output))
        check_output_folder(output)  # nothing appeared there meanwhile
        if output.exists():
            output.rmdir()
        tmp.rename(output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result.seconds = time.perf_counter() - start
    return result


def write(out: "ray.data.Dataset", sink: Any) -> None:
    """Run the prediction into the sink; an actor's failure to load the pipeline
    is raised as BC122 with its cause, without Ray's stack traces on the
    console (they stay in Ray's logs)."""
    with quiet_ray_data_errors():
        try:
            out.write_datasink(sink, ray_remote_args={"num_cpus": 0})
        except Exception as e:
            load = find_load_error(e, log=f"the worker-*.err files in {ray_log_folder()} (on the actor's node)")
            if load is None:
                raise
            raise ValueError(load) from None


def check_encoding(encoding: str) -> None:
    """Raise BC074 unless `encoding` is a text encoding Python knows."""
    try:
        known = isinstance(encoding, str) and codecs.lookup(encoding)._is_text_encoding
    except LookupError:
        known = False
    _check_setting(
        "encoding", encoding, bool(known), "give a text encoding Python knows, e.g. utf-8, cp1252, latin-1 or utf-16"
    )


def check_text_column(text_column: str) -> None:
    """Raise BC124 for a text column named like a field the rows add."""
    if text_column in RESERVED_FIELDS:
        raise ValueError(reserved_error([text_column], RESERVED_FIELDS, how=" and name it with --text-field"))


def check_output_folder(output: Path) -> None:
    """Raise BC081 if `output` exists and is not an empty folder: the check every
    command that writes a folder shares (data/atomic.py)."""
    shared_check_output_folder(output, command="predict --engine ray")


def resolve_inputs(inputs: Union[str, Path]) -> List[Tuple[str, str]]:
    """The input files of predict_files: a file, the files of a folder (and its
    subfolders) with a known suffix, or the files a glob matches; sorted by name.
    Each must be readable by this user, and a folder's subfolders listable
    (BC123): a file left out for its permissions would be missing from the
    output without a word.

    RETURNS (List[Tuple[str, str]]): Each file's absolute path and its name
        relative to the folder or the glob's parent (its `source`).
    """
    import glob

    text = str(inputs)
    path = Path(text).expanduser()
    unlisted: List[str] = []
    if path.is_file():
        found, root = [path], path.parent
    elif path.is_dir():
        found, root = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_FORMATS], path
        found = [p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts)]
        unlisted = _unlisted_folders(path)
    elif glob.has_magic(text):
        found = [Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file()]
        root = Path(os.path.commonpath([str(p.parent.resolve()) for p in found])) if found else Path(".")
    else:
        raise ValueError(Errors.BC043.format(path=inputs, detail="there is no such file or folder"))
    check_readable(found, unlisted)
    if not found:
        raise ValueError(
            Errors.BC043.format(path=inputs, detail=f"no input files (suffixes: {', '.join(FILE_FORMATS)})")
        )
    unknown = sorted({p.suffix for p in found if p.suffix.lower() not in FILE_FORMATS})
    if unknown:
        raise ValueError(Errors.BC032.format(path=inputs, suffix=", ".join(unknown), formats=", ".join(FILE_FORMATS)))
    root = root.resolve()
    return sorted(((str(p.resolve()), os.path.relpath(p.resolve(), root)) for p in found), key=lambda f: f[1])


def _unlisted_folders(path: Path) -> List[str]:
    """RETURNS (List[str]): The subfolders of `path` (not hidden ones) this user
    may not list, which Path.rglob passes over in silence."""
    errors: List[OSError] = []
    for _, folders, _ in os.walk(path, onerror=errors.append):
        folders[:] = [name for name in folders if not name.startswith(".")]
    return [str(e.filename) for e in errors if e.filename is not None]


def check_readable(files: Sequence[Path], folders: Sequence[str] = ()) -> None:
    """Raise BC123 naming the files this user cannot open for reading (and the
    folders it cannot list)."""
    bad = [f"{folder} (a folder)" for folder in folders]
    for path in files:
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            bad.append(f"{path} ({e.strerror or e})")
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        what = "an input file" if len(bad) == 1 else f"{len(bad)} input files"
        if folders:
            what = "input files or folders"
        raise ValueError(
            Errors.BC123.format(what=what, user=user_name(), paths=shown, them="it" if len(bad) == 1 else "them")
        )


def read_files(
    files: Sequence[Tuple[str, str]], *, text_column: str = "text", encoding: str = "utf-8"
) -> "ray.data.Dataset":
    """RETURNS (ray.data.Dataset): The records of the files (see resolve_inputs), in
    order, with their source, line (or row) and error (null where the record can
    be read), the text column always present (null where the record has no
    string text).

    Every file's table gets one schema, unified over all files first (a pass
    that parses each file for its schema): a field missing from a file is null
    there, numbers of several types become float64, and a field whose types
    cannot be unified (ids that are numbers in one file and strings in another)
    becomes text in every file. Without this, Ray stops the whole run when it
    meets two files whose fields differ in type. That pass also finds input
    fields named like a field the rows add (RESERVED_FIELDS), refused with
    BC124 naming them and their files before anything is predicted.
    """
    import pyarrow as pa

    ray = import_ray()
    check_encoding(encoding)
    check_text_column(text_column)
    sources = {path: source for path, source in files}
    ds = ray.data.read_binary_files([path for path, _ in files], include_paths=True, num_cpus=0)
    kwargs = {"sources": sources, "text_column": text_column, "encoding": encoding}
    found = ds.map_batches(_file_schemas, batch_size=1, batch_format="pyarrow", num_cpus=0, fn_kwargs=kwargs).take_all()
    schemas = [pa.ipc.read_schema(pa.py_buffer(row["schema"])) for row in found]
    clashes: Dict[str, List[str]] = {}
    for row, schema in zip(found, schemas):
        for name in json.loads((schema.metadata or {}).get(RESERVED_KEY, b"[]")):
            clashes.setdefault(name, []).append(row["source"])
    if clashes:
        names = [name for name in RESERVED_FIELDS if name in clashes]
        where = sorted({source for name in names for source in clashes[name]})
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        raise ValueError(reserved_error(names, RESERVED_FIELDS, where=f" (in {shown})"))
    schema = unified_schema(schemas)
    return ds.map_batches(
        _parse_files, batch_size=1, batch_format="pyarrow", num_cpus=0, fn_kwargs={**kwargs, "schema": schema}
    )


def _parse_files(
    batch: "pyarrow.Table",
    sources: Dict[str, str],
    text_column: str,
    encoding: str = "utf-8",
    schema: Optional["pyarrow.Schema"] = None,
) -> Iterator["pyarrow.Table"]:
    for data, path in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist()):
        table = parse_file(data, sources.get(path) or os.path.basename(path), text_column, encoding)
        yield table if schema is None else conform(table, schema)


def _file_schemas(
    batch: "pyarrow.Table", sources: Dict[str, str], text_column: str, encoding: str = "utf-8"
) -> Iterator["pyarrow.Table"]:
    import pyarrow as pa

    paths = batch.column("path").to_pylist()
    for path, table in zip(paths, _parse_files(batch, sources, text_column, encoding)):
        yield pa.table(
            {
                "source": pa.array([sources.get(path) or os.path.basename(path)], type=pa.string()),
                "schema": pa.array([table.schema.serialize().to_pybytes()], type=pa.binary()),
            }
        )


def unified_schema(schemas: Sequence["pyarrow.Schema"]) -> "pyarrow.Schema":
    """RETURNS (pyarrow.Schema): One schema for tables with these schemas: each
    field in order of first appearance, with the type Arrow promotes its types to
    (null and int64 -> int64, int64 and float64 -> float64), or string where they
    have none (int64 and string)."""
    import pyarrow as pa

    types: Dict[str, List[Any]] = {}
    for schema in schemas:
        for field in schema:
            types.setdefault(field.name, []).append(field.type)
    fields = []
    for name, found in types.items():
        try:
            unified = pa.unify_schemas([pa.schema([(name, t)]) for t in found], promote_options="permissive")
            type_ = unified.field(name).type
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            type_ = pa.string()
        fields.append(pa.field(name, pa.string() if pa.types.is_null(type_) else type_))
    return pa.schema(fields)


def conform(table: "pyarrow.Table", schema: "pyarrow.Schema") -> "pyarrow.Table":
    """RETURNS (pyarrow.Table): `table` with `schema`'s columns, in its order:
    missing columns null, others cast; a value that cannot be cast to text (a
    list, a struct) becomes its JSON text."""
    import pyarrow as pa

    columns = []
    for field in schema:
        if field.name not in table.column_names:
            columns.append(pa.nulls(table.num_rows, type=field.type))
            continue
        column = table.column(field.name)
        if column.type == field.type:
            columns.append(column)
            continue
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            if not pa.types.is_string(field.type):
                raise
            columns.append(pa.array(_as_text(column.to_pylist()), type=pa.string()))
    return pa.Table.from_arrays(columns, schema=schema)


def _as_text(values: List[Any]) -> List[Optional[str]]:
    """Strings as they are, other values as JSON text, nulls null."""
    return [v if v is None or isinstance(v, str) else json.dumps(v, ensure_ascii=False) for v in values]


def parse_file(data: bytes, source: str, text_column: str = "text", encoding: str = "utf-8") -> "pyarrow.Table":
    """Read one input file's records into an Arrow table. Nothing in a file stops
    the run: a record that cannot be read is a row with an error, and so is the
    rest of a file that cannot be parsed further (a damaged Parquet file, a CSV
    field over the csv module's limit).

    data (bytes): The file's content.
    source (str): Its name (its suffix gives its format).
    text_column (str): The column with the texts.
    encoding (str): The encoding of a text file (UTF-8: a byte-order mark is
        skipped). A line that does not decode is one error row (BC120) with its
        line; the file's other lines are read. A file that looks like UTF-16
        read as UTF-8 (a UTF-16 byte-order mark, NUL bytes) is one error row.
    RETURNS (pyarrow.Table): source, line (text formats) or row (Parquet), the
        records' fields and the read error (READ_ERROR). Input fields named
        like a field the rows add (RESERVED_FIELDS) are left out and listed in
        the schema's metadata (RESERVED_KEY), for read_files to refuse.
    """
    check_text_column(text_column)
    file_format = FILE_FORMATS.get(Path(source).suffix.lower()) or detect_format(source)
    if file_format == "parquet":
        return _parse_parquet(data, source, text_column)
    shown = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else encoding
    problem = _utf16_problem(data) if shown == "UTF-8" else None
    if problem is not None:
        whole = Errors.BC120.format(what="the file", encoding=shown, reason=problem, lost="none of its records")
        return _table([(None, {}, whole)], source, "line", text_column)
    text = data.decode("utf-8-sig" if shown == "UTF-8" else encoding, MARK_UNDECODABLE)
    bad = _undecodable_lines(text)
    escapes = file_format == "jsonl" and bool(_SURROGATE_ESCAPE.search(text))
    rows: List[Tuple[Optional[int], Dict[str, Any], Optional[str]]] = []
    clashes: Set[str] = set()
    last = 0
    try:
        stream = io.StringIO(text, newline="")
        for line, row in read_stream_rows(
            stream, file_format, source, keep_invalid=True, keep_blank=file_format == "txt"
        ):
            last = line
            error = _encoding_problem(line, row, bad, shown, file_format)
            if error is None and escapes and _has_surrogates(row):
                reason = "a string in it holds a lone surrogate escape (half of a UTF-16 pair), which is not text"
                error = Errors.BC121.format(what=f"line {line}", reason=reason, fix=FIX_RECORD)
            if error is not None:
                rows.append((line, {}, error))
                continue
            if file_format == "txt":  # one text per line
                row = {text_column: row["text"]}
            clashes.update(name for name in row if name in RESERVED_FIELDS)
            fields = {k: v for k, v in row.items() if k not in RESERVED_FIELDS}
            rows.append((line, fields, record_problem(row, text_column)))
    except csv.Error as e:
        what = f"the rest of the file (after line {last})" if last else "the file"
        rows.append((None, {}, Errors.BC121.format(what=what, reason=f"invalid CSV ({e})", fix=FIX_RECORD)))
    table = _table(rows, source, "line", text_column)
    if clashes:
        table = table.replace_schema_metadata({RESERVED_KEY: json.dumps(sorted(clashes)).encode()})
    return table


# The fix of a record or file that cannot be read, whatever its encoding.
FIX_RECORD = "Correct it where the file was written, or leave the file out of INPUT"
FIX_PARQUET = (
    "Check that the file is complete (not cut short, nor still being written) and written as Parquet, "
    "or leave it out of INPUT"
)


def _utf16_problem(data: bytes) -> Optional[str]:
    """RETURNS (Optional[str]): Why bytes read as UTF-8 look like UTF-16 (whose
    lines cannot be told apart in UTF-8), or None."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "it starts with a UTF-16 byte-order mark"
    head = data[:4096]
    if head and head.count(b"\x00") * 4 >= len(head):
        return "it has NUL bytes between its characters, as UTF-16 has"
    return None


def _undecodable_lines(text: str) -> Dict[int, Tuple[int, int]]:
    """RETURNS (Dict[int, Tuple[int, int]]): For each line (from 1, as
    read_stream_rows counts them) with bytes that did not decode, the position
    of the first (from 1) and its value."""
    if not _MARKS.search(text):
        return {}
    bad = {}
    for n, line in enumerate(io.StringIO(text, newline=""), start=1):
        match = _MARKS.search(line)
        if match:
            bad[n] = (match.start() + 1, ord(match.group()) - 0xDC00)
    return bad


def _encoding_problem(
    line: int, row: Dict[str, Any], bad: Dict[int, Tuple[int, int]], encoding: str, file_format: str
) -> Optional[str]:
    """RETURNS (Optional[str]): BC120 for a record with bytes that did not decode
    (a CSV record: on one of its lines, or in the header), or None."""
    if not bad:
        return None
    if file_format in ("csv", "tsv") and not isinstance(row, InvalidRow):
        if not any(_MARKS.search(k) for k in row if isinstance(k, str)):
            values = [v for v in row.values() if isinstance(v, str) and _MARKS.search(v)]
            if not values:
                return None
            bad_line = min((n for n in bad if n >= line), default=line)
            what, lost = f"the record at line {line}", "the record"
        else:
            bad_line = min(bad)
            what, lost = f"the CSV header (line {bad_line})", f"the record at line {line} (nor any other of the file)"
    elif line in bad:
        bad_line, what, lost = line, f"line {line}", "its record"
    else:
        return None
    column, byte = bad.get(bad_line, (0, 0))
    reason = f"byte 0x{byte:02x} at " + (f"line {bad_line}, " if bad_line != line else "") + f"character {column}"
    return Errors.BC120.format(what=what, encoding=encoding, reason=reason, lost=lost)


def _has_surrogates(row: Any) -> bool:
    """Whether a JSON record holds a lone surrogate (from an escape like \\udc80),
    which Arrow cannot store as text (looked for only in a file with such an
    escape)."""
    if isinstance(row, str):
        return bool(_SURROGATES.search(row))
    if isinstance(row, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in row.items())
    if isinstance(row, list):
        return any(_has_surrogates(v) for v in row)
    return False


def _table(
    rows: List[Tuple[Optional[int], Dict[str, Any], Optional[str]]], source: str, place: str, text_column: str
) -> "pyarrow.Table":
    """RETURNS (pyarrow.Table): source, `place` (line or row), the records' fields
    (the text column always; null in a row with an error) and READ_ERROR."""
    import pyarrow as pa

    columns: Dict[str, List[Any]] = {"source": [], place: [], text_column: []}
    for i, (where, fields, error) in enumerate(rows):
        record = {"source": source, place: where, **fields}
        if error is not None:
            record[text_column] = None
        for name, value in record.items():
            if name not in columns:
                columns[name] = [None] * i
            columns[name].append(value)
        for values in columns.values():
            if len(values) == i:
                values.append(None)
    arrays = {name: _array(values, string=name in ("source", text_column)) for name, values in columns.items()}
    arrays[place] = pa.array(columns[place], type=pa.int64())
    arrays[READ_ERROR] = pa.array([error for _, _, error in rows], type=pa.string())
    return pa.table(arrays)


def _parse_parquet(data: bytes, source: str, text_column: str) -> "pyarrow.Table":
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as e:
        reason = f"it is not a readable Parquet file ({root_cause(e).rstrip('.')})"
        return _table(
            [(None, {}, Errors.BC121.format(what="the file", reason=reason, fix=FIX_PARQUET))],
            source,
            "row",
            text_column,
        )
    clashes = [name for name in table.column_names if name in RESERVED_FIELDS]
    table = table.drop(clashes)
    n = table.num_rows
    errors: List[Optional[str]] = [None] * n  # a null text gets its error at prediction
    table, invalid = _drop_invalid_utf8(table, errors)
    if invalid is not None:
        reason = f"its strings are not valid UTF-8 ({invalid})"
        return _table(
            [(None, {}, Errors.BC121.format(what="the file", reason=reason, fix=FIX_PARQUET))],
            source,
            "row",
            text_column,
        )
    if text_column not in table.column_names:
        errors = [e or text_problem(None, text_column, table.column_names) for e in errors]
        table = table.append_column(text_column, pa.nulls(n, type=pa.string()))
    elif not (
        pa.types.is_string(table.schema.field(text_column).type)
        or pa.types.is_large_string(table.schema.field(text_column).type)
    ):
        # Not text (e.g. numbers): each row gets an error, as in JSONL, and the
        # column the same type as in the other files.
        values = table.column(text_column).to_pylist()
        errors = [e or text_problem(value, text_column) for e, value in zip(errors, values)]
        texts = pa.nulls(n, type=pa.string())
        table = table.set_column(table.column_names.index(text_column), text_column, texts)
    table = table.add_column(0, "row", pa.array(range(1, n + 1), type=pa.int64()))
    table = table.add_column(0, "source", pa.array([source] * n, type=pa.string()))
    table = table.append_column(READ_ERROR, pa.array(errors, type=pa.string()))
    if clashes:
        table = table.replace_schema_metadata({RESERVED_KEY: json.dumps(sorted(clashes)).encode()})
    return table


def _drop_invalid_utf8(table: "pyarrow.Table", errors: List[Optional[str]]) -> Tuple["pyarrow.Table", Optional[str]]:
    """Parquet strings must be UTF-8, but not every writer checks: a string
    column's invalid values become null, their rows an error (BC121), in
    `errors`. RETURNS (Tuple[pyarrow.Table, Optional[str]]): The table, and a
    problem left where the invalid strings are not in a top-level string column
    (a list or struct), which makes the whole file an error."""
    import pyarrow as pa

    try:
        table.validate(full=True)
        return table, None
    except pa.ArrowInvalid as e:
        problem = str(e)
    for i, field in enumerate(table.schema):
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            continue
        column = table.column(i)
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        values: List[Optional[str]] = []
        binary = pa.large_binary() if pa.types.is_large_string(field.type) else pa.binary()
        for row, value in enumerate(column.cast(binary).to_pylist()):
            try:
                values.append(None if value is None else value.decode("utf-8"))
            except UnicodeDecodeError as e:
                values.append(None)
                reason = f"its field '{field.name}' is not valid UTF-8 (byte 0x{value[e.start]:02x} at byte {e.start + 1}), which Parquet strings must be"
                errors[row] = errors[row] or Errors.BC121.format(what=f"row {row + 1}", reason=reason, fix=FIX_RECORD)
        table = table.set_column(i, field, pa.array(values, type=field.type))
    try:
        table.validate(full=True)
    except pa.ArrowInvalid:
        return table, problem
    return table, None


def _array(values: List[Any], string: bool = False) -> "pyarrow.Array":
    """An Arrow array of a column's values; a column whose values have no common
    Arrow type (e.g. numbers and strings) keeps each value as JSON text."""
    import pyarrow as pa

    if string:
        return pa.array(values, type=pa.string())
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        return pa.array(_as_text(values), type=pa.string())


def count_output(folder: Path, output_format: str) -> RayPredictResult:
    """RETURNS (RayPredictResult): The rows and error rows of the shards in a
    folder (read back from the files, so the summary reports what was written)."""
    import pyarrow.parquet as pq

    result = RayPredictResult()
    for path in sorted(folder.glob(f"*.{output_format}")):
        result.n_files += 1
        if output_format == "parquet":
            errors = pq.read_table(path, columns=["error"]).column("error")
            result.n_rows += len(errors)
            result.n_errors += len(errors) - errors.null_count
        else:
            with path.open(encoding="utf-8") as file_:
                for line in file_:
                    result.n_rows += 1
                    result.n_errors += json.loads(line).get("error") is not None
    return result


def read_output(folder: Union[str, Path]) -> "pyarrow.Table":
    """RETURNS (pyarrow.Table): The rows of predict_files' output folder, in order
    (its shards by name; their columns unified where input files differ)."""
    import pyarrow as pa
    import pyarrow.json as pj
    import pyarrow.parquet as pq

    tables = []
    for path in sorted(Path(folder).iterdir()):
        if path.suffix == ".parquet":
            tables.append(pq.read_table(path))
        elif path.suffix == ".jsonl":
            tables.append(pj.read_json(path))
    return pa.concat_tables(tables, promote_options="permissive") if tables else pa.table({})
