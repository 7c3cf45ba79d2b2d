"""Starting the workers, and the process group each worker joins.

Workers are started by torch's elastic launcher: by `torchrun` (one or many nodes,
its rendezvous flags), or by `spacy-bertcat train --workers N`, which calls the
same launcher (`torch.distributed.launcher.api.elastic_launch`, what `torchrun
--standalone` runs) on this machine. A worker reads its place from the variables
the launcher sets (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).

No restarts (``max_restarts=0``): when a worker fails, the launcher stops the
others (SIGTERM, then SIGKILL after its shutdown timeout) and reports the first
failure, which `launch_local` turns into one coded message.
"""

import os
import signal
import sys
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..errors import Errors
from .allreduce import StepSync

# The exit status of a worker that stopped because another did (BC068): the
# launcher reports the worker that failed for its own reason.
WORKER_LOST_EXIT = 3


class LaunchError(RuntimeError):
    """The workers could not be started, or one of them failed."""


@dataclass
class WorkerEnv:
    """rank (int), world_size (int), local_rank (int), local_world_size (int): The
    worker's place, as the launcher set it."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int

    @classmethod
    def from_environ(cls) -> Optional["WorkerEnv"]:
        """RETURNS (Optional[WorkerEnv]): The worker's place, or None outside a
        launcher."""
        if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
            return None
        world_size = int(os.environ["WORLD_SIZE"])
        return cls(
            rank=int(os.environ["RANK"]),
            world_size=world_size,
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
        )


def check_gpus(workers_here: int) -> None:
    """RAISES LaunchError (BC071): If this machine has fewer GPUs than workers."""
    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if available < workers_here:
        raise LaunchError(
            Errors.BC071.format(
                detail=f"{workers_here} GPU worker(s) on this machine need as many GPUs, and torch sees {available} "
                "(one GPU per worker, picked by its local rank; check CUDA_VISIBLE_DEVICES, or train on the CPU "
                "with --gpu-id -1)"
            )
        )


def init_worker(env: WorkerEnv, use_gpu: bool, timeout: float) -> StepSync:
    """Join the process group: NCCL on the worker's GPU (its local rank), else gloo.

    timeout (float): Seconds a collective may wait for the other workers.
    RETURNS (StepSync): The shared state of the worker's steps.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise LaunchError(Errors.BC071.format(detail="this torch build has no torch.distributed"))
    if use_gpu:
        from thinc.api import require_gpu

        check_gpus(env.local_world_size)
        torch.cuda.set_device(env.local_rank)
        require_gpu(env.local_rank)  # thinc's ops and torch's default device: what `spacy train --gpu-id` sets
        device = torch.device("cuda", env.local_rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(
        "nccl" if use_gpu else "gloo",
        timeout=timedelta(seconds=timeout),
        **({"device_id": device} if use_gpu else {}),  # type: ignore[arg-type]
    )
    return StepSync(dist.get_rank(), dist.get_world_size(), device)


def close_worker() -> None:
    """Leave the process group (also after a failed collective)."""
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # the group may already be broken; the process is ending
            pass


def launch_local(workers: int, args: List[str], use_gpu: bool) -> None:
    """Run `python -m spacy_bertcat train ARGS` as `workers` workers on this
    machine, with torch's elastic launcher.

    RAISES LaunchError (BC068, BC071): If the workers cannot start, or one fails.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if workers < 1:
        raise LaunchError(Errors.BC071.format(detail=f"--workers must be 1 or more, got {workers}"))
    if use_gpu:
        check_gpus(workers)
    # torchrun's rule: N workers share the cores (it sets 1 thread; here the share).
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=workers,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
    )
    try:
        elastic_launch(config, sys.executable)("-m", "spacy_bertcat", "train", *args)
    except ChildFailedError as e:
        rank, failure = root_cause(e.failures)
        how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit code {failure.exitcode}"
        raise LaunchError(
            Errors.BC078.format(
                rank=rank,
                pid=failure.pid,
                how=how,
                printed="Its error is printed above. " if failure.exitcode > 0 else "",
            )
        ) from e


def root_cause(failures: Dict[int, Any]) -> Tuple[int, Any]:
    """RETURNS (Tuple[int, ProcessFailure]): The failure that stopped the run: a
    worker killed by a signal other than SIGTERM (the launcher stops the others
    with it), else one that failed for its own reason (not
    because another stopped), else the earliest (the launcher's timestamps have a
    resolution of one second, so a worker that stopped because another did can
    tie with the cause)."""

    def rank_key(item):
        rank, failure = item
        stopped = failure.exitcode == -signal.SIGTERM  # most likely the launcher's own stop
        return (stopped, failure.exitcode >= 0, failure.exitcode == WORKER_LOST_EXIT, failure.timestamp, rank)

    return min(failures.items(), key=rank_key)


def run_worker(env: WorkerEnv, config_path, output_path, *, overrides, use_gpu: bool, timeout: float):
    """Train as one worker: join the group, train with spaCy's loop, leave.

    RETURNS (Tuple[Language, List[GradientAllReduce]]): See loop.train_worker.
    """
    import torch.distributed as dist

    from .loop import train_worker

    sync = init_worker(env, use_gpu, timeout)
    try:
        result = train_worker(
            config_path, output_path, overrides=overrides, sync=sync, use_gpu=env.local_rank if use_gpu else -1
        )
        # Leave together: a worker closing its connections while worker 0 still
        # saves model-last makes gloo abort the process.
        sync.run("the final barrier", dist.barrier)
        return result
    finally:
        close_worker()
