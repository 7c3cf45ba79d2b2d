"""The gradient all-reduce of data-parallel training: what each worker's
``BertCatShim.finish_update`` calls before the optimizer step.

Each worker holds the gradient of the mean loss over *its* documents (weighted as
the shim's accumulation weights them). To step as one worker with the whole batch
would, the reducer

1. all-reduces a small header: the worker's document count, the fingerprint of
   the step's batches (every worker must be reading the same batches, see
   loop.shard_batches) and which parameters have a gradient;
2. turns each local gradient into a sum over the worker's documents and sums them
   over the workers, in flat buckets of about 25 MB (torch DDP's default bucket
   size), all issued before the first is waited on;
3. returns the documents of all workers, by which the shim's step divides.

So the global gradient, its norm (clipping, the skip of non-finite steps, the
float16 loss scale) and the optimizer step are the same on every worker and equal
one worker's with the whole batch, up to the order of float additions. A worker
with no documents at a step (an epoch's last, incomplete group of batches) takes
part with zeros; a parameter no worker has a gradient for keeps ``grad = None``,
so the optimizer skips it as on one worker.

A failed collective (a worker died, or stopped answering within the process
group's timeout) raises ``WorkerLost`` (BC068) before the step: the weights stay
those of the last complete step.
"""

import time
import zlib
from typing import Dict, List, Optional, Sequence

import torch

from ..errors import Errors

BUCKET_BYTES = 25 * 2**20


class WorkerLost(RuntimeError):
    """A collective failed: another worker died or did not answer in time."""


class BatchesDiverged(RuntimeError):
    """The workers were not reading the same batches (BC070)."""


class StepSync:
    """What the workers share within one step: the fingerprint of the step's
    batches (set by loop.shard_batches) and the time spent in collectives.

    rank (int): This worker's rank. world_size (int): The number of workers.
    device (torch.device): Where the collectives' tensors live (CUDA for NCCL).
    """

    def __init__(self, rank: int, world_size: int, device: torch.device) -> None:
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.step = 0
        self.fingerprint = 0
        self.seconds = 0.0
        self.calls = 0

    def set_batches(self, texts: Sequence[str]) -> None:
        """Fingerprint the texts of the step's batches (all workers' batches)."""
        crc = 0
        for text in texts:
            crc = zlib.crc32(text.encode("utf-8", "surrogatepass"), crc)
            crc = zlib.crc32(b"\x00", crc)
        self.fingerprint = crc
        self.step += 1

    def run(self, what: str, fn, *args, **kwargs):
        """Run a collective, timed; RAISES WorkerLost if it fails."""
        start = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except RuntimeError as e:
            if not is_lost_peer(e):
                raise  # a local error (out of memory, a tensor on the wrong device): its own traceback
            detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise WorkerLost(Errors.BC068.format(rank=self.rank, what=what, step=self.step, detail=detail)) from e
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return result


def is_lost_peer(error: BaseException) -> bool:
    """Whether a collective's error means another worker is gone or did not
    answer: torch.distributed's own errors, and gloo's connection and timeout
    errors (raised as plain RuntimeErrors by some torch versions)."""
    import torch.distributed as dist

    if isinstance(error, getattr(dist, "DistError", ())):
        return True
    text = str(error).lower()
    return any(word in text for word in ("gloo", "nccl", "connection", "timed out", "timeout", "peer", "socket"))


class GradientAllReduce:
    """Sum one model's gradients over the workers (installed as a shim's
    ``grad_reducer``).

    sync (StepSync): The step's shared state.
    bucket_bytes (int): Bytes per flat all-reduce.
    """

    def __init__(self, sync: StepSync, bucket_bytes: int = BUCKET_BYTES) -> None:
        self.sync = sync
        self.bucket_bytes = bucket_bytes

    def __call__(self, params: List[torch.nn.Parameter], local_docs: float, grad_scale: float) -> float:
        """params (List[Parameter]): The model's parameters, in the same order on
        every worker. local_docs (float): The documents this worker learned from
        since the last step. grad_scale (float): The factor that makes the local
        gradients sums over those documents.
        RETURNS (float): The documents of all workers; every gradient is replaced
        by the sum over all workers' documents.
        """
        import torch.distributed as dist

        sync = self.sync
        has_grad = [p.grad is not None for p in params]
        header = torch.tensor(
            [float(local_docs), float(sync.fingerprint)] + [float(h) for h in has_grad],
            dtype=torch.float64,
            device=sync.device,
        )
        sync.run("the step's header", dist.all_reduce, header)
        header = header.cpu()
        total_docs, fingerprints = float(header[0]), float(header[1])
        if fingerprints != float(sync.fingerprint) * sync.world_size:
            raise BatchesDiverged(Errors.BC070.format(step=sync.step))
        grads = []
        for param, mine, anyone in zip(params, has_grad, header[2:].tolist()):
            if not anyone:
                continue
            if not mine:
                param.grad = torch.zeros_like(param)
            elif grad_scale != 1.0:
                assert param.grad is not None
                param.grad.mul_(grad_scale)
            assert param.grad is not None
            grads.append(param.grad)
        self._all_reduce(grads)
        return total_docs

    def _all_reduce(self, grads: List[torch.Tensor]) -> None:
        import torch.distributed as dist

        buckets: List[List[torch.Tensor]] = []
        sizes: Dict[torch.dtype, int] = {}
        open_bucket: Dict[torch.dtype, Optional[List[torch.Tensor]]] = {}
        for grad in grads:
            nbytes = grad.numel() * grad.element_size()
            bucket = open_bucket.get(grad.dtype)
            if bucket is None or sizes[grad.dtype] + nbytes > self.bucket_bytes:
                bucket = []
                buckets.append(bucket)
                open_bucket[grad.dtype], sizes[grad.dtype] = bucket, 0
            bucket.append(grad)
            sizes[grad.dtype] += nbytes
        flats = [torch._utils._flatten_dense_tensors(bucket) for bucket in buckets]
        works = [self.sync.run("the gradient all-reduce", dist.all_reduce, flat, async_op=True) for flat in flats]
        for work in works:
            self.sync.run("the gradient all-reduce", work.wait)
        for bucket, flat in zip(buckets, flats):
            for grad, summed in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket)):
                grad.copy_(summed)
