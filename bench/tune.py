"""`spacy-bertcat tune` against the shipped defaults: a study of a fixed number of
trials (Optuna TPE, ASHA) on a small training set, the best trial on dev and the
defaults (always trial 0) each scored once on test; the study's wall time and the
share of trials ASHA stopped; and, with --throughput-trials, the same short study at
concurrency 1 and 2 (training steps per wall second of the study).

    python bench/tune.py --dataset sst2 --train 400 --dev 500 --trials 8 --steps 150
    python bench/tune.py --smoke

The defaults are configs/bertcat.cfg at --steps steps (warmup 10% of them), head
truncation at --max-length; the space is the shipped one (configs/tune_space.cfg)
with the steps scaled to --steps (x2/3, x1, x4/3) and the learning rate reaching 3e-4.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    DEFAULT_DATA,
    accuracy_macro_f1,
    command_line,
    label_set,
    minilm_path,
    parse_args,
    read_jsonl,
    to_docbin,
    write_results,
)

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "bertcat.cfg"
DEV_FROM_TRAIN = {"ag_news"}  # no dev file: the dev set is drawn from train (disjoint)


def space(steps: int, eval_frequency: int, no_stopping: bool = False) -> str:
    """The search space (no_stopping: ASHA's grace period is the most steps, so that
    no trial is stopped early)."""
    choices = sorted(
        {max(eval_frequency, round(steps * f / eval_frequency) * eval_frequency) for f in (2 / 3, 1, 4 / 3)} | {steps}
    )
    return f"""
[tune]
seed = 0
grace_period = {max(choices) if no_stopping else eval_frequency}
reduction_factor = 2

