"""Ray Data batch prediction over a Dataset: ``predict`` and its actors
(``BertcatPredictor``), the Arrow columns of a prediction, the checks of the
settings, and starting or connecting to Ray (``init_ray``).

The public module is spacy_bertcat.predict.ray (its docstring says what the
output holds and what is guaranteed); the file engine (``predict_files``) is in
ray_files.py, on top of this module.
"""

import contextlib
import inspect
import logging
import math
import re
import socket
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, NoReturn, Optional, Tuple, Union

from ..errors import Errors
from .rows import PREDICTION_FIELDS, Classifier, predict_texts

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow
    import ray.data

Concurrency = Union[int, Tuple[int, int]]
# predict_files' column for a record it could not read (private, so that a column
# "error" of the user's own data is never taken for one); `error` in the output.
READ_ERROR = "_spacy_bertcat_read_error"
# Where an actor's log is, in BC122 as the actor raises it (predict_files names
# the folder instead, known on the driver).
ACTOR_LOGS = "the worker-*.err files of the Ray session's logs"
# The files spacy.load reads for a component of these factories (TrainablePipe's
# from_disk and bertcat's): checked on the driver before any actor starts.
COMPONENT_FILES = {
    factory: ("cfg", "model")
    for factory in ("bertcat", "bertcat_multilabel", "textcat", "textcat_multilabel", "tok2vec")
}


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

    The settings, the pipeline folder (check_pipeline) and, where the Dataset
    knows its schema without reading, the text column and the input's columns
    are checked here, before any actor starts: a column named like a
    prediction field (cats, predicted_label, predicted_labels, prediction_set,
    error) is refused (BC124), here or, for a schema known only when read, by
    the first batch that has it.
    """
    ray = import_ray()
    _check_setting("batch_size", batch_size, _is_count(batch_size), "give a whole number of rows, 1 or more")
    compute = _compute_strategy(ray, concurrency)
    _check_setting("num_gpus", num_gpus, _is_number(num_gpus) and num_gpus >= 0, "give 0 (CPU) or a positive number")
    _check_setting(
        "num_cpus",
        num_cpus,
        num_cpus is None or (_is_number(num_cpus) and num_cpus > 0),
        "give a positive number of CPUs per actor, or None for 1",
    )
    _check_setting(
        "pipe_batch_size",
        pipe_batch_size,
        pipe_batch_size is None or _is_count(pipe_batch_size),
        "give a whole number of docs, 1 or more, or None",
    )
    model_path = resolve_model(model, component)
    schema = ds.schema(fetch_if_missing=False)
    names = list(getattr(schema, "names", None) or [])
    if schema is not None and text_column not in names:
        raise ValueError(Errors.BC073.format(column=text_column, columns=names))
    if schema is not None:
        check_reserved(names, text_column)
    cpus = 1.0 if num_cpus is None else float(num_cpus)
    options: Dict[str, Any] = dict(
        fn_constructor_kwargs=dict(
            model=model_path,
            component=component,
            text_column=text_column,
            keep_text=keep_text,
            use_gpu=num_gpus > 0,
            num_threads=max(1, math.floor(cpus)),
            pipe_batch_size=pipe_batch_size,
        ),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=compute,
        num_cpus=cpus,
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
        self,
        model: str,
        component: Optional[str],
        text_column: str,
        keep_text: bool,
        use_gpu: bool,
        num_threads: int,
        pipe_batch_size: Optional[int],
    ) -> None:
        import spacy
        import torch

        self.text_column = text_column
        self.keep_text = keep_text
        self.pipe_batch_size = pipe_batch_size
        # A pipeline that fails to load fails the actor's first batch with a
        # coded error naming the cause (BC122), not the actor: an actor whose
        # constructor raises is restarted by Ray and reported, page after page,
        # on the driver's console before the run stops.
        self.load_error: Optional[PipelineLoadError] = None
        try:
            if use_gpu:
                # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU, which is then GPU 0.
                from thinc.api import require_gpu

                require_gpu(0)
            torch.set_num_threads(num_threads)
            self.nlp = spacy.load(model)
            self.classifier = Classifier(self.nlp, component)
        except Exception as e:
            traceback.print_exc()  # into the actor's log (worker-*.err in the Ray session's logs)
            self.load_error = PipelineLoadError(model, socket.gethostname(), root_cause(e))

    def __call__(self, batch: "pyarrow.Table") -> "pyarrow.Table":
        if self.load_error is not None:
            raise self.load_error
        return predict_table(
            self.nlp,
            self.classifier,
            batch,
            text_column=self.text_column,
            keep_text=self.keep_text,
            batch_size=self.pipe_batch_size,
        )


def predict_table(
    nlp: Any,
    classifier: Classifier,
    table: "pyarrow.Table",
    *,
    text_column: str = "text",
    keep_text: bool = True,
    batch_size: Optional[int] = None,
) -> "pyarrow.Table":
    """Classify the rows of an Arrow table (one Ray batch).

    nlp (Language): The pipeline.
    classifier (Classifier): Its classifier to run.
    table (pyarrow.Table): The rows. A row whose READ_ERROR column is set (a
        record predict_files could not read) keeps that error and is not
        classified.
    text_column (str): The column with the texts.
    keep_text (bool): Keep the text column.
    batch_size (Optional[int]): Docs per nlp.pipe batch.
    RETURNS (pyarrow.Table): The input columns and the prediction columns; an
        input column named like a prediction field is refused (BC124).
    """
    if text_column not in table.column_names:
        raise ValueError(Errors.BC073.format(column=text_column, columns=table.column_names))
    check_reserved(table.column_names, text_column)
    values = table.column(text_column).to_pylist()
    errors = table.column(READ_ERROR).to_pylist() if READ_ERROR in table.column_names else None
    if errors is not None:
        errors = [e if e is None or isinstance(e, str) else str(e) for e in errors]
    fields = predict_texts(nlp, classifier, values, text_field=text_column, errors=errors, batch_size=batch_size)
    drop = [name for name in table.column_names if name == READ_ERROR or (not keep_text and name == text_column)]
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


class PipelineLoadError(ValueError):
    """BC122: an actor could not load the pipeline (raised by its batches, so that
    the driver gets the cause, not an actor restarted over and over).

    model (str): The pipeline. node (str): The actor's host. cause (str): The
    error spacy.load (or the choice of the classifier) raised, in one line.
    log (str): Where Ray's log of it is.
    """

    def __init__(self, model: str, node: str, cause: str, log: str = ACTOR_LOGS) -> None:
        self.model, self.node, self.cause, self.log = model, node, cause.rstrip(". "), log
        super().__init__(
            Errors.BC122.format(model=model, node=f" on node {node}" if node else "", cause=self.cause, log=log)
        )

    def __reduce__(self) -> Any:
        return (PipelineLoadError, (self.model, self.node, self.cause, self.log))


def root_cause(error: BaseException, limit: int = 2000) -> str:
    """RETURNS (str): An exception in one line: its type and message (a coded
    message of this package or spaCy's alone), whitespace collapsed."""
    text = " ".join(str(error).split())
    if not (text.startswith("[BC") or text.startswith("[E")):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def find_load_error(error: BaseException, log: Optional[str] = None) -> Optional[str]:
    """RETURNS (Optional[str]): The BC122 message of an actor that could not load
    the pipeline, found in the exception a Ray run raised (Ray keeps the
    actor's exception only as text in its RayTaskError), with `log` for where
    the actor's log is; None if the run failed for another reason."""
    seen = set()
    stack: List[Any] = [error]
    while stack:
        e = stack.pop()
        if not isinstance(e, BaseException) or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, PipelineLoadError):
            found: Optional[str] = str(e)
        else:
            match = re.search(r"\[BC122\][^\n]*", str(e))
            found = match.group(0) if match else None
        if found is not None:
            return found.replace(ACTOR_LOGS, log) if log else found
        stack.extend((e.__cause__, e.__context__, getattr(e, "cause", None)))
    return None


