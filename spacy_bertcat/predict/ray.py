"""Batch prediction on Ray Data: a pipeline's classifier over a Ray Dataset.

``predict(ds, "model-best")`` returns a new Dataset with each input row and its
prediction, computed by a pool of Ray actors that each load the pipeline once (a
callable class in ``map_batches``: loading a transformer per batch or per task would
cost more than classifying the batch). Nothing here is a process pool or an RPC of
our own: scheduling, retries, spilling and the streaming of batches are Ray Data's.
``predict_files`` (``spacy-bertcat predict --engine ray``) runs it over files.

The output columns are the ones `spacy-bertcat predict` writes (predictions.py):
``cats``, a struct with one float64 field per label, so Parquet readers, pandas and
SQL engines see typed columns (``cats.POS``) rather than a map whose keys they must
look up; ``predicted_label`` (exclusive classes) or ``predicted_labels``
(multi-label); ``prediction_set`` for a pipeline calibrated with conformal sets; and
``error``, null unless the row's text is null or not a string (then the scores are
null). Every input row gives one output row, and a batch never fails for a bad row.

Guarantees, and what they rest on:

- A killed actor loses no row and duplicates none. Ray Data gives the actors of
  ``map_batches`` ``max_restarts=-1`` and ``max_task_retries=-1`` unless the caller
  overrides them (ray/data/_internal/execution/operators/actor_pool_map_operator.py,
  ``_apply_default_remote_args``): Ray restarts the actor (which loads the pipeline
  again) and runs the batch it held again; a batch's output is only taken from a
  task that finished. We rely on these defaults instead of passing the options,
  which Ray 2.60 deprecates as extra ``ray_remote_args``. tests/test_ray.py kills
  an actor mid-run to check it.
- Rows come out in input order (``preserve_order=True``, the default): the
  returned Dataset carries its own copy of the DataContext with
  ``execution_options.preserve_order`` set, so consumers and writers see the input
  order without changing the caller's context. Each row keeps its input columns in
  any case, so an id column always stays with its prediction.
- Only the chosen classifier runs (``component``; by default the first that sets
  doc.cats), as in the CLI.

Ray is an optional dependency (``pip install "spacy-bertcat[ray]"``): it is
imported inside the functions, so ``import spacy_bertcat`` never needs it.
"""
import inspect
import io
import json
import math
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..data.records import detect_format, read_stream_rows
from ..errors import Errors
from .rows import PREDICTION_FIELDS, Classifier, predict_texts, record_problem, text_problem

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow
    import ray.data

Concurrency = Union[int, Tuple[int, int]]
OUTPUT_FORMATS = ("parquet", "jsonl")
# predict_files' column for a record it could not read (private, so that a column
# "error" of the user's own data is never taken for one); `error` in the output.
READ_ERROR = "_spacy_bertcat_read_error"
# Input files predict_files reads, by suffix (the text formats as in data.py).
FILE_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".tsv": "tsv",
                ".txt": "txt", ".parquet": "parquet"}