[tune.space]
training.optimizer.learn_rate.initial_rate = "loguniform(1e-5, 3e-4)"
training.optimizer.learn_rate.warmup_steps = "share(0.0, 0.2)"
training.max_steps = "choice({", ".join(map(str, choices))})"
components.bertcat.model.head_lr_scale = "loguniform(1.0, 30.0)"
components.bertcat.model.layer_lr_decay = "uniform(0.7, 1.0)"
"""


def overrides(args, folder: Path, seed: int) -> List[str]:
    settings = {
        "paths.train": str(folder / "train.spacy"),
        "paths.dev": str(folder / "dev.spacy"),
        "components.bertcat.model.name": args.model,
        "components.bertcat.model.max_length": args.max_length,
        "components.bertcat.model.chunking": json.dumps({"@misc": "spacy-bertcat.head.v1"}),
        "training.max_steps": args.steps,
        "training.optimizer.learn_rate.total_steps": args.steps,
        "training.optimizer.learn_rate.warmup_steps": max(1, args.steps // 10),
        "training.eval_frequency": args.eval_frequency,
        "training.batcher.size": args.batch_size,
        "system.seed": seed,
    }
    return [part for key, value in settings.items() for part in (f"--{key}", str(value))]


def run_study(args, folder: Path, name: str, seed: int, trials: int, concurrency: int) -> Dict:
    study = folder / name
    command = [sys.executable, "-m", "spacy_bertcat", "tune", str(CONFIG), "--output", str(study)]
    command += ["--trials", str(trials), "--concurrency", str(concurrency), "--space", str(folder / "space.cfg")]
    if (study / ".bertcat-tune.json").exists():  # a study of an earlier run: finished, or resumed
        command.append("--resume")
    start = time.perf_counter()
    out = subprocess.run(command + overrides(args, folder, seed), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    timing = folder / f"{name}_seconds.json"  # the study's own wall time (all its runs), kept for a rerun
    if "--resume" in command and timing.exists():
        earlier = json.loads(timing.read_text())
        seconds = earlier["seconds"] + (seconds if not earlier.get("finished") else 0.0)
    timing.write_text(json.dumps({"seconds": seconds, "finished": out.returncode == 0}))
    (folder / f"{name}.log").write_text(out.stdout + out.stderr)
    if out.returncode != 0:
        raise RuntimeError(f"tune failed:\n{(out.stdout + out.stderr)[-3000:]}")
    rows = json.loads((study / "trials.json").read_text())
    summary = json.loads((study / "summary.json").read_text())
    return {"study": study, "rows": rows, "summary": summary, "seconds": seconds}


def stopped_early(row: Dict) -> bool:
    """Whether ASHA stopped the trial: it ran fewer steps than its max_steps (the space's
    steps are multiples of the eval frequency, so a trial that ran to its end was
    evaluated at its last step)."""
    if row["status"] == "failed":
        return False
    return row["steps"] < row["settings"].get("training.max_steps", row["steps"])


def test_accuracy(model: Path, test, labels) -> float:
    import spacy

    nlp = spacy.load(model)
    docs = nlp.pipe([text for text, _ in test], batch_size=64)
    predicted = [max(doc.cats, key=doc.cats.get) for doc in docs]
    return accuracy_macro_f1([gold[0] for _, gold in test], predicted, labels)["accuracy"]


# --smoke: one trial (the defaults) of 10 steps on a few documents, a tiny random
# model: the study, its outputs and the test scoring end to end (Ray's start-up and a
# `spacy train` process make it about half a minute).
SMOKE = dict(
    train=16,
    dev=8,
    test=8,
    trials=1,
    concurrency=1,
    steps=10,
    eval_frequency=5,
    batch_size=4,
    max_length=32,
    throughput_trials=0,
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="sst2")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work-dir", type=Path, default=None, help="the studies (default: a temporary folder)")
    parser.add_argument("--model", default=None, help="default: MiniLM (bench/common.minilm_path)")
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--dev", type=int, default=500)
    parser.add_argument("--test", type=int, default=None, help="default: the whole test set")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--steps", type=int, default=150, help="the defaults' training.max_steps")
    parser.add_argument("--eval-frequency", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (one study each)")
    parser.add_argument(
        "--throughput-trials", type=int, default=0, help="trials of the concurrency 1 vs 2 studies (0: none)"
    )
    parser.add_argument("--name", default=None, help="results name (default: tune_DATASET)")
    args = parse_args(parser, argv, SMOKE)
    args.model = args.model or minilm_path()
    work = args.work_dir or Path(args.smoke_dir or __import__("tempfile").mkdtemp(prefix="bertcat-tune-"))
    data = args.data_dir / args.dataset
    pool = read_jsonl(data / "train.jsonl")
    train = read_jsonl(data / "train.jsonl", limit=args.train, seed=0)
    if args.dataset in DEV_FROM_TRAIN:
        chosen = {t for t, _ in train}
        dev = [r for r in read_jsonl(data / "train.jsonl", limit=len(pool), seed=1) if r[0] not in chosen][: args.dev]
    else:
        dev = read_jsonl(data / "dev.jsonl", limit=args.dev, seed=0)
    test = read_jsonl(data / "test.jsonl", limit=args.test, seed=0)
    labels = label_set(train, dev, test)
    rows: List[Dict] = []
    studies: List[Dict] = []
    for seed in [int(s) for s in args.seeds.split(",")] if args.trials else []:  # --trials 0: throughput only
        folder = work / f"{args.dataset}-seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        to_docbin(train, labels, folder / "train.spacy")
        to_docbin(dev, labels, folder / "dev.spacy")
        (folder / "space.cfg").write_text(space(args.steps, args.eval_frequency))
        result = run_study(args, folder, "study", seed, args.trials, args.concurrency)
        summary, trial_rows = result["summary"], result["rows"]
        defaults = next(r for r in trial_rows if r["defaults"])
        best = next(r for r in trial_rows if r["number"] == summary["best_trial"])
        study = result["study"]
        cache = folder / "test_accuracy.json"  # kept for a rerun that resumes finished studies
        key = {"defaults": defaults["number"], "best": best["number"], "test": len(test)}
        cached = json.loads(cache.read_text()) if cache.exists() else {}
        if cached.get("key") == key:
            acc_defaults, acc_best = cached["defaults"], cached["best"]
        else:
            acc_defaults = test_accuracy(study / defaults["folder"] / "model-best", test, labels)
            acc_best = test_accuracy(study / "model-best", test, labels)
            cache.write_text(json.dumps({"key": key, "defaults": acc_defaults, "best": acc_best}))
        stopped = sum(stopped_early(r) for r in trial_rows)
        rows.append(
            {
                "dataset": args.dataset,
                "seed": seed,
                "trials": len(trial_rows),
                "dev_defaults": defaults["score"],
                "dev_best": best["score"],
                "test_acc_defaults": acc_defaults,
                "test_acc_tuned": acc_best,
                "gain_points": 100 * (acc_best - acc_defaults),
                "asha_stopped_share": stopped / len(trial_rows),
                "failed": sum(r["status"] == "failed" for r in trial_rows),
                "study_s": result["seconds"],
                "best_trial": best["number"],
            }
        )
        studies.append({"seed": seed, "best_settings": best["settings"], "trials": trial_rows})
    mean: Dict = {}
    if rows:
        mean = {
            "dataset": args.dataset,
            "seed": "mean",
            "test_acc_defaults": sum(r["test_acc_defaults"] for r in rows) / len(rows),
            "test_acc_tuned": sum(r["test_acc_tuned"] for r in rows) / len(rows),
            "gain_points": sum(r["gain_points"] for r in rows) / len(rows),
            "asha_stopped_share": sum(r["asha_stopped_share"] for r in rows) / len(rows),
            "study_s": sum(r["study_s"] for r in rows) / len(rows),
        }
    if rows:
        rows.append(mean)
    throughput = []
    if args.throughput_trials:
        folder = work / f"{args.dataset}-throughput"
        folder.mkdir(parents=True, exist_ok=True)
        to_docbin(train, labels, folder / "train.spacy")
        to_docbin(dev, labels, folder / "dev.spacy")
        # ASHA stops nothing here (its grace period is the most steps): all trials run all their steps.
        (folder / "space.cfg").write_text(space(args.steps, args.eval_frequency, no_stopping=True))
        for concurrency in (1, 2):
            result = run_study(args, folder, f"concurrency-{concurrency}", 0, args.throughput_trials, concurrency)
            steps = sum(r["steps"] for r in result["rows"])
            throughput.append(
                {
                    "concurrency": concurrency,
                    "trials": len(result["rows"]),
                    "steps": steps,
                    "study_s": result["seconds"],
                    "steps_per_s": steps / result["seconds"],
                }
            )
        throughput[1]["speedup"] = throughput[1]["steps_per_s"] / throughput[0]["steps_per_s"]
    notes = (
        f"{args.dataset}: {len(train)} train / {len(dev)} dev / {len(test)} test examples; model {args.model}; "
        f"defaults = configs/bertcat.cfg at {args.steps} steps (warmup {max(1, args.steps // 10)}), batch {args.batch_size}, "
        f"max_length {args.max_length}, eval every {args.eval_frequency} steps; {args.trials} trials at concurrency "
        f"{args.concurrency}, ASHA grace {args.eval_frequency} steps, reduction factor 2. Timings contended (shared 2-core machine)."
    )
    extra = {"studies": studies, "throughput": throughput}
    columns = [
        "dataset",
        "seed",
        "trials",
        "dev_defaults",
        "dev_best",
        "test_acc_defaults",
        "test_acc_tuned",
        "gain_points",
        "asha_stopped_share",
        "failed",
        "study_s",
    ]
    if throughput:
        notes += "\n\nConcurrency (steps per wall second of a study, ASHA off):\n\n| concurrency | trials | steps | study_s | steps_per_s | speedup |\n|---|---|---|---|---|---|\n"
        notes += "\n".join(
            f"| {t['concurrency']} | {t['trials']} | {t['steps']} | {t['study_s']:.0f} | {t['steps_per_s']:.3f} | {t.get('speedup', 1.0):.2f} |"
            for t in throughput
        )
    write_results(
        args.name or f"tune_{args.dataset}",
        command_line("tune.py", argv),
        rows,
        columns,
        notes,
        extra,
        args.results_dir,
    )


if __name__ == "__main__":
    main()
