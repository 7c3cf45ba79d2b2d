"""Batch prediction on Ray Data: a pipeline's classifier over a Ray Dataset.

``predict(ds, "model-best")`` returns a new Dataset with each input row and its
prediction, computed by a pool of Ray actors that each load the pipeline once (a
callable class in ``map_batches``: loading a transformer per batch or per task would
cost more than classifying the batch). Nothing here is a process pool or an RPC of
our own: scheduling, retries, spilling and the streaming of batches are Ray Data's.
``predict_files`` (``spacy-bertcat predict --engine ray``) runs it over files.

The output columns are the ones `spacy-bertcat predict` writes (rows.py):
``cats``, a struct with one float64 field per label, so Parquet readers, pandas and
SQL engines see typed columns (``cats.POS``) rather than a map whose keys they must
look up; ``predicted_label`` (exclusive classes) or ``predicted_labels``
(multi-label); ``prediction_set`` for a pipeline calibrated with conformal sets; and
``error``, null unless the row's text is null or not a string (then the scores are
null). Every input row gives one output row, and a batch never fails for a bad row.
An input column named like one of these fields is refused (BC124), never replaced.

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
- What can be known before actors start is checked on the driver: the settings,
  and the pipeline folder from its files, without loading it (check_pipeline).
  An actor that still cannot load the pipeline fails its batches with BC122
  (the cause, in one line) rather than dying: Ray would restart it and print
  each death on the driver's console.
- Over files (predict_files), nothing in a file stops the run: an undecodable
  line or a damaged file becomes error rows (BC120, BC121); unreadable files
  (BC123) and input fields named like the rows' own (BC124) are refused before
  prediction.

Ray is an optional dependency (``pip install "spacy-bertcat[ray]"``): it is
imported inside the functions, so ``import spacy_bertcat`` never needs it.

This module is the public API; the code is in ray_dataset.py (the Dataset
transform, its settings and starting Ray), ray_files.py (the file engine:
finding, parsing and unifying the input files, committing the output folder)
and ray_shards.py (the output datasinks).
"""

from .ray_dataset import (
    READ_ERROR,
    BertcatPredictor,
    Concurrency,
    PipelineLoadError,
    check_local_resources,
    check_pipeline,
    import_ray,
    init_ray,
    predict,
    predict_table,
    prediction_arrays,
    resolve_model,
)
from .ray_files import (
    FILE_FORMATS,
    OUTPUT_FORMATS,
    RESERVED_FIELDS,
    RayPredictResult,
    check_encoding,
    check_output_folder,
    check_readable,
    conform,
    count_output,
    parse_file,
    predict_files,
    read_files,
    read_output,
    resolve_inputs,
    unified_schema,
)

__all__ = [
    "READ_ERROR",
    "BertcatPredictor",
    "Concurrency",
    "PipelineLoadError",
    "check_local_resources",
    "check_pipeline",
    "import_ray",
    "init_ray",
    "predict",
    "predict_table",
    "prediction_arrays",
    "resolve_model",
    "FILE_FORMATS",
    "OUTPUT_FORMATS",
    "RESERVED_FIELDS",
    "RayPredictResult",
    "check_encoding",
    "check_output_folder",
    "check_readable",
    "conform",
    "count_output",
    "parse_file",
    "predict_files",
    "read_files",
    "read_output",
    "resolve_inputs",
    "unified_schema",
]
