"""spaCy's own training loop, data-parallel: each worker runs `spacy.training.loop.train`
(the loop of `spacy train`) with three parts swapped for the run.

- Batches (``scaled_batcher``, ``shard_batches``): the config's batch size is per
  worker. Every worker reads the same corpus, shuffles it with the same seed and
  batches it with the configured batcher at N times its size, so each step's
  global batch is the one a single worker with batch N x B would take; worker r
  learns from every N-th of its examples from the r-th on, as torch's
  DistributedSampler deals indices. The workers' shares are disjoint, of similar
  lengths (length-grouping batchers sort a batch), and together the global
  batch: N workers with batch B step as one worker with batch N x B (same
  steps, same schedule). A batch with fewer examples than workers leaves some
  with none; they still take part in the step. (A size *schedule* cannot be
  scaled: then N consecutive batches make one step.)
- Gradients: each bertcat shim gets a ``GradientAllReduce`` (allreduce.py) as its
  ``grad_reducer``; at start, every bertcat model gets worker 0's weights.
- Saves are atomic (training/checkpoint.py), whatever [training.before_to_disk]
  says: a failed worker makes the launcher stop the others within seconds.
- Evaluation (``shared_evaluation``): worker 0 evaluates, and its result is
  broadcast, so every worker sees the same scores and stops at the same step
  (patience, max_steps, max_epochs). Only worker 0 saves (model-best, model-last)
  and logs; the others get no output path and a silent logger.

Components the reducer does not cover (a trainable spaCy component that is not
bertcat: tok2vec, textcat, ner...) are refused before training (BC067): put them
in [training.frozen_components] or train them separately.
"""

import contextlib
import hashlib
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, cast

import torch
from spacy.language import Language
from spacy.training import Example

from ..components.pipes import is_bertcat
from ..errors import Errors
from .allreduce import GradientAllReduce, StepSync, WorkerLost


class SameOnEveryWorker(ValueError):
    """A bad setting every worker finds alike (worker 0 reports it)."""


Batches = Iterable[Tuple[int, List[Example]]]


def scaled_batcher(batcher_config: Dict[str, Any], factor: int) -> Optional[Callable]:
    """RETURNS (Optional[Callable]): The [training.batcher] with `size` times
    `factor`, or None where its size is not a number (a schedule)."""
    from spacy.util import registry

    size = batcher_config.get("size")
    if not isinstance(size, int) or isinstance(size, bool):
        return None
    return registry.resolve({"batcher": {**batcher_config, "size": size * factor}})["batcher"]


def merge_batches(batches: Batches, size: int) -> Iterator[Tuple[int, List[Example]]]:
    """YIELDS (Tuple[int, List[Example]]): The epoch and `size` consecutive batches
    of it as one (fewer only at an epoch's end)."""
    merged: List[Example] = []
    count, merged_epoch = 0, 0
    for epoch, batch in batches:
        if count and epoch != merged_epoch:
            yield merged_epoch, merged
            merged, count = [], 0
        merged_epoch = epoch
        merged.extend(batch)
        count += 1
        if count == size:
            yield merged_epoch, merged
            merged, count = [], 0
    if count:
        yield merged_epoch, merged


def shard_batches(batches: Batches, sync: StepSync) -> Iterator[Tuple[int, List[Example]]]:
    """YIELDS (Tuple[int, List[Example]]): This worker's share of each step's
    global batch: every world_size-th example from its rank on (so workers get
    documents of similar lengths from a length-sorted batch; empty where the batch
    has fewer examples than workers), after fingerprinting the global batch."""
    for epoch, batch in batches:
        batch = list(batch)
        sync.set_batches([eg.reference.text for eg in batch])
        yield epoch, batch[sync.rank :: sync.world_size]


def shared_evaluation(evaluate: Callable[[], Tuple[float, Dict[str, Any]]], sync: StepSync):
    """RETURNS (Callable): `evaluate` run on worker 0, its result broadcast to all."""
    import torch.distributed as dist

    def evaluate_once() -> Tuple[float, Dict[str, Any]]:
        payload: List[Any] = [None]
        error: Optional[BaseException] = None
        if sync.rank == 0:
            try:
                payload[0] = ("ok", evaluate())
            except Exception as e:  # the others must not wait for a result that never comes
                payload[0] = ("error", f"{type(e).__name__}: {e}")
                error = e
        sync.run("the evaluation's broadcast", dist.broadcast_object_list, payload, src=0, device=sync.device)
        if error is not None:
            raise error
        status, result = payload[0]
        if status != "ok":
            raise WorkerLost(
                Errors.BC068.format(
                    rank=sync.rank,
                    what="the evaluation",
                    step=sync.step,
                    detail=f"worker 0 failed to evaluate ({result})",
                )
            )
        return result

    return evaluate_once


def check_pipeline(nlp: Language, frozen: Iterable[str]) -> None:
    """RAISES ValueError (BC067): For a trainable component the workers would not
    keep in sync."""
    frozen = set(frozen)
    others = [
        name
        for name, proc in nlp.pipeline
        if name not in frozen
        and getattr(proc, "is_trainable", False)
        and getattr(proc, "model", None) not in (True, False, None)
        and not is_bertcat(proc)
    ]
    if others:
        raise SameOnEveryWorker(Errors.BC067.format(names=", ".join(others)))


def config_fingerprint(config: Any) -> str:
    """RETURNS (str): A hash of the config's text (its settings and overrides)."""
    return hashlib.sha256(config.to_str().encode("utf-8")).hexdigest()[:16]