@contextlib.contextmanager
def quiet_ray_data_errors() -> Iterator[None]:
    """Keep Ray Data's ERROR records (a failed run's stack traces, printed before
    the exception reaches the caller) off the console while the block runs; its
    log file (ray-data.log in the session's logs) still has them. For a run whose
    failure the caller reports itself, in a few lines."""

    def drop_errors(record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR

    handlers = [
        h
        for h in logging.getLogger("ray.data").handlers
        if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
    ]
    for handler in handlers:
        handler.addFilter(drop_errors)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(drop_errors)


def ray_log_folder() -> str:
    """RETURNS (str): The logs folder of the Ray session this process is
    connected to (on the head node), or a description where not known."""
    try:
        import ray._private.worker

        node = ray._private.worker._global_node
        if node is not None:
            return str(Path(node.get_session_dir_path()) / "logs")
    except Exception:  # a Ray client connection, or internals that moved
        pass
    return "the Ray session's logs"


def check_reserved(columns: List[str], text_column: str, reserved: Tuple[str, ...] = PREDICTION_FIELDS) -> None:
    """Raise BC124 if the input has columns named like a field the prediction
    rows add (`reserved`), the text column included."""
    clashes = [name for name in reserved if name in columns or name == text_column]
    if clashes:
        raise ValueError(reserved_error(clashes, reserved, how=" with ds.rename_columns"))


def reserved_error(clashes: List[str], reserved: Tuple[str, ...], where: str = "", how: str = "") -> str:
    """RETURNS (str): BC124 for the input fields `clashes`."""
    fields = ", ".join(f"'{name}'" for name in clashes)
    return Errors.BC124.format(
        fields=f"the field(s) {fields}",
        reserved=", ".join(reserved),
        where=where,
        example=clashes[0],
        how=how,
    )


def resolve_model(model: Union[str, Path], component: Optional[str] = None) -> str:
    """RETURNS (str): The absolute path of a saved pipeline, or an installed
    package's name; raises BC075 for neither or for a pipeline folder spacy.load
    would fail on (check_pipeline), BC033 for a `component` it does not run;
    checked on the driver, before any actor starts."""
    import spacy.util

    path = Path(model).expanduser()
    if path.exists():
        if not (path / "config.cfg").is_file():
            raise ValueError(
                Errors.BC075.format(model=model, detail="it has no config.cfg, so it is not a saved pipeline")
            )
        check_pipeline(path, model, component)
        return str(path.resolve())
    if isinstance(model, str) and spacy.util.is_package(model):
        data = _package_data(model)
        if data is not None:
            check_pipeline(data, model, component)
        return model
    raise ValueError(
        Errors.BC075.format(model=model, detail="there is no such path, nor an installed package of that name")
    )


def check_pipeline(path: Path, model: Union[str, Path], component: Optional[str] = None) -> None:
    """Check a saved pipeline's folder for what spacy.load needs, without loading
    it (milliseconds, where a load costs seconds and the memory of the model): a
    config.cfg that parses, whose [nlp] pipeline has a block per component;
    meta.json; the tokenizer; each bertcat, textcat or tok2vec component's cfg
    and model files, present, not empty and readable; and `component` among the
    enabled components. Raises BC075 (or BC033) naming the problem. A damaged
    file that passes these checks fails the actors' load, reported as BC122."""
    import spacy.util

    def fail(detail: str) -> NoReturn:
        raise ValueError(Errors.BC075.format(model=model, detail=detail))

    def check_file(name: str, what: str) -> None:
        file_ = path / name
        again = "copy or save the whole pipeline folder again"
        if not file_.is_file():
            fail(f"{name}, {what}, is missing: it was deleted, or the save did not finish; {again}")
        try:
            with file_.open("rb") as f:
                empty = not f.read(1)
        except OSError as e:
            fail(
                f"{name}, {what}, cannot be read as {user_name()} ({e.strerror or e}); make it readable (chmod -R a+rX)"
            )
        if empty:
            fail(f"{name}, {what}, is empty: the save did not finish; {again}")

    check_file("config.cfg", "its config file")
    try:
        config = spacy.util.load_config(path / "config.cfg", interpolate=False)
    except Exception as e:
        fail(f"its config.cfg cannot be parsed ({root_cause(e)})")
    check_file("meta.json", "its meta file")
    check_file("tokenizer", "its tokenizer file")
    nlp_config = config.get("nlp", {})
    blocks = config.get("components", {})
    pipeline = list(nlp_config.get("pipeline", []))
    for name in pipeline:
        if name not in blocks:
            fail(f"its config.cfg lists '{name}' in [nlp] pipeline but has no [components.{name}] block")
        for file_name in COMPONENT_FILES.get(blocks[name].get("factory"), ()):
            check_file(f"{name}/{file_name}", f"a file of the component '{name}'")
    disabled = set(nlp_config.get("disabled", []))
    enabled = [name for name in pipeline if name not in disabled]
    if component is not None and component not in enabled:
        raise ValueError(Errors.BC033.format(detail=f" named '{component}'", names=enabled))


def _package_data(name: str) -> Optional[Path]:
    """RETURNS (Optional[Path]): The pipeline folder inside an installed pipeline
    package (where spacy.load reads it), or None where it cannot be told."""
    import spacy.util

    try:
        package = Path(spacy.util.get_package_path(name))
        meta = spacy.util.get_model_meta(package)
        data = package / f"{meta['lang']}_{meta['name']}-{meta['version']}"
    except Exception:
        return None
    return data if (data / "config.cfg").is_file() else None


def user_name() -> str:
    """RETURNS (str): This process's user, for messages about permissions."""
    import getpass
    import os

    try:
        return getpass.getuser()
    except Exception:  # no name for this uid (a container)
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "this user"


def init_ray(ray: Any, address: Optional[str]) -> bool:
    """Connect to the cluster at `address`, or start a local Ray (no dashboard,
    warnings only) unless this process is connected already.

    RETURNS (bool): Whether a local Ray was started here (to shut down after).
    """
    # Ray Data's console log: warnings only (its progress is logged at INFO where
    # stderr is not a terminal; on a terminal it draws progress bars).
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.WARNING)
    if ray.is_initialized():
        return False
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False)
    if address:
        ray.init(address=address, **quiet)
        return False
    ray.init(include_dashboard=False, **quiet)
    return True


