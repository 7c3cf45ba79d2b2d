"""Ray Data batch prediction (spacy_bertcat.predict.ray.predict) against single-process `nlp.pipe`.

The same saved pipeline (the packaged MiniLM with a bertcat head, or --model) classifies
the same AG News test texts on the same cores: once with `nlp.pipe` in one process
(torch on all the cores), and with Ray Data on a local Ray over those cores, with 1 and
2 actors (each actor gets cores / actors CPUs, which are its torch threads). Each
measurement runs in its own process (its own Ray).

Reported per run: docs/s end to end (from the call that starts the work until the last
row: for Ray, starting the actors and loading the pipeline in each; for nlp.pipe,
spacy.load), docs/s in steady state (the second half of the rows), their ratio to nlp.pipe's,
and the time to first result (Ray: from predict() until the first output batch is
available through iter_batches; nlp.pipe: from spacy.load until its first batch of
docs). The ratio is the overhead Ray costs on one machine; its gain is that the same
code runs on many.

    python bench/ray_predict.py [--rows 2000] [--batch-size 64] [--concurrency 1,2] [--device cuda]
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DEFAULT_DATA, command_line, in_child, minilm_path, parse_args, read_jsonl, smoke_skips, write_results  # noqa: E402

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
# --smoke: nlp.pipe and Ray with one actor (its own process, as measured) on a few
# rows; the measurements themselves run in this process (in_child inline).
SMOKE = {"rows": 16, "batch_size": 4, "concurrency": "1", "max_length": 32}


def build_pipeline(model: str, max_length: int, path: Path) -> str:
    """Save a bertcat pipeline over `model` (an untrained head: the speed does not
    depend on the weights) and return its path."""
    import spacy
    from spacy.training import Example

    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bertcat",
        config={"model": {"name": model, "max_length": max_length, "chunking": {"@misc": "spacy-bertcat.head.v1"}}},
    )
    examples = [
        Example.from_dict(nlp.make_doc("x"), {"cats": {label: float(i == 0) for i, label in enumerate(LABELS)}})
    ]
    nlp.initialize(lambda: examples)
    nlp.to_disk(path)
    return str(path)


def measure_pipe(spec: dict) -> dict:
    import spacy
    import torch

    if spec["device"] == "cuda":
        spacy.require_gpu(0)
    texts = spec["texts"]
    start = time.perf_counter()
    nlp = spacy.load(spec["path"])
    arrivals = []  # (time, docs so far)
    for n, _doc in enumerate(nlp.pipe(texts, batch_size=spec["batch_size"]), start=1):
        if n % spec["batch_size"] == 0 or n == len(texts):
            arrivals.append((time.perf_counter(), n))
    assert arrivals[-1][1] == len(texts)
    return {
        "system": "nlp.pipe",
        "workers": 1,
        "threads_per_worker": torch.get_num_threads(),
        **_timings(start, arrivals),
    }


def measure_ray(spec: dict) -> dict:
    import ray

    from spacy_bertcat.predict.ray import predict

    cores = spec["cores"]
    concurrency = spec["concurrency"]
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    texts = spec["texts"]
    rows = [{"id": i, "text": text} for i, text in enumerate(texts)]
    # One block per batch, so that every actor gets work from the start.
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // spec["batch_size"]))
    ds = ds.materialize()  # the input in the object store before the clock starts
    cpus = max(1, cores // concurrency)
    gpus = 1 / concurrency if spec["device"] == "cuda" else 0
    start = time.perf_counter()
    out = predict(
        ds, spec["path"], batch_size=spec["batch_size"], concurrency=concurrency, num_cpus=cpus, num_gpus=gpus
    )
    arrivals = []  # (time, rows so far)
    ids = []
    for batch in out.iter_batches(batch_size=None, batch_format="pyarrow"):
        ids.extend(batch.column("id").to_pylist())
        arrivals.append((time.perf_counter(), len(ids)))
    ray.shutdown()
    assert ids == list(range(len(texts)))  # every row once, in order
    return {"system": "ray", "workers": concurrency, "threads_per_worker": cpus, **_timings(start, arrivals)}


def _timings(start: float, arrivals: list) -> dict:
    """docs/s end to end; docs/s in the second half (the rows after the middle over
    the time they took to arrive: startup excluded, and with it the burst of
    batches Ray finished early and released in order with the first); the time to
    first result."""
    end, n = arrivals[-1]
    middle_time, middle_n = next((t, k) for t, k in arrivals if k >= n / 2)
    steady = (n - middle_n) / (end - middle_time) if end > middle_time else None
    return {
        "docs": n,
        "seconds": end - start,
        "docs_per_s": n / (end - start),
        "steady_docs_per_s": steady,
        "first_result_s": arrivals[0][0] - start,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None, help="encoder (default: the packaged MiniLM)")
    parser.add_argument("--rows", type=int, default=2000, help="AG News test texts")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per Ray batch and docs per nlp.pipe batch")
    parser.add_argument("--concurrency", default="1,2", help="Ray actors to measure, comma-separated")
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--name", default=None)
    args = parse_args(parser, argv, SMOKE)
    if args.child:
        spec = json.loads(Path(args.child).read_text())
        print(json.dumps(measure_ray(spec) if spec["system"] == "ray" else measure_pipe(spec)))
        return
    command = command_line("ray_predict.py", argv)
    model = args.model or minilm_path()
    texts = [t for t, _ in read_jsonl(args.data_dir / "ag_news" / "test.jsonl", limit=args.rows)]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    path = build_pipeline(
        model, args.max_length, Path(tempfile.mkdtemp(prefix="bertcat-ray-", dir=args.smoke_dir)) / "model"
    )
    base = {"path": path, "texts": texts, "batch_size": args.batch_size, "device": args.device, "cores": cores}
    rows = []
    pipe = in_child(__file__, {**base, "system": "pipe"}, inline=args.smoke)
    rows.append(pipe)
    print(json.dumps(pipe), flush=True)
    concurrencies = [int(c) for c in args.concurrency.split(",") if c]
    if concurrencies and smoke_skips(args, "Ray Data", "ray"):
        concurrencies = []
    for concurrency in concurrencies:
        row = in_child(__file__, {**base, "system": "ray", "concurrency": concurrency}, inline=args.smoke)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for row in rows:
        row["ratio_vs_pipe"] = row["docs_per_s"] / pipe["docs_per_s"]
        if row["steady_docs_per_s"] and pipe["steady_docs_per_s"]:
            row["steady_ratio_vs_pipe"] = row["steady_docs_per_s"] / pipe["steady_docs_per_s"]
    name = args.name or f"ray_predict_{args.device}"
    notes = (
        f"{len(texts)} AG News test texts, head truncation at {args.max_length} wordpieces, batch size "
        f"{args.batch_size}, {cores} cores. docs_per_s: end to end (Ray: from predict() to the last row, "
        "actors started and the pipeline loaded in each; nlp.pipe: from spacy.load). steady_docs_per_s: the "
        "second half of the rows over the time they took to arrive (no startup). first_result_s: until the first output batch "
        "(Ray: through Dataset.iter_batches; nlp.pipe: its first doc). ratio columns: over nlp.pipe's. "
        "Rows come out in input order (checked); each measurement in its own process and Ray."
    )
    write_results(
        name,
        command,
        rows,
        [
            "system",
            "workers",
            "threads_per_worker",
            "docs",
            "seconds",
            "docs_per_s",
            "ratio_vs_pipe",
            "steady_docs_per_s",
            "steady_ratio_vs_pipe",
            "first_result_s",
        ],
        notes,
        extra={"batch_size": args.batch_size, "cores": cores},
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