def check_same_config(config: Any, sync: StepSync) -> None:
    """RAISES ValueError (BC069): If the workers were started with different
    configs or overrides (e.g. other files on another node)."""
    import torch.distributed as dist

    mine = config_fingerprint(config)
    found: List[Any] = [None] * sync.world_size
    sync.run("the start-up check", dist.all_gather_object, found, mine)
    if len(set(found)) > 1:
        differ = [rank for rank, value in enumerate(found) if value != found[0]]
        raise SameOnEveryWorker(Errors.BC069.format(ranks=", ".join(map(str, differ))))


def install(nlp: Language, sync: StepSync) -> List[GradientAllReduce]:
    """Give every bertcat component worker 0's weights and a gradient reducer.

    RETURNS (List[GradientAllReduce]): The reducers installed.
    """
    import torch.distributed as dist

    from ..layers.classifier import get_shim

    reducers = []
    for _, proc in nlp.pipeline:  # enabled components only
        if not is_bertcat(proc):
            continue
        shim = get_shim(cast(Any, proc).model)
        shim.refuse_training()
        if shim.model is None:
            continue
        if shim._adapter_pending:  # inject now, so that worker 0's adapter weights are the ones broadcast
            shim.inject_adapter()
        with torch.no_grad():
            for tensor in list(shim.model.parameters()) + list(shim.model.buffers()):
                sync.run("the start-up broadcast of the weights", dist.broadcast, tensor.data, src=0)
        shim.grad_reducer = GradientAllReduce(sync)
        reducers.append(shim.grad_reducer)
    return reducers


@contextlib.contextmanager
def patched_loop(sync: StepSync) -> Iterator[None]:
    """Within the context, spaCy's training loop shards its batches and shares
    worker 0's evaluation."""
    from spacy.training import loop

    from ..training.checkpoint import create_atomic_save_v1

    originals = {
        name: getattr(loop, name)
        for name in ("create_train_batches", "create_evaluation_callback", "create_before_to_disk_callback")
    }

    def sharded_train_batches(nlp, corpus, batcher, max_epochs):
        # The steps' global batches: the configured batcher's at N times its size
        # (as one worker with batch N x B takes them), or, for a size schedule, N
        # consecutive batches merged.
        scaled = scaled_batcher(nlp.config.interpolate()["training"]["batcher"], sync.world_size)
        batches = originals["create_train_batches"](nlp, corpus, scaled or batcher, max_epochs)
        return shard_batches(batches if scaled else merge_batches(batches, sync.world_size), sync)

    def shared_evaluation_callback(*args, **kwargs):
        return shared_evaluation(originals["create_evaluation_callback"](*args, **kwargs), sync)

    def atomic_before_to_disk_callback(*args, **kwargs):
        # When a worker dies the launcher stops the others within seconds, maybe
        # during worker 0's save of model-last: saves are always atomic here.
        callback = originals["create_before_to_disk_callback"](*args, **kwargs)
        configured = args[0] if args else kwargs.get("callback")
        atomic = getattr(configured, "__name__", "") == "atomic_before_to_disk"
        return callback if atomic else create_atomic_save_v1(callback)

    loop.create_train_batches = sharded_train_batches
    loop.create_evaluation_callback = shared_evaluation_callback
    loop.create_before_to_disk_callback = atomic_before_to_disk_callback
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(loop, name, original)


def train_worker(
    config_path: Path,
    output_path: Optional[Path],
    *,
    overrides: Dict[str, Any],
    sync: StepSync,
    use_gpu: int,
) -> Tuple[Language, List[GradientAllReduce]]:
    """Initialize the pipeline and train it with spaCy's loop as one of the
    workers of an initialized process group.

    RETURNS (Tuple[Language, List[GradientAllReduce]]): The trained pipeline and
        its reducers (their time in collectives).
    """
    from spacy import util
    from spacy.cli._util import show_validation_error
    from spacy.training.initialize import init_nlp
    from spacy.training.loop import train as train_nlp

    leader = sync.rank == 0
    with _quiet(not leader):
        with show_validation_error(config_path):
            config = util.load_config(config_path, overrides=overrides, interpolate=False)
        check_same_config(config, sync)
        if config["training"].get("seed") is None:
            raise SameOnEveryWorker(
                Errors.BC071.format(
                    detail="[training] seed is null: every worker must shuffle "
                    "the corpus with the same seed; set `--training.seed 0` (or any number)"
                )
            )
        if not leader:
            # One logger (worker 0's): a wandb/MLflow logger on every worker would open N runs.
            config["training"]["logger"] = {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}
        with show_validation_error(config_path, hint_fill=False):
            nlp = init_nlp(config, use_gpu=use_gpu)
        check_pipeline(nlp, nlp.config["training"]["frozen_components"])
        reducers = install(nlp, sync)
        with patched_loop(sync):
            # sys.stdout now: devnull on the other workers
            train_nlp(nlp, output_path if leader else None, use_gpu=use_gpu, stdout=sys.stdout, stderr=sys.stdout)
    return nlp, reducers


@contextlib.contextmanager
def _quiet(quiet: bool) -> Iterator[None]:
    """Workers other than 0 print nothing (`quiet`): their output and warnings
    repeat worker 0's. Errors still raise."""
    if not quiet:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            yield


__all__ = ["SameOnEveryWorker", "WorkerLost", "scaled_batcher", "shard_batches", "shared_evaluation", "train_worker"]
