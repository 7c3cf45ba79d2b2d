"""`train`: `spacy train`, on one worker or data-parallel on several (see distributed/)."""

import sys
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import Printer, msg

from ..errors import Errors
from ._util import Arg, Opt, app, colour_allowed, refuse_given


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def train_cli(
    # fmt: off
    ctx: typer.Context,  # the config overrides (--paths.train ...), as in spacy train
    config_path: Path = Arg(..., help="Path to config file", exists=True, dir_okay=False),
    output_path: Optional[Path] = Opt(
        None, "--output", "--output-path", "-o", help="Output directory to store the trained pipeline in"
    ),
    code_path: Optional[Path] = Opt(
        None,
        "--code",
        "-c",
        help="Path to Python file with additional code (registered functions) to be imported",
        exists=True,
        dir_okay=False,
    ),
    workers: int = Opt(
        1,
        "--workers",
        "-w",
        min=1,
        help="Data-parallel workers to start on this machine (torch's elastic launcher, as torchrun --standalone). Under torchrun, leave it at 1: torchrun starts the workers",
    ),
    use_gpu: int = Opt(
        -1,
        "--gpu-id",
        "-g",
        help="GPU ID or -1 for CPU. With several workers, any ID >= 0 trains on the GPUs, one per worker, picked by its local rank",
    ),
    timeout: float = Opt(
        600.0,
        "--timeout",
        help="Seconds a worker waits for the others at a step before it gives up (longer than worker 0's slowest evaluation plus save)",
        min=1.0,
    ),
    # fmt: on
):
    """
    Train a pipeline with spaCy's training loop, like `spacy train`, on one or
    more data-parallel workers. With --workers N (or under torchrun, one or many
    nodes), each worker learns from its share of every step's batches, the bertcat
    gradients are summed across the workers before each optimizer step (gloo on
    CPUs, NCCL on GPUs), and N workers with batch size B train as one with N x B:
    same steps, same schedule, same clipping. Worker 0 evaluates, logs and saves.
    Config overrides (--paths.train ...) as in spacy train.
    """
    from spacy.cli._util import import_code, parse_config_overrides

    from ..distributed.launch import LaunchError, WorkerEnv, launch_local

    extra = list(ctx.args)  # parse_config_overrides empties the list it reads
    overrides = parse_config_overrides(list(ctx.args))
    import_code(code_path)
    env = WorkerEnv.from_environ()
    if env is None and workers == 1:
        refuse_given(
            ctx,
            {"timeout": "it is how long a data-parallel worker waits for the others"},
            "when training on one worker",
            ", or add --workers N",
        )
        from spacy.cli.train import train

        train(config_path, output_path, use_gpu=use_gpu, overrides=overrides)
        return
    if env is None:
        args = [str(config_path), "--gpu-id", str(use_gpu), "--timeout", str(timeout), *extra]
        if output_path is not None:
            args += ["--output", str(output_path)]
        if code_path is not None:
            args += ["--code", str(code_path)]
        try:
            launch_local(workers, args, use_gpu >= 0)
        except LaunchError as e:
            msg.fail(str(e), exits=1)
        return
    if workers not in (1, env.world_size):
        _fail(
            env.rank,
            Errors.BC071.format(
                detail=f"--workers {workers} under a launcher that started {env.world_size}: "
                "torchrun starts the workers (--nproc-per-node, --nnodes), so leave --workers out"
            ),
        )
    _run_worker(env, config_path, output_path, overrides, use_gpu >= 0, timeout)


def _run_worker(env, config_path: Path, output_path: Optional[Path], overrides, use_gpu: bool, timeout: float) -> None:
    from ..distributed.allreduce import BatchesDiverged, WorkerLost
    from ..distributed.launch import WORKER_LOST_EXIT, LaunchError, run_worker
    from ..distributed.loop import SameOnEveryWorker

    if env.rank == 0 and output_path is not None:
        output_path.mkdir(parents=True, exist_ok=True)
    try:
        _, reducers = run_worker(env, config_path, output_path, overrides=overrides, use_gpu=use_gpu, timeout=timeout)
    except WorkerLost as e:
        _fail(env.rank, str(e), every_worker=True, status=WORKER_LOST_EXIT)
    except (BatchesDiverged, SameOnEveryWorker) as e:  # every worker finds it: worker 0 says it
        _fail(env.rank, str(e))
    except LaunchError as e:
        _fail(env.rank, str(e), every_worker=True)
    except ValueError as e:  # e.g. bad data in this worker's share
        if not str(e).startswith("[BC"):
            raise
        _fail(env.rank, str(e), every_worker=True)
    if env.rank == 0 and reducers:
        sync = reducers[0].sync
        msg.info(f"{env.world_size} workers, {sync.step} steps: {sync.seconds:.1f} s in collectives on worker 0")


def _fail(rank: int, text: str, every_worker: bool = False, status: int = 1) -> None:
    """Print a worker's error on standard error (worker 0's only, for one every
    worker has) and exit with `status`."""
    if rank == 0 or every_worker:
        printer = Printer(no_print=True)
        printer.show_color = colour_allowed(sys.stderr)
        line = printer.fail(text if rank == 0 else f"(worker {rank}) {text}")
        print(line, file=sys.stderr, flush=True)
    sys.exit(status)


__all__: List[str] = ["train_cli"]
