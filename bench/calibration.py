"""Calibrated scores: expected calibration error before and after calibration, and
split-conformal prediction sets, on AG News, SST-2 and BBC News (exclusive classes)
and Reuters-21578 (multi-label).

Each dataset: the packaged all-MiniLM-L6-v2 fine-tuned with the shipped config
(`spacy train`; BBC News with the demo's config, long articles in sliding windows),
calibrated with `spacy_bertcat.evaluation.calibrate` on held-out data (SST-2's dev split, a
held-out 10% of the training split elsewhere: the dev set `spacy train` selected
`model-best` on), then scored on the test split: accuracy, ECE with 15 equal-width
and 15 equal-mass bins, Brier score and log loss before and after; empirical coverage
and mean size of the prediction sets at alpha 0.1 and 0.05; multi-label: micro-F1
at the tuned thresholds before and after.

    python bench/calibration.py                      # train (cached in --work-dir) and measure
    python bench/calibration.py --train-only         # only train the four models
"""

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Dict, List

import numpy

sys.path.insert(0, str(Path(__file__).parent))
from common import DEFAULT_DATA, command_line, minilm_path, parse_args, read_jsonl, timer, to_docbin, write_results  # noqa: E402

CONFIGS = Path(__file__).parent.parent / "configs"
DATASETS = {
    # name: (config, train sample, steps, batch size, max_length, chunking override)
    "ag_news": ("bertcat.cfg", 5000, 600, 16, 128, {"@misc": "spacy-bertcat.head.v1"}),
    "sst2": ("bertcat.cfg", 5000, 600, 16, 128, {"@misc": "spacy-bertcat.head.v1"}),
    "bbc_news": ("bbc.cfg", None, 450, 16, 128, None),
    "reuters21578": ("bertcat_multilabel.cfg", None, 600, 16, 128, {"@misc": "spacy-bertcat.head.v1"}),
}
# --smoke: one dataset per config and per split branch (SST-2: a dev split; BBC News:
# bbc.cfg, sliding windows; Reuters: multi-label), a fresh --work-dir, and for every
# dataset the budget below; held-out and test samples of 32 (split-conformal sets
# at alpha 0.05 need 19 calibration documents).
SMOKE = {"datasets": "sst2,bbc_news,reuters21578", "work_dir": None}
SMOKE_BUDGET = {"train": 16, "eval": 32, "steps": 3, "batch_size": 8, "max_length": 32}


def budget(name: str, args):
    """RETURNS: (config, train sample, steps, batch size, max_length, chunking) of
    dataset `name`; a smoke run's are SMOKE_BUDGET's."""
    config, n_train, steps, batch_size, max_length, chunking = DATASETS[name]
    if getattr(args, "smoke", False):
        b = SMOKE_BUDGET
        n_train, steps, batch_size, max_length = b["train"], b["steps"], b["batch_size"], b["max_length"]
    return config, n_train, steps, batch_size, max_length, chunking


def smoke_work_dir(args) -> None:
    """A smoke run's models go to a folder of its own (never the --work-dir cache
    that real runs reuse), unless --work-dir names one."""
    if args.smoke and args.work_dir is None:
        args.work_dir = args.smoke_dir / "work"


def splits(name: str, data_dir: Path, n_train, seed: int, n_eval=None):
    """RETURNS: train, held-out (calibration and spacy train's dev) and test records;
    n_eval: samples of that many held-out and test records (smoke runs)."""
    folder = data_dir / name
    train = read_jsonl(folder / "train.jsonl")
    test = read_jsonl(folder / "test.jsonl")
    if (folder / "dev.jsonl").exists():
        held_out = read_jsonl(folder / "dev.jsonl")
    else:
        order = list(range(len(train)))
        random.Random(seed).shuffle(order)
        n_held = len(train) // 10
        held_out = [train[i] for i in order[:n_held]]
        train = [train[i] for i in order[n_held:]]
    if n_train is not None and n_train < len(train):
        train = random.Random(seed).sample(train, n_train)
    if n_eval is not None:
        held_out = random.Random(seed).sample(held_out, min(n_eval, len(held_out)))
        test = random.Random(seed).sample(test, min(n_eval, len(test)))
    return train, held_out, test


