"""Calibrated scores: every calibration method of exclusive classes, and the one
`spacy-bertcat calibrate` chooses by default, on AG News, SST-2, BBC News and IMDB
(long reviews, sliding windows), and Platt scaling on Reuters-21578 (multi-label).

Each dataset: the packaged all-MiniLM-L6-v2 fine-tuned with the shipped config
(`spacy train`; BBC News and IMDB with the demo's config, long documents in sliding
windows). The model's logits on a held-out split (SST-2's dev split; IMDB: 2,000
reviews of the test split; a held-out 10% of the training split elsewhere: the dev
set `spacy train` selected `model-best` on) fit each method (none, temperature,
top-label isotonic and histogram after temperature, vector scaling, Dirichlet with
ODIR) and the default (cross-validation within the held-out data), and the model's
logits on other documents (the test split; IMDB: 5,000 other test reviews) score
them: accuracy, decisions changed, ECE over 15 equal-width and 15 equal-mass bins
with a 95% bootstrap interval and the noise floor, log loss and Brier score; the
prediction sets' coverage at alpha 0.1 and 0.05.

    python bench/calibration.py                      # train (cached in --work-dir) and measure
    python bench/calibration.py --train-only         # only train the models
    python bench/calibration.py --measure-only       # only measure the models already trained
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
    # IMDB: long reviews read in sliding windows (configs/bbc.cfg: one window per
    # review in training, up to 8 at prediction), 3,000 training reviews.
    "imdb": ("bbc.cfg", 3000, 450, 16, 128, None),
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


# IMDB (no dev split; a test split of 12,500): spacy train's dev set is 500 other
# training reviews; calibration and scoring take disjoint samples of the test split.
IMDB_SPLITS = {"dev": 500, "calibration": 2000, "test": 5000}


def splits(name: str, data_dir: Path, n_train, seed: int, n_eval=None):
    """RETURNS: train, spacy train's dev, held-out (calibration) and test
    records; the held-out records are the dev records except for IMDB (see
    IMDB_SPLITS); n_eval: samples of that many held-out and test records
    (smoke runs)."""
    folder = data_dir / name
    train = read_jsonl(folder / "train.jsonl")
    test = read_jsonl(folder / "test.jsonl")
    if name == "imdb":
        rng = random.Random(seed)
        order = list(range(len(train)))
        rng.shuffle(order)
        dev = [train[i] for i in order[: IMDB_SPLITS["dev"]]]
        rest = [train[i] for i in order[IMDB_SPLITS["dev"] :]]
        train = rng.sample(rest, n_train) if n_train is not None and n_train < len(rest) else rest
        picked = random.Random(seed + 1).sample(range(len(test)), IMDB_SPLITS["calibration"] + IMDB_SPLITS["test"])
        held_out = [test[i] for i in picked[: IMDB_SPLITS["calibration"]]]
        test = [test[i] for i in picked[IMDB_SPLITS["calibration"] :]]
        if n_eval is not None:
            dev, held_out, test = dev[:n_eval], held_out[:n_eval], test[:n_eval]
        return train, dev, held_out, test
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
    return train, held_out, held_out, test


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


METHODS = ("none", "temperature", "isotonic", "histogram", "vector", "dirichlet")


def measure(name: str, model_path: Path, held_out, test, labels, args) -> List[Dict]:
    """Exclusive classes: every calibration method, and the default `calibrate`
    chooses (cross-validation within the held-out data), fitted on the held-out
    logits and scored on the test split. Multi-label: Platt scaling."""
    import spacy

    nlp = spacy.load(model_path)
    pipe = nlp.get_pipe("bertcat")
    if not pipe.exclusive:
        return measure_multilabel(name, nlp, held_out, test, labels, args)
    from spacy_bertcat.decisions.calibration import conformal_report, fit_calibration

    def logits_of(records, part):
        gold = numpy.asarray([[float(label in g) for label in labels] for _, g in records], dtype="f")
        cached = args.logits_cache / f"{name}-{part}-{len(records)}.npy" if args.logits_cache else None
        if cached is not None and cached.exists():
            return numpy.load(cached), gold
        with timer() as t:
            z, _ = pipe.logits([nlp.make_doc(text) for text, _ in records], batch_size=32)
        print(f"{name}: logits of {len(records)} docs in {t['seconds']:.0f} s", flush=True)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            numpy.save(cached, z.astype("f8"))
        return z.astype("f8"), gold

    cal_z, cal_gold = logits_of(held_out, "calibration")
    test_z, test_gold = logits_of(test, "test")
    raw = softmax(test_z)
    mask = numpy.ones_like(cal_gold)
    rows = []
    for method in ("auto",) + METHODS:
        with timer() as t:
            calibration = fit_calibration(
                labels,
                cal_z,
                cal_gold,
                mask,
                exclusive=True,
                name=name,
                alphas=args.alphas,
                method=method,
                allow_decision_changes=method in ("vector", "dirichlet"),
            )
        scores = softmax(calibration.apply(numpy, test_z))
        row = score_row(name, method, scores, raw, test_gold, len(held_out), len(test))
        row["fit_s"] = round(t["seconds"], 2)
        row["calibration"] = calibration.describe()
        if method == "auto":
            row["method"] = f"default ({calibration.method})"
            row["chosen"] = calibration.method
            row["cv"] = calibration.fitted["selection"]["rows"]
            for alpha, info in conformal_report(calibration, test_gold, raw).items():
                row[f"coverage@{alpha}"] = info["coverage"]
                row[f"set_size@{alpha}"] = info["mean_size"]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "cv"}), flush=True)
    return rows


def softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def score_row(name, method, scores, raw, gold, n_calibration, n_test) -> Dict:
    from spacy_bertcat.decisions.metrics import calibration_metrics

    m = calibration_metrics(gold, scores, exclusive=True, bootstrap=200)
    gold_index = gold.argmax(axis=1)
    return {
        "dataset": name,
        "method": method,
        "n_calibration": n_calibration,
        "n_test": n_test,
        "accuracy": float((scores.argmax(axis=1) == gold_index).mean()),
        "changed": int((scores.argmax(axis=1) != raw.argmax(axis=1)).sum()),
        "ece": m["ece"],
        "ece_low": m["ece_interval"][0],
        "ece_high": m["ece_interval"][1],
        "ece_floor": m["ece_floor"],
        "ece_adaptive": m["ece_adaptive"],
        "ece_adaptive_low": m["ece_adaptive_interval"][0],
        "ece_adaptive_high": m["ece_adaptive_interval"][1],
        "ece_adaptive_floor": m["ece_adaptive_floor"],
        "log_loss": m["log_loss"],
        "brier": m["brier"],
    }


def measure_multilabel(name: str, nlp, held_out, test, labels, args) -> List[Dict]:
    from spacy_bertcat.components.extensions import component_cats, uncalibrated_cats
    from spacy_bertcat.decisions.metrics import calibration_metrics
    from spacy_bertcat.evaluation.calibrate import calibrate_pipe
    from spacy_bertcat.evaluation.report import compute_report

    pipe = nlp.get_pipe("bertcat")
    cal_docs = [nlp.make_doc(text) for text, _ in held_out]
    cal_gold = numpy.asarray([[float(label in g) for label in labels] for _, g in held_out], dtype="f")
    with timer() as t:
        result = calibrate_pipe(pipe, cal_docs, cal_gold, numpy.ones_like(cal_gold))
    test_docs = list(nlp.pipe([text for text, _ in test], batch_size=64))
    test_gold = numpy.asarray([[float(label in g) for label in labels] for _, g in test], dtype="f")
    after = numpy.asarray([[component_cats(d, "bertcat")[label] for label in labels] for d in test_docs], dtype="f")
    before = numpy.asarray([[uncalibrated_cats(d, "bertcat")[label] for label in labels] for d in test_docs], dtype="f")
    rows = []
    for stage, scores, thresholds in (
        ("none", before, result.thresholds_before),
        ("platt", after, pipe.thresholds),
    ):
        report = compute_report(labels, test_gold, scores, exclusive=False, thresholds=thresholds)
        m = calibration_metrics(test_gold, scores, exclusive=False, bootstrap=200)
        row = {
            "dataset": name,
            "method": stage,
            "n_calibration": len(held_out),
            "n_test": len(test),
            "micro_f1": report["summary"]["micro_f"],
            "ece": m["ece"],
            "ece_low": m["ece_interval"][0],
            "ece_high": m["ece_interval"][1],
            "ece_floor": m["ece_floor"],
            "ece_adaptive": m["ece_adaptive"],
            "ece_adaptive_floor": m["ece_adaptive_floor"],
            "brier": m["brier"],
            "log_loss": m["log_loss"],
            "fit_s": round(t["seconds"], 2) if stage == "platt" else None,
            "calibration": result.calibration.describe() if stage == "platt" else None,
        }
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
    parser.add_argument(
        "--measure-only", action="store_true", help="skip datasets without a trained model (never train)"
    )
    parser.add_argument(
        "--logits-cache", type=Path, default=None, help="keep each model's logits here (.npy) and reuse them"
    )
    parser.add_argument("--max-test", type=int, default=None, help="score on a seeded sample of this many test docs")
    parser.add_argument(
        "--merge", action="store_true", help="keep the rows of other datasets from the existing results file"
    )
    parser.add_argument("--imdb-calibration", type=int, default=IMDB_SPLITS["calibration"])
    parser.add_argument("--imdb-test", type=int, default=IMDB_SPLITS["test"])
    parser.add_argument("--name", default="calibration")
    args = parse_args(parser, argv, SMOKE)
    smoke_work_dir(args)
    args.model = args.model or minilm_path()
    args.alphas = [float(a) for a in args.alphas.split(",")]
    rows: List[Dict] = []
    for name in args.datasets.split(","):
        train, dev, held_out, test = splits(
            name, args.data_dir, budget(name, args)[1], args.seed, SMOKE_BUDGET["eval"] if args.smoke else None
        )
        labels = sorted({label for _, gold in train + held_out + test for label in gold})
        if name == "imdb":
            held_out, test = held_out[: args.imdb_calibration], test[: args.imdb_test]
        if args.max_test is not None and args.max_test < len(test):
            test = random.Random(args.seed).sample(test, args.max_test)
        if args.measure_only and not (args.work_dir / name / "model-best" / "meta.json").exists():
            print(f"{name}: no trained model in {args.work_dir / name}, skipped", flush=True)
            continue
        model_path = train_model(name, args, train, dev, labels)
        if not args.train_only:
            rows += measure(name, model_path, held_out, test, labels, args)
    if args.train_only:
        return
    command = command_line("calibration.py", argv)
    alphas = args.alphas
    columns = (
        [
            "dataset",
            "method",
            "n_calibration",
            "n_test",
            "accuracy",
            "micro_f1",
            "changed",
            "ece",
            "ece_low",
            "ece_high",
            "ece_floor",
            "ece_adaptive",
            "ece_adaptive_floor",
            "log_loss",
            "brier",
        ]
        + [f"coverage@{a}" for a in alphas]
        + [f"set_size@{a}" for a in alphas]
        + ["calibration"]
    )
    notes = (
        "all-MiniLM-L6-v2 fine-tuned with the shipped configs (AG News: 5,000 training docs, SST-2: 5,000, 600 steps "
        "x 16, head truncation at 128 wordpieces; BBC News: configs/bbc.cfg, sliding windows; IMDB: configs/bbc.cfg "
        "(sliding windows of 128 wordpieces, up to 8 per review at prediction), 3,000 training reviews, 450 steps x "
        "16, spacy train's dev set 500 other training reviews; Reuters-21578: configs/bertcat_multilabel.cfg). "
        "Calibrated on the held-out split named n_calibration (SST-2's dev split; IMDB: a sample of the test split; "
        "10% of the training split elsewhere, which was also spacy train's dev set), scored on n_test other documents "
        "(the test split; IMDB: a disjoint sample of it). method: each calibration fitted on the held-out data "
        "(vector and dirichlet with --allow-decision-changes); 'default (X)': what `spacy-bertcat calibrate` does "
        "without --method (5-fold cross-validation within the held-out data among none, temperature, isotonic and "
        "histogram; X is the method it chose). ECE in probability units (x 100 = points) of the top-label "
        "confidence over 15 equal-width bins (ece; ece_low..ece_high: 95% bootstrap interval, 200 resamples of the "
        "test documents) and 15 equal-mass bins (ece_adaptive); ece_floor / ece_adaptive_floor: the ECE perfectly "
        "calibrated scores with these confidences would show on this many documents (the noise of the estimate). "
        "changed: test documents whose top class the calibration changed; brier summed over the classes; log_loss "
        "of the gold class. coverage@alpha / set_size@alpha: split-conformal prediction sets (target coverage "
        "1 - alpha; on the uncalibrated scores, so the same for every method). Multi-label rows: every (doc, label) "
        "score against its gold value, micro_f1 at the tuned thresholds."
    )
    cv = {row["dataset"]: row.get("cv") for row in rows if row.get("cv")}
    for row in rows:
        row.pop("cv", None)
    if args.merge:  # the rows (and tables) of datasets measured by earlier runs
        folder = args.results_dir or Path(__file__).parent / "results"
        earlier = folder / f"{args.name}.json"
        if earlier.exists():
            measured = {row["dataset"] for row in rows}
            previous = json.loads(earlier.read_text())
            rows = [row for row in previous["rows"] if row["dataset"] not in measured] + rows
            cv = {**{k: v for k, v in previous.get("cross_validation", {}).items() if k not in measured}, **cv}
            command = "; ".join(dict.fromkeys([previous["command"], command]))
    write_results(
        args.name, command, rows, columns, notes=notes, results_dir=args.results_dir, extra={"cross_validation": cv}
    )


if __name__ == "__main__":
    main()
