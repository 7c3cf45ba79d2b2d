"""Few-shot text classification: the `setfit` library, plain bertcat fine-tuning
(configs/bertcat.cfg) and bertcat's few-shot recipe (configs/bertcat_fewshot.cfg),
side by side with the same sentence-transformer body and the same examples.

Each cell (dataset, body, examples per class, draw) draws k training examples per
class (seeded by the draw), trains each method in its own process (its peak memory is
its own) and scores a seeded test sample. SetFit runs in a separate environment
(`make setfit-venv`, or --setfit-python): it is never a dependency of spacy-bertcat.
Finished cells are appended to --cells (JSON lines) and skipped when run again, so a
run can be resumed or split; the table is made from every cell in that file.

    python bench/fewshot.py --grid "sst2/minilm/8,16,64 ag_news/minilm/8,16,64 ag_news/mpnet/8" \
        --draws 8:3,16:3,64:2 --mpnet /work/bench-cache/mpnet/model/all-mpnet-base-v2
"""

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    accuracy_macro_f1,
    command_line,
    label_set,
    minilm_path,
    parse_args,
    peak_rss_mb,
    read_jsonl,
    run_python,
    smoke_skips,
    to_docbin,
    write_results,
)

ROOT = Path(__file__).parent.parent
CONFIGS = {"plain": ROOT / "configs" / "bertcat.cfg", "fewshot": ROOT / "configs" / "bertcat_fewshot.cfg"}
SETFIT_PYTHON = ROOT / ".venv-setfit" / "bin" / "python"
SMOKE = {
    "grid": "ag_news/minilm/2",
    "draws": "2:1",
    "test": 8,
    "max_length": 32,
    "methods": "plain,fewshot",
    "plain_steps": 2,
    "fewshot_epochs": 1,
    "pairs_per_example": 2,
}

# Runs in a new process: train a pipeline with `spacy train`, score the test texts.
SPACY_CHILD = """
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from common import peak_rss_mb
import spacy
from spacy.cli.train import train
spec = json.loads(Path(sys.argv[2]).read_text())
start = time.perf_counter()
train(Path(spec["config"]), Path(spec["output"]), overrides=spec["overrides"])
seconds = time.perf_counter() - start
nlp = spacy.load(Path(spec["output"]) / "model-last")
predicted = [max(doc.cats, key=doc.cats.get) for doc in nlp.pipe(spec["texts"], batch_size=64)]
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak_rss_mb(), "predicted": predicted}))
"""

# Runs in the SetFit environment: SetFit with its paper's settings (20 pairs per
# example and per side, one epoch, batch 16, body lr 2e-5, logistic-regression head).
SETFIT_CHILD = """
import json, sys, time
from pathlib import Path
spec = json.loads(Path(sys.argv[1]).read_text())
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
def peak():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
start = time.perf_counter()
model = SetFitModel.from_pretrained(spec["model"])
model.model_body.max_seq_length = spec["max_length"]
args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=spec["pairs_per_example"], seed=spec["seed"],
                         report_to="none", show_progress_bar=False)
data = Dataset.from_dict({"text": spec["train_texts"], "label": spec["train_labels"]})
Trainer(model=model, args=args, train_dataset=data).train()
seconds = time.perf_counter() - start
predicted = [str(p) for p in model.predict(spec["texts"], batch_size=64)]
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak(), "predicted": predicted}))
"""


def draw(records: List[Tuple[str, List[str]]], k: int, seed: int) -> List[Tuple[str, List[str]]]:
    """k examples per class (single-label data), seeded, in a seeded order."""
    rng = random.Random(seed)
    by_label: Dict[str, List[Tuple[str, List[str]]]] = {}
    for record in records:
        by_label.setdefault(record[1][0], []).append(record)
    sample = [r for label in sorted(by_label) for r in rng.sample(by_label[label], k)]
    rng.shuffle(sample)
    return sample