def train_model(name: str, args, train, held_out, labels) -> Path:
    """Fine-tune with `spacy train` (cached: a finished model-best is reused)."""
    from spacy.cli.train import train as spacy_train

    config, _, steps, batch_size, max_length, chunking = budget(name, args)
    out = args.work_dir / name
    if (out / "model-best" / "meta.json").exists():
        return out / "model-best"
    out.mkdir(parents=True, exist_ok=True)
    overrides = {
        "paths.train": to_docbin(train, labels, out / "train.spacy"),
        "paths.dev": to_docbin(held_out, labels, out / "dev.spacy"),
        "components.bertcat.model.name": args.model,
        "components.bertcat.model.max_length": max_length,
        "training.max_steps": steps,
        "training.optimizer.learn_rate.total_steps": steps,
        "training.eval_frequency": steps // 3,
        "training.seed": args.seed,
        "training.batcher.size": batch_size,
    }
    if chunking is not None:
        overrides["components.bertcat.model.chunking"] = chunking
    if name == "reuters21578":
        overrides["training.optimizer.learn_rate.warmup_steps"] = steps // 10
    with timer() as t:
        spacy_train(CONFIGS / config, out / "training", overrides=overrides)
    (out / "training" / "model-best").rename(out / "model-best")
    print(f"{name}: trained in {t['seconds']:.0f} s", flush=True)
    return out / "model-best"