def import_ray() -> Any:
    """RETURNS: The ray module with ray.data, or raises BC072 if it is not installed."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ValueError(Errors.BC072) from e
    return ray


def predict(
    ds: "ray.data.Dataset",
    model: Union[str, Path],
    *,
    text_column: str = "text",
    component: Optional[str] = None,
    batch_size: int = 256,
    concurrency: Concurrency = 1,
    num_gpus: float = 0,
    num_cpus: Optional[float] = None,
    keep_text: bool = True,
    preserve_order: bool = True,
    pipe_batch_size: Optional[int] = None,
) -> "ray.data.Dataset":
    """Classify the texts of a Ray Dataset with a saved pipeline (lazily, like any
    Ray Data transform: nothing runs until the result is consumed or written).

    ds (ray.data.Dataset): The input; any columns, one of them the texts.
    model (Union[str, Path]): A saved pipeline's path (it must be readable at the
        same path on every node of the cluster) or an installed package's name.
    text_column (str): The column with the texts.
    component (Optional[str]): The classifier to run (default: the first that sets
        doc.cats); the pipeline's other classifiers do not run.
    batch_size (int): Rows per batch sent to an actor (each actor classifies its
        batch with nlp.pipe).
    concurrency (Union[int, Tuple[int, int]]): Actors: a fixed number, or (min, max)
        for an autoscaling pool. Ray hands each actor whole blocks of the
        input, so a Dataset of one block keeps one actor busy: read with
        override_num_blocks, or repartition, to give each actor work.
    num_gpus (float): GPUs per actor (0: the CPU; a fraction shares a GPU).
    num_cpus (Optional[float]): CPUs per actor, which are also its torch threads
        (default 1).
    keep_text (bool): Keep the text column in the output.
    preserve_order (bool): Output rows in input order (see the module docstring);
        False lets Ray hand out batches as they finish.
    pipe_batch_size (Optional[int]): Docs per nlp.pipe batch inside an actor
        (default: the pipeline's).
    RETURNS (ray.data.Dataset): Each input row (the text column dropped if not
        keep_text) with cats, predicted_label or predicted_labels,
        prediction_set (calibrated pipelines with sets) and error.

    The settings, the model's path and (where the Dataset knows its schema
    without reading) the text column are checked here, before any actor starts.
    """
    ray = import_ray()
    _check_setting("batch_size", batch_size, _is_count(batch_size), "give a whole number of rows, 1 or more")
    compute = _compute_strategy(ray, concurrency)
    _check_setting("num_gpus", num_gpus, _is_number(num_gpus) and num_gpus >= 0, "give 0 (CPU) or a positive number")
    _check_setting("num_cpus", num_cpus, num_cpus is None or (_is_number(num_cpus) and num_cpus > 0),
                   "give a positive number of CPUs per actor, or None for 1")
    _check_setting("pipe_batch_size", pipe_batch_size, pipe_batch_size is None or _is_count(pipe_batch_size),
                   "give a whole number of docs, 1 or more, or None")
    model_path = resolve_model(model)
    schema = ds.schema(fetch_if_missing=False)
    names = list(getattr(schema, "names", None) or [])
    if schema is not None and text_column not in names:
        raise ValueError(Errors.BC073.format(column=text_column, columns=names))
    cpus = 1.0 if num_cpus is None else float(num_cpus)
    options: Dict[str, Any] = dict(
        fn_constructor_kwargs=dict(
            model=model_path, component=component, text_column=text_column, keep_text=keep_text,
            use_gpu=num_gpus > 0, num_threads=max(1, math.floor(cpus)), pipe_batch_size=pipe_batch_size,
        ),
        batch_size=batch_size, batch_format="pyarrow", compute=compute, num_cpus=cpus,
        num_gpus=num_gpus if num_gpus > 0 else None,
    )
    if "udf_modifying_row_count" in inspect.signature(ds.map_batches).parameters:
        options["udf_modifying_row_count"] = False  # one row out per row in (allows limit pushdown)
    out = ds.map_batches(BertcatPredictor, **options)
    if preserve_order:
        # map_batches shares the parent's DataContext; a deep copy keeps the
        # setting to this Dataset and what is derived from it.
        out = ray.data.Dataset.copy(out, _deep_copy=True)
        out.context.execution_options.preserve_order = True
    return out


class BertcatPredictor:
    """The callable class of ``predict``'s map_batches: one instance per Ray actor,
    which loads the pipeline once and classifies the batches it is given.

    model (str): The pipeline's path or package name.
    component (Optional[str]): The classifier to run.
    text_column (str): The column with the texts.
    keep_text (bool): Keep the text column.
    use_gpu (bool): Run on the GPU Ray assigned to the actor.
    num_threads (int): Torch threads (the actor's CPUs).
    pipe_batch_size (Optional[int]): Docs per nlp.pipe batch.
    """

    def __init__(
        self, model: str, component: Optional[str], text_column: str, keep_text: bool, use_gpu: bool,
        num_threads: int, pipe_batch_size: Optional[int],
    ) -> None:
        import spacy
        import torch

        if use_gpu:
            # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU, which is then GPU 0.
            from thinc.api import require_gpu

            require_gpu(0)
        torch.set_num_threads(num_threads)
        self.nlp = spacy.load(model)
        self.classifier = Classifier(self.nlp, component)
        self.text_column = text_column
        self.keep_text = keep_text
        self.pipe_batch_size = pipe_batch_size

    def __call__(self, batch: "pyarrow.Table") -> "pyarrow.Table":
        return predict_table(self.nlp, self.classifier, batch, text_column=self.text_column,
                             keep_text=self.keep_text, batch_size=self.pipe_batch_size)


def predict_table(
    nlp: Any, classifier: Classifier, table: "pyarrow.Table", *, text_column: str = "text", keep_text: bool = True,
    batch_size: Optional[int] = None,
) -> "pyarrow.Table":
    """Classify the rows of an Arrow table (one Ray batch).

    nlp (Language): The pipeline.
    classifier (Classifier): Its classifier to run.
    table (pyarrow.Table): The rows. A row whose ``error`` column is already set
        (a record predict_files could not read) keeps that error and is not
        classified.
    text_column (str): The column with the texts.
    keep_text (bool): Keep the text column.
    batch_size (Optional[int]): Docs per nlp.pipe batch.
    RETURNS (pyarrow.Table): The input columns (an input column named like a
        prediction field is replaced) and the prediction columns.
    """
    if text_column not in table.column_names:
        raise ValueError(Errors.BC073.format(column=text_column, columns=table.column_names))
    values = table.column(text_column).to_pylist()
    errors = table.column(READ_ERROR).to_pylist() if READ_ERROR in table.column_names else None
    if errors is not None:
        errors = [e if e is None or isinstance(e, str) else str(e) for e in errors]
    fields = predict_texts(nlp, classifier, values, text_field=text_column, errors=errors, batch_size=batch_size)
    drop = [name for name in table.column_names
            if name in PREDICTION_FIELDS or name == READ_ERROR or (not keep_text and name == text_column)]
    out = table.drop(drop) if drop else table
    for name, array in prediction_arrays(classifier, fields).items():
        out = out.append_column(name, array)
    return out


def prediction_arrays(classifier: Classifier, fields: List[Dict[str, Any]]) -> Dict[str, "pyarrow.Array"]:
    """RETURNS (Dict[str, pyarrow.Array]): The prediction columns of rows with
    these prediction fields, with the same types in every batch: cats (a struct
    of float64 per label), predicted_label (string) or predicted_labels (list of
    strings), prediction_set (list of strings, calibrated pipelines with sets) and
    error (string)."""
    import pyarrow as pa

    cats_type = pa.struct([pa.field(label, pa.float64()) for label in classifier.labels])
    columns = {"cats": pa.array([f.get("cats") for f in fields], type=cats_type)}
    if classifier.exclusive:
        columns["predicted_label"] = pa.array([f.get("predicted_label") for f in fields], type=pa.string())
    else:
        columns["predicted_labels"] = pa.array([f.get("predicted_labels") for f in fields], type=pa.list_(pa.string()))
    if classifier.has_sets:
        columns["prediction_set"] = pa.array([f.get("prediction_set") for f in fields], type=pa.list_(pa.string()))
    columns["error"] = pa.array([f.get("error") for f in fields], type=pa.string())
    return columns


def resolve_model(model: Union[str, Path]) -> str:
    """RETURNS (str): The absolute path of a saved pipeline, or an installed
    package's name; raises BC075 for neither (checked on the driver, before any
    actor starts)."""
    import spacy.util

    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.cfg").is_file():
            raise ValueError(Errors.BC075.format(model=model, detail="it has no config.cfg, so it is not a saved pipeline"))
        return str(path.resolve())
    if isinstance(model, str) and spacy.util.is_package(model):
        return model
    raise ValueError(Errors.BC075.format(model=model, detail="there is no such path, nor an installed package of that name"))


# predict_files: spacy-bertcat predict --engine ray


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
    _check_setting("rows_per_file", rows_per_file, rows_per_file is None or _is_count(rows_per_file),
                   "give a whole number of rows, 1 or more, or None")
    output = Path(output)
    check_output_folder(output)
    files = resolve_inputs(inputs)
    ds = read_files(files, text_column=text_column)
    out = predict(ds, model, text_column=text_column, component=component, batch_size=batch_size,
                  concurrency=concurrency, num_gpus=num_gpus, num_cpus=num_cpus, keep_text=keep_text)
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
        raise ValueError(Errors.BC043.format(path=inputs, detail=f"no input files (suffixes: {', '.join(FILE_FORMATS)})"))
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
    return ds.map_batches(_parse_files, batch_size=1, batch_format="pyarrow", num_cpus=0,
                          fn_kwargs={**kwargs, "schema": schema})


def _parse_files(batch: "pyarrow.Table", sources: Dict[str, str], text_column: str,
                 schema: Optional["pyarrow.Schema"] = None) -> Iterator["pyarrow.Table"]:
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
        record = {"source": source, "line": line, **{k: v for k, v in row.items() if k not in ("source", "line", "error")}}
        if error is not None:
            record[text_column] = None
        for name, value in record.items():
            columns.setdefault(name, [None] * i).append(value)
        for name, values in columns.items():
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
    elif not (pa.types.is_string(table.schema.field(text_column).type)
              or pa.types.is_large_string(table.schema.field(text_column).type)):
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


def _compute_strategy(ray: Any, concurrency: Concurrency) -> Any:
    if _is_count(concurrency):
        return ray.data.ActorPoolStrategy(size=concurrency)
    if isinstance(concurrency, (tuple, list)) and len(concurrency) == 2 and all(map(_is_count, concurrency)) \
            and concurrency[0] <= concurrency[1]:
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    raise ValueError(Errors.BC074.format(
        setting="concurrency", value=concurrency,
        detail="give a number of actors (1 or more), or (min, max) with 1 <= min <= max for an autoscaling pool",
    ))


def _check_setting(setting: str, value: Any, ok: bool, detail: str) -> None:
    if not ok:
        raise ValueError(Errors.BC074.format(setting=setting, value=value, detail=detail))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