def spacy_overrides(method: str, train_path: str, model: str, args, seed: int, n_train: int) -> Dict[str, object]:
    overrides: Dict[str, object] = {
        "paths.train": train_path,
        "paths.dev": train_path,  # model-last is scored: the dev pass only logs
        "components.bertcat.model.name": model,
        "components.bertcat.model.max_length": args.max_length,
        "components.bertcat.model.chunking": {"@misc": "spacy-bertcat.head.v1"},
        "training.seed": seed,
        "training.logger.progress_bar": None,
    }
    if method == "plain":  # the shipped config, its step budget scaled to the data
        steps = args.plain_steps or max(50, 10 * n_train // 16)
        overrides.update(
            {
                "training.max_steps": steps,
                "training.eval_frequency": steps,
                "training.optimizer.learn_rate.total_steps": steps,
                "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
            }
        )
    else:
        overrides["components.bertcat.warmup.seed"] = seed
        if args.pairs_per_example is not None:
            overrides["components.bertcat.warmup.pairs_per_example"] = args.pairs_per_example
        if args.fewshot_epochs is not None:
            overrides["training.max_epochs"] = args.fewshot_epochs
        for item in args.fewshot_set:  # a variant: KEY=JSON config overrides
            key, value = item.split("=", 1)
            overrides[key] = json.loads(value)
        if args.fewshot_steps is not None:  # e.g. 1: the warmed-up model (SetFit's), barely fine-tuned
            overrides["training.max_steps"] = args.fewshot_steps
    return overrides


def run_cell(method: str, model: str, train, test, labels, args, seed: int, tmp: Path) -> Dict:
    texts = [t for t, _ in test]
    spec_path = tmp / f"{method}.json"
    if method == "setfit":
        spec = {
            "model": model,
            "max_length": args.max_length,
            "pairs_per_example": args.pairs_per_example or 20,
            "seed": seed,
            "train_texts": [t for t, _ in train],
            "train_labels": [g[0] for _, g in train],
            "texts": texts,
        }
        spec_path.write_text(json.dumps(spec))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        import subprocess

        out = subprocess.run(
            [str(args.setfit_python), "-c", SETFIT_CHILD, str(spec_path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=spec_path.parent,  # SetFit's Trainer writes checkpoints/ into the working folder
        )
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-3000:])
        result = json.loads(out.stdout.strip().splitlines()[-1])
    else:
        train_path = to_docbin(train, labels, tmp / "train.spacy")
        spec = {
            "config": str(CONFIGS[method]),
            "output": str(tmp / method),
            "overrides": spacy_overrides(method, train_path, model, args, seed, len(train)),
            "texts": texts,
        }
        spec_path.write_text(json.dumps(spec))
        stdout = run_python(
            ["-c", SPACY_CHILD, str(Path(__file__).parent), str(spec_path)],
            inline=args.smoke,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
        )
        result = json.loads(stdout.strip().splitlines()[-1])
        if args.smoke:  # inline: this process's peak
            result["peak_rss_mb"] = peak_rss_mb()
    scores = accuracy_macro_f1([g[0] for _, g in test], result["predicted"], labels)
    return {**scores, "seconds": result["seconds"], "peak_rss_mb": result["peak_rss_mb"]}


def summarize(cells: List[Dict]) -> List[Dict]:
    groups: Dict[Tuple, List[Dict]] = {}
    unique = {(c["dataset"], c["body"], c["per_class"], c["draw"], c["method"]): c for c in reversed(cells)}
    for cell in unique.values():
        groups.setdefault((cell["dataset"], cell["body"], cell["per_class"], cell["method"]), []).append(cell)
    rows = []
    order = {"setfit": 0, "plain": 1, "fewshot": 2, "fewshot-mean": 3, "fewshot-mean-s1": 4, "fewshot-p20-e10": 5}
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], order.get(k[3], 9))):
        runs = groups[key]
        row = {"dataset": key[0], "body": key[1], "per_class": key[2], "method": key[3], "draws": len(runs)}
        for name in ("accuracy", "macro_f1", "peak_rss_mb"):
            values = [r[name] for r in runs]
            row[f"{name}_mean"] = statistics.mean(values)
            row[f"{name}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        # wall times only from cells measured on an otherwise idle machine
        idle = [r for r in runs if not r.get("contended")]
        row["timed_draws"] = len(idle)
        row["seconds_mean"] = statistics.mean(r["seconds"] for r in idle) if idle else None
        # against SetFit on the same draw, both timed idle: the ratio the goal is about
        ratios = [
            r["seconds"] / setfit["seconds"]
            for r in idle
            for setfit in [unique.get((key[0], key[1], key[2], r["draw"], "setfit"))]
            if setfit is not None and not setfit.get("contended") and key[3] != "setfit"
        ]
        row["time_vs_setfit"] = statistics.mean(ratios) if ratios else None
        rows.append(row)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", default="sst2/minilm/8,16,64 ag_news/minilm/8,16,64 ag_news/mpnet/8")
    parser.add_argument("--draws", default="8:3,16:3,64:2", help="draws per size, SIZE:N,...")
    parser.add_argument("--methods", default="setfit,plain,fewshot")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--mpnet", default="/work/bench-cache/mpnet/model/all-mpnet-base-v2")
    parser.add_argument("--model", default=None, help="the body for every cell (smoke runs: a tiny random BERT)")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--pairs-per-example", type=int, default=None)
    parser.add_argument("--plain-steps", type=int, default=None)
    parser.add_argument("--fewshot-epochs", type=int, default=None, help="supervised epochs (default: the config's)")
    parser.add_argument("--fewshot-steps", type=int, default=None, help="supervised steps (default: the epochs')")
    parser.add_argument("--fewshot-set", action="append", default=[], help="KEY=JSON override of the recipe")
    parser.add_argument("--fewshot-name", default="fewshot", help="the method name of the recipe's cells (a variant)")
    parser.add_argument("--setfit-python", type=Path, default=SETFIT_PYTHON)
    parser.add_argument("--cells", type=Path, default=None, help="JSON lines of finished cells (resume)")
    parser.add_argument("--name", default="fewshot")
    parser.add_argument("--draw", type=int, default=None, help="run only this draw of each size (a lane)")
    parser.add_argument("--report-only", action="store_true", help="only write the table of the cells in --cells")
    args = parse_args(parser, argv, SMOKE)
    command = command_line("fewshot.py", argv)
    methods = [m for m in args.methods.split(",") if m]
    if "setfit" in methods and args.smoke and not Path(args.setfit_python).exists():
        methods.remove("setfit")
        smoke_skips(args, "setfit", "setfit")
    bodies = {"minilm": args.model or minilm_path(), "mpnet": args.model or args.mpnet}
    draws = {int(k): int(v) for k, v in (item.split(":") for item in args.draws.split(","))}
    cells_path = args.cells or (args.results_dir or Path(__file__).parent / "results") / f"{args.name}_cells.jsonl"
    cells_path.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in cells_path.read_text().splitlines()] if cells_path.exists() else []
    seen = {(c["dataset"], c["body"], c["per_class"], c["draw"], c["method"]) for c in done}
    for entry in [] if args.report_only else args.grid.split():
        dataset, body, sizes = entry.split("/")
        folder = args.data_dir / dataset
        pool = read_jsonl(folder / "train.jsonl")
        test = read_jsonl(folder / "test.jsonl", limit=args.test, seed=0)
        labels = label_set(pool, test)
        for size in [int(s) for s in sizes.split(",")]:
            for seed in range(draws.get(size, 1)):
                if args.draw is not None and seed != args.draw:
                    continue
                train = draw(pool, size, seed)
                for method in methods:
                    name = args.fewshot_name if method == "fewshot" else method
                    key = (dataset, body, size, seed, name)
                    if key in seen:
                        continue
                    with tempfile.TemporaryDirectory() as tmp:
                        scores = run_cell(method, bodies[body], train, test, labels, args, seed, Path(tmp))
                    cell = {"dataset": dataset, "body": body, "per_class": size, "draw": seed, "method": name}
                    cell.update(scores)
                    done.append(cell)
                    with open(cells_path, "a", encoding="utf8") as file:
                        file.write(json.dumps(cell) + "\n")
                    print(json.dumps(cell), flush=True)
    rows = summarize(done)
    notes = (
        f"Test: a seeded sample of {args.test} test documents per dataset (the same for every cell). Each draw "
        "takes k training examples per class (seed = draw number) and every method trains on exactly those. "
        "setfit: the setfit library (paper settings: 20 pairs per example and side, 1 epoch, batch 16, logistic "
        "regression head); plain: configs/bertcat.cfg with its step budget scaled to the data (10 epochs, at "
        "least 50 steps, 10% warmup); fewshot: configs/bertcat_fewshot.cfg as shipped (fewshot-p20-e10: the "
        "version measured first, pairs_per_example 20 and max_epochs 10, its cells relabelled). max_length "
        f"{args.max_length}, head truncation. seconds: training time (model loading included, scoring excluded), "
        "2 CPU cores, the mean over the timed_draws cells that ran on an otherwise idle machine (cells marked "
        "contended in --cells ran beside other jobs: their accuracy counts, their time does not); time_vs_setfit: "
        "the mean over draws of seconds / SetFit's seconds on the same draw, both timed idle. peak_rss_mb: the "
        "training process's peak memory. "
        "Mean and sample standard deviation over the draws. The cells may come from several runs of this "
        "script into one --cells file (lanes run side by side); the table holds every cell of that file."
    )
    write_results(
        args.name,
        command,
        rows,
        [
            "dataset",
            "body",
            "per_class",
            "method",
            "draws",
            "accuracy_mean",
            "accuracy_sd",
            "macro_f1_mean",
            "timed_draws",
            "seconds_mean",
            "time_vs_setfit",
            "peak_rss_mb_mean",
        ],
        notes,
        extra={"cells": done},
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