def measure(name: str, model_path: Path, held_out, test, labels, args) -> List[Dict]:
    import spacy

    from spacy_bertcat.components.extensions import component_cats, uncalibrated_cats
    from spacy_bertcat.decisions.calibration import conformal_report, fit_temperature
    from spacy_bertcat.decisions.metrics import calibration_metrics
    from spacy_bertcat.evaluation.calibrate import calibrate_pipe
    from spacy_bertcat.evaluation.report import compute_report

    nlp = spacy.load(model_path)
    pipe = nlp.get_pipe("bertcat")
    exclusive = pipe.exclusive

    def matrices(records):
        docs = [nlp.make_doc(text) for text, _ in records]
        gold = numpy.asarray([[float(label in g) for label in labels] for _, g in records], dtype="f")
        return docs, gold

    cal_docs, cal_gold = matrices(held_out)
    with timer() as t:
        result = calibrate_pipe(pipe, cal_docs, cal_gold, numpy.ones_like(cal_gold), alphas=args.alphas)
    test_docs = list(nlp.pipe([text for text, _ in test], batch_size=64))
    test_gold = numpy.asarray([[float(label in g) for label in labels] for _, g in test], dtype="f")
    after = numpy.asarray([[component_cats(d, "bertcat")[label] for label in labels] for d in test_docs], dtype="f")
    before = numpy.asarray([[uncalibrated_cats(d, "bertcat")[label] for label in labels] for d in test_docs], dtype="f")
    rows = []
    for stage, scores, thresholds in (
        ("uncalibrated", before, result.thresholds_before),
        ("calibrated", after, pipe.thresholds),
    ):
        report = compute_report(labels, test_gold, scores, exclusive=exclusive, thresholds=thresholds)
        m = calibration_metrics(test_gold, scores, exclusive=exclusive)
        row = {
            "dataset": name,
            "scores": stage,
            "n_calibration": len(held_out),
            "n_test": len(test),
            "accuracy": report["summary"]["accuracy"],
            "micro_f1": report["summary"]["micro_f"],
            "ece": m["ece"],
            "ece_adaptive": m["ece_adaptive"],
            "ece_floor": m["ece_floor"],
            "brier": m["brier"],
            "log_loss": m["log_loss"],
            "fit_s": round(t["seconds"], 2) if stage == "calibrated" else None,
            "calibration": result.calibration.describe() if stage == "calibrated" else None,
        }
        if exclusive and stage == "calibrated":
            # The best any temperature can do: fitted on the test data itself (log
            # scores are the logits up to a constant per document).
            log_p = numpy.log(numpy.clip(before.astype("f8"), 1e-30, 1.0))
            t_oracle = fit_temperature(log_p, test_gold.argmax(axis=1))
            z = log_p / t_oracle
            oracle = numpy.exp(z - z.max(axis=1, keepdims=True))
            oracle /= oracle.sum(axis=1, keepdims=True)
            row["ece_best_temperature"] = calibration_metrics(test_gold, oracle, exclusive=True)["ece"]
            row["best_temperature"] = t_oracle
            sets = conformal_report(pipe.calibration, test_gold, before)
            for alpha, info in sets.items():
                row[f"coverage@{alpha}"] = info["coverage"]
                row[f"set_size@{alpha}"] = info["mean_size"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/bertcat-calibration"))
    parser.add_argument("--model", default=None, help="model directory (default: the packaged MiniLM)")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--alphas", default="0.1,0.05")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-only", action="store_true")
    parser.add_argument("--name", default="calibration")
    args = parse_args(parser, argv, SMOKE)
    smoke_work_dir(args)
    args.model = args.model or minilm_path()
    args.alphas = [float(a) for a in args.alphas.split(",")]
    rows: List[Dict] = []
    for name in args.datasets.split(","):
        train, held_out, test = splits(
            name, args.data_dir, budget(name, args)[1], args.seed, SMOKE_BUDGET["eval"] if args.smoke else None
        )
        labels = sorted({label for _, gold in train + held_out + test for label in gold})
        model_path = train_model(name, args, train, held_out, labels)
        if not args.train_only:
            rows += measure(name, model_path, held_out, test, labels, args)
    if args.train_only:
        return
    command = command_line("calibration.py", argv)
    alphas = args.alphas
    columns = (
        [
            "dataset",
            "scores",
            "n_calibration",
            "n_test",
            "accuracy",
            "micro_f1",
            "ece",
            "ece_adaptive",
            "ece_floor",
            "brier",
            "log_loss",
            "ece_best_temperature",
        ]
        + [f"coverage@{a}" for a in alphas]
        + [f"set_size@{a}" for a in alphas]
        + ["calibration"]
    )
    notes = (
        "all-MiniLM-L6-v2 fine-tuned with the shipped configs (AG News: 5,000 training docs, SST-2: 5,000, 600 steps "
        "x 16, head truncation at 128 wordpieces; BBC News: configs/bbc.cfg, sliding windows; Reuters-21578: "
        "configs/bertcat_multilabel.cfg, 600 steps), calibrated on the held-out split named n_calibration (SST-2's "
        "dev split; 10% of the training split elsewhere, which was also spacy train's dev set), scored on the test "
        "split. ECE in probability units (x 100 = points) over 15 bins: equal-width (ece) and equal-mass "
        "(ece_adaptive); ece_best_temperature: the ECE of the temperature fitted on the test split itself (the "
        "best temperature scaling can do on it); ece_floor: the ECE perfectly calibrated scores with the same confidences would show on "
        "this many predictions (the noise of the estimate); exclusive classes: top-label confidence against accuracy; multi-label: every (doc, label) "
        "score against its gold value. brier: summed over the labels, mean over docs; log_loss: of the gold class "
        "(exclusive), mean binary over labels (multi-label). coverage@alpha / set_size@alpha: split-conformal "
        "prediction sets (target coverage 1 - alpha). micro_f1 of the multi-label rows at each stage's thresholds "
        "(the tuned thresholds, mapped through the calibration)."
    )
    write_results(args.name, command, rows, columns, notes=notes, results_dir=args.results_dir)


if __name__ == "__main__":
    main()