def check_local_resources(ray: Any, concurrency: int, num_cpus: Optional[float], num_gpus: float) -> float:
    """RETURNS (float): The CPUs per actor on the local Ray: given, or its CPUs
    shared among the actors; raises BC074 for actors that would never start (Ray
    would wait for them for ever)."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if num_cpus is None:
        num_cpus = max(1, int(cpus // concurrency))
    if concurrency * num_cpus > cpus:
        raise ValueError(
            Errors.BC074.format(
                setting="concurrency",
                value=concurrency,
                detail=f"{concurrency} actor(s) of {num_cpus:g} CPU(s) need {concurrency * num_cpus:g} CPUs, and this "
                f"machine's Ray has {cpus:g}; use fewer actors or --num-cpus",
            )
        )
    if num_gpus and concurrency * num_gpus > gpus:
        raise ValueError(
            Errors.BC074.format(
                setting="num_gpus",
                value=num_gpus,
                detail=f"{concurrency} actor(s) of {num_gpus:g} GPU(s) need {concurrency * num_gpus:g} GPUs, and this "
                f"machine's Ray sees {gpus:g}",
            )
        )
    return num_cpus


def _compute_strategy(ray: Any, concurrency: Concurrency) -> Any:
    if _is_count(concurrency):
        return ray.data.ActorPoolStrategy(size=concurrency)
    if (
        isinstance(concurrency, (tuple, list))
        and len(concurrency) == 2
        and all(map(_is_count, concurrency))
        and concurrency[0] <= concurrency[1]
    ):
        return ray.data.ActorPoolStrategy(min_size=concurrency[0], max_size=concurrency[1])
    raise ValueError(
        Errors.BC074.format(
            setting="concurrency",
            value=concurrency,
            detail="give a number of actors (1 or more), or (min, max) with 1 <= min <= max for an autoscaling pool",
        )
    )


def _check_setting(setting: str, value: Any, ok: bool, detail: str) -> None:
    if not ok:
        raise ValueError(Errors.BC074.format(setting=setting, value=value, detail=detail))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
