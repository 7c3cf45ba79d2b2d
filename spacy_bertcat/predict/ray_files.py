"""Ray prediction over files (``spacy-bertcat predict --engine ray``):
``predict_files`` finds the input files, parses them into Arrow tables with one
schema unified over all files, runs ``predict`` (ray_dataset.py) over them and
commits the output folder of shards (ray_shards.py) only when it is complete.

Its names are public through spacy_bertcat.predict.ray.
"""

import io
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..data.formats import PREDICT_SUFFIXES, detect_format
from ..data.records import read_stream_rows
from ..errors import Errors
from .ray_dataset import READ_ERROR, Concurrency, _check_setting, _is_count, import_ray, predict
from .rows import record_problem, text_problem

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow
    import ray.data

OUTPUT_FORMATS = ("parquet", "jsonl")
# Input files predict_files reads, by suffix (the one table is data/formats.py's).
FILE_FORMATS = PREDICT_SUFFIXES


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
) -> RayPredictResult:
    """Classify the records of files into a folder of Parquet or JSONL shards, on
    the Ray instance this process is connected to (ray.init first, or one is
    started with Ray's defaults).

    Each output row is an input record's fields, ``source`` (its file, relative to
    the input folder or glob) and ``line`` (its line in a JSONL/CSV/TSV/text file,
    from 1) or ``row`` (its row in a Parquet file, from 1), then the prediction
    columns (see predict). A record that cannot be read (invalid JSON, no text)
    gets an ``error`` and null scores; rows are in input order: files sorted by
    name, then their lines. Each file is read whole by one Ray task: shard very
    large inputs.

    The shards are written into a hidden folder beside OUTPUT, which is renamed
    to OUTPUT when the run is complete (removed if it fails), so a folder under
    the final name is always complete.

    model (Union[str, Path]): A saved pipeline's path or a package name.
    inputs (Union[str, Path]): A file, a folder of files, or a glob (data/*.jsonl).
    output (Union[str, Path]): The output folder: new, or empty.
    output_format (str): "parquet" or "jsonl".
    rows_per_file (Optional[int]): Rows to collect at least into each output file
        (None: one per batch).
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
    output = Path(output)
    check_output_folder(output)
    files = resolve_inputs(inputs)
    ds = read_files(files, text_column=text_column)
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
        out.write_datasink(sink, ray_remote_args={"num_cpus": 0})
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


def check_output_folder(output: Path) -> None:
    """Raise BC076 if `output` exists and is not an empty folder."""
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(Errors.BC076.format(path=output))


def resolve_inputs(inputs: Union[str, Path]) -> List[Tuple[str, str]]:
    """The input files of predict_files: a file, the files of a folder (and its
    subfolders) with a known suffix, or the files a glob matches; sorted by name.

    RETURNS (List[Tuple[str, str]]): Each file's absolute path and its name
        relative to the folder or the glob's parent (its `source`).
    """
    import glob

    text = str(inputs)
    path = Path(text).expanduser()
    if path.is_file():
        found, root = [path], path.parent
    elif path.is_dir():
        found, root = [p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FILE_FORMATS], path
        found = [p for p in found if not any(part.startswith(".") for part in p.relative_to(path).parts)]
    elif glob.has_magic(text):
        found = [Path(p) for p in glob.glob(os.path.expanduser(text), recursive=True) if Path(p).is_file()]
        root = Path(os.path.commonpath([str(p.parent.resolve()) for p in found])) if found else Path(".")
    else:
        raise ValueError(Errors.BC043.format(path=inputs, detail="there is no such file or folder"))
    if not found:
        raise ValueError(
            Errors.BC043.format(path=inputs, detail=f"no input files (suffixes: {', '.join(FILE_FORMATS)})")
        )
    unknown = sorted({p.suffix for p in found if p.suffix.lower() not in FILE_FORMATS})
    if unknown:
        raise ValueError(Errors.BC032.format(path=inputs, suffix=", ".join(unknown), formats=", ".join(FILE_FORMATS)))
    root = root.resolve()
    return sorted(((str(p.resolve()), os.path.relpath(p.resolve(), root)) for p in found), key=lambda f: f[1])


def read_files(files: Sequence[Tuple[str, str]], *, text_column: str = "text") -> "ray.data.Dataset":
    """RETURNS (ray.data.Dataset): The records of the files (see resolve_inputs), in
    order, with their source, line (or row) and error (null where the record can
    be read), the text column always present (null where the record has no
    string text).

    Every file's table gets one schema, unified over all files first (a pass
    that parses each file for its schema): a field missing from a file is null
    there, numbers of several types become float64, and a field whose types
    cannot be unified (ids that are numbers in one file and strings in another)
    becomes text in every file. Without this, Ray stops the whole run when it
    meets two files whose fields differ in type.
    """
    import pyarrow as pa

    ray = import_ray()
    sources = {path: source for path, source in files}
    ds = ray.data.read_binary_files([path for path, _ in files], include_paths=True, num_cpus=0)
    kwargs = {"sources": sources, "text_column": text_column}
    found = ds.map_batches(_file_schemas, batch_size=1, batch_format="pyarrow", num_cpus=0, fn_kwargs=kwargs).take_all()
    schema = unified_schema([pa.ipc.read_schema(pa.py_buffer(row["schema"])) for row in found])
    return ds.map_batches(
        _parse_files, batch_size=1, batch_format="pyarrow", num_cpus=0, fn_kwargs={**kwargs, "schema": schema}
    )


def _parse_files(
    batch: "pyarrow.Table", sources: Dict[str, str], text_column: str, schema: Optional["pyarrow.Schema"] = None
) -> Iterator["pyarrow.Table"]:
    for data, path in zip(batch.column("bytes").to_pylist(), batch.column("path").to_pylist()):
        table = parse_file(data, sources.get(path) or os.path.basename(path), text_column)
        yield table if schema is None else conform(table, schema)


def _file_schemas(batch: "pyarrow.Table", sources: Dict[str, str], text_column: str) -> Iterator["pyarrow.Table"]:
    import pyarrow as pa

    for table in _parse_files(batch, sources, text_column):
        yield pa.table({"schema": pa.array([table.schema.serialize().to_pybytes()], type=pa.binary())})


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


def parse_file(data: bytes, source: str, text_column: str = "text") -> "pyarrow.Table":
    """Read one input file's records into an Arrow table.

    data (bytes): The file's content.
    source (str): Its name (its suffix gives its format).
    text_column (str): The column with the texts.
    RETURNS (pyarrow.Table): source, line (text formats) or row (Parquet), the
        records' fields and error.
    """
    import pyarrow as pa

    file_format = FILE_FORMATS.get(Path(source).suffix.lower()) or detect_format(source)
    if file_format == "parquet":
        return _parse_parquet(data, source, text_column)
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    try:
        rows = list(read_stream_rows(stream, file_format, source, keep_invalid=True, keep_blank=file_format == "txt"))
    except UnicodeDecodeError as e:
        raise ValueError(Errors.BC047.format(path=source, encoding="UTF-8", reason=e.reason)) from e
    if file_format == "txt":  # one text per line
        rows = [(line, {text_column: row["text"]}) for line, row in rows]
    columns: Dict[str, List[Any]] = {"source": [], "line": [], text_column: []}
    errors = []
    for i, (line, row) in enumerate(rows):
        error = record_problem(row, text_column)
        errors.append(error)
        record = {
            "source": source,
            "line": line,
            **{k: v for k, v in row.items() if k not in ("source", "line", "error")},
        }
        if error is not None:
            record[text_column] = None
        for name, value in record.items():
            columns.setdefault(name, [None] * i).append(value)
        for values in columns.values():
            if len(values) == i:
                values.append(None)
    arrays = {name: _array(values, string=name in ("source", text_column)) for name, values in columns.items()}
    arrays[READ_ERROR] = pa.array(errors, type=pa.string())
    return pa.table(arrays)


def _parse_parquet(data: bytes, source: str, text_column: str) -> "pyarrow.Table":
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(data))
    table = table.drop([name for name in ("source", "row", "error") if name in table.column_names])
    n = table.num_rows
    errors: List[Optional[str]] = [None] * n  # a null text gets its error at prediction
    if text_column not in table.column_names:
        errors = [text_problem(None, text_column, table.column_names)] * n
        table = table.append_column(text_column, pa.nulls(n, type=pa.string()))
    elif not (
        pa.types.is_string(table.schema.field(text_column).type)
        or pa.types.is_large_string(table.schema.field(text_column).type)
    ):
        # Not text (e.g. numbers): each row gets an error, as in JSONL, and the
        # column the same type as in the other files.
        values = table.column(text_column).to_pylist()
        errors = [text_problem(value, text_column) for value in values]
        texts = pa.nulls(n, type=pa.string())
        table = table.set_column(table.column_names.index(text_column), text_column, texts)
    table = table.add_column(0, "row", pa.array(range(1, n + 1), type=pa.int64()))
    table = table.add_column(0, "source", pa.array([source] * n, type=pa.string()))
    return table.append_column(READ_ERROR, pa.array(errors, type=pa.string()))


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
