"""Data-parallel training on this machine: examples/s with 1 and 2 workers, and the
time of the gradient all-reduce per step.

1. Training: the packaged MiniLM on AG News (head, --max-length wordpieces), the
   shipped config, the same global batch (--batch-size) and steps on each row:
   `spacy train` (one process), one worker under torch's launcher (the distributed
   code path with nothing to exchange), and `--workers 2` (per-worker batch
   --batch-size / 2, gloo). Examples/s counts the steps after the first evaluation
   (timed by a before_update callback, so initialization, evaluation and saves are
   left out); the all-reduce's share is worker 0's time in collectives.
2. All-reduce alone: 2 gloo processes sum the gradients of a MiniLM-sized and a
   bert-base-sized classifier (the same GradientAllReduce, 25 MB buckets), median
   of --repeats.

    python bench/distributed_train.py --train 2000 --steps 40 --batch-size 32 --max-length 128
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

sys.path.insert(0, str(Path(__file__).parent))
from common import DEFAULT_DATA, command_line, label_set, minilm_path, parse_args, read_jsonl, to_docbin, write_results  # noqa: E402

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "bertcat.cfg"
TIMER = Path(__file__).parent / "_step_timer.py"
# The training runs (--runs): name, the rows' "run", per-worker share of the batch.
RUNS = {"spacy": ("spacy train", 1), "launcher": ("launcher, 1 worker", 1), "workers": ("2 workers", 2)}
# --smoke: the launcher with one worker and two gloo workers (plain `spacy train`, the
# reference, is what every other smoke run trains with) on a few documents, 3 steps
# (2 timed), and the all-reduce of the model's gradients; bert-base's all-reduce is
# the same code on a bigger tensor list and is left out.
SMOKE = {"train": 16, "dev": 4, "steps": 3, "batch_size": 4, "max_length": 32, "repeats": 1, "runs": "launcher,workers"}


def train_row(name, launcher, batch_size, args, data, tmp: Path):
    times = tmp / f"{name}.json"
    overrides = {
        "paths.train": data["train"],
        "paths.dev": data["dev"],
        "components.bertcat.model.name": args.model,
        "components.bertcat.model.max_length": args.max_length,
        "components.bertcat.model.chunking": json.dumps({"@misc": "spacy-bertcat.head.v1"}),
        "training.max_steps": args.steps,
        "training.optimizer.learn_rate.total_steps": args.steps,
        "training.eval_frequency": args.steps * 10,
        "training.batcher.size": batch_size,
        "training.before_update": json.dumps({"@callbacks": "bench.step_timer.v1", "path": str(times)}),
    }
    flags = [part for key, value in overrides.items() for part in (f"--{key}", str(value))]
    common = [str(CONFIG), "--output", str(tmp / name), "--code", str(TIMER), *flags]
    command = {
        "spacy train": [sys.executable, "-m", "spacy", "train", *common],
        "launcher, 1 worker": [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "1",
            "-m",
            "spacy_bertcat",
            "train",
            *common,
        ],
        "2 workers": [sys.executable, "-m", "spacy_bertcat", "train", "--workers", "2", *common],
    }[launcher]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("OMP_NUM_THREADS", None)
    start = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
    stamps = json.loads(times.read_text())
    steps = len(stamps) - 1
    seconds = stamps[-1] - stamps[0]
    collectives = re.search(r"steps: ([\d.]+) s in collectives", out.stdout + out.stderr)
    global_batch = batch_size * (2 if launcher == "2 workers" else 1)
    return {
        "run": launcher,
        "workers": 2 if launcher == "2 workers" else 1,
        "batch per worker": batch_size,
        "global batch": global_batch,
        "steps timed": steps,
        "s/step": seconds / steps,
        "examples/s": steps * global_batch / seconds,
        "wall s": wall,
        "collectives s/step": float(collectives.group(1)) / (args.steps + 1) if collectives else None,
    }


def all_reduce_child(rank: int, world: int, port: int, shapes, repeats: int, queue) -> None:
    import torch
    import torch.distributed as dist

    from spacy_bertcat.distributed.allreduce import GradientAllReduce, StepSync

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    reducer = GradientAllReduce(StepSync(rank, world, torch.device("cpu")))
    times = []
    for i in range(repeats + 2):
        for p in params:
            p.grad = torch.randn_like(p)
        dist.barrier()
        start = time.perf_counter()
        reducer(params, 16, 1.0)
        if i >= 2:
            times.append(time.perf_counter() - start)
    if rank == 0:
        queue.put(times)
    dist.destroy_process_group()


def all_reduce_row(name: str, model, repeats: int):
    import socket

    import torch.multiprocessing as mp

    shapes = [tuple(p.shape) for p in model.parameters()]
    n_params = sum(p.numel() for p in model.parameters())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=all_reduce_child, args=(r, 2, port, shapes, repeats, queue)) for r in range(2)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 600
    while True:  # a worker that dies leaves the other in init_process_group: stop both
        try:
            times = queue.get(timeout=1)
            break
        except Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead or time.monotonic() > deadline:
                for p in procs:
                    p.kill()
                raise RuntimeError(f"all-reduce worker exited with {dead[0]}" if dead else "all-reduce timed out")
    for p in procs:
        p.join()
    median = statistics.median(times)
    megabytes = n_params * 4 / 1e6
    return {
        "gradient": name,
        "parameters (M)": n_params / 1e6,
        "MB": megabytes,
        "tensors": len(shapes),
        "ms/step": median * 1000,
        "bus GB/s": 2 * (2 - 1) / 2 * megabytes / 1000 / median,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA / "ag_news")
    parser.add_argument("--model", default=None)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--dev", type=int, default=32)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (2 workers take half each)")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--runs", default=",".join(RUNS), help=f"training runs, of {','.join(RUNS)}")
    args = parse_args(parser, argv, SMOKE)
    args.model = args.model or minilm_path()
    command = command_line("distributed_train.py", argv)
    rows = []
    if not args.skip_training:
        train = read_jsonl(args.data / "train.jsonl", limit=args.train, seed=0)
        dev = read_jsonl(args.data / "test.jsonl", limit=args.dev, seed=0)
        labels = label_set(train, dev)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            data = {
                "train": to_docbin(train, labels, tmp / "train.spacy"),
                "dev": to_docbin(dev, labels, tmp / "dev.spacy"),
            }
            for launcher, share in (RUNS[run] for run in args.runs.split(",")):
                batch = args.batch_size // share
                rows.append(train_row(launcher.replace(" ", "_").replace(",", ""), launcher, batch, args, data, tmp))
                print(rows[-1], flush=True)
        base = next((row["examples/s"] for row in rows if row["run"] == "spacy train"), None)
        for row in rows:
            row["vs spacy train"] = row["examples/s"] / base if base else None
        write_results(
            "distributed_train",
            command,
            rows,
            [
                "run",
                "workers",
                "batch per worker",
                "global batch",
                "steps timed",
                "s/step",
                "examples/s",
                "vs spacy train",
                "collectives s/step",
                "wall s",
            ],
            notes=f"AG News, {args.train} training documents, packaged MiniLM, head at {args.max_length} "
            "wordpieces, 2 cores: one worker uses both (2 torch threads), two workers one each.",
            results_dir=args.results_dir,
        )
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, BertConfig

    reduce_rows = []
    gradients = [
        ("MiniLM-L6 (all-MiniLM-L6-v2)", AutoConfig.from_pretrained(args.model, num_labels=4)),
        ("bert-base", BertConfig(num_labels=4)),
    ]
    for name, config in gradients[:1] if args.smoke else gradients:
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(config)
        reduce_rows.append(all_reduce_row(name, model, args.repeats))
        print(reduce_rows[-1], flush=True)
    write_results(
        "distributed_allreduce",
        command,
        reduce_rows,
        ["gradient", "parameters (M)", "MB", "tensors", "ms/step", "bus GB/s"],
        notes="2 gloo processes on this machine (loopback TCP), float32 gradients, 25 MB buckets, median "
        f"of {args.repeats}. Bus bandwidth = 2 (N-1)/N x bytes / time.",
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
