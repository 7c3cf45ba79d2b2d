"""Long documents: chunking strategies compared under the same training budget.

For each dataset, trains bertcat with each strategy (same model, data, steps, batch
size, learning rate, seed) and scores accuracy / macro-F1 on the test sample and on
its *long slice* (documents over 512 wordpieces), with training and prediction time
per document. Strategies: head; head+tail; sliding windows aggregated by mean, max
and learned attention.

    python bench/chunking.py --datasets bbc_news,imdb --max-length 128 --steps 200
"""

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    accuracy_macro_f1,
    command_line,
    label_set,
    minilm_path,
    parse_args,
    read_jsonl,
    timer,
    to_docbin,
    write_results,
)

CONFIG = Path(__file__).parent.parent / "configs" / "bertcat.cfg"
# --smoke: every strategy on BBC News (its test split is small to measure in
# wordpieces; IMDB's is 12,500 reviews), a few documents, 2 steps.
SMOKE = {
    "datasets": "bbc_news",
    "train": 8,
    "dev": 4,
    "test": 4,
    "test_long": 4,
    "steps": 2,
    "batch_size": 4,
    "max_length": 32,
}


def strategies(window: int, max_windows: int, max_windows_predict=None, names=None):
    sliding = {
        "@misc": "spacy-bertcat.sliding_window.v1",
        "stride": window * 3 // 4,
        "max_windows": max_windows,
        "max_windows_predict": max_windows_predict,
    }
    every = {
        "head": {"@misc": "spacy-bertcat.head.v1"},
        "head_tail": {"@misc": "spacy-bertcat.head_tail.v1", "head": window // 4},
        "sliding_mean": {**sliding, "aggregation": "mean"},
        "sliding_max": {**sliding, "aggregation": "max"},
        "sliding_attention": {**sliding, "aggregation": "attention"},
    }
    if names is None:
        return every
    unknown = set(names) - set(every)
    if unknown:
        raise SystemExit(f"Unknown strategies {sorted(unknown)}; choose from {sorted(every)}")
    return {name: every[name] for name in every if name in names}


def wordpiece_counts(texts, model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model)
    backend = tokenizer.backend_tokenizer
    backend.no_truncation()
    return [len(enc.ids) for enc in backend.encode_batch(texts, add_special_tokens=True)]


def run(dataset: str, args, command: str):
    import spacy
    from spacy.cli.train import train as spacy_train

    folder = args.data_dir / dataset
    pool = read_jsonl(folder / "train.jsonl", limit=args.train + args.dev, seed=args.seed)
    train, dev = pool[: args.train], pool[args.train :]
    test_all = read_jsonl(folder / "test.jsonl", seed=args.seed)
    random.Random(args.seed).shuffle(test_all)  # files are ordered by label
    lengths = wordpiece_counts([t for t, _ in test_all], args.model)
    long_slice = [r for r, n in zip(test_all, lengths) if n > 512][: args.test_long]
    test = test_all[: args.test]
    labels = label_set(train, test_all)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = {
            "train": to_docbin(train, labels, tmp / "train.spacy"),
            "dev": to_docbin(dev, labels, tmp / "dev.spacy"),
        }
        window = args.max_length - 2
        chosen = strategies(window, args.max_windows, args.max_windows_predict, args.strategies)
        for name, chunking in chosen.items():
            overrides = {
                "paths.train": paths["train"],
                "paths.dev": paths["dev"],
                "components.bertcat.model.name": args.model,
                "components.bertcat.model.max_length": args.max_length,
                "components.bertcat.model.attention_dropout": 0.0,
                "components.bertcat.model.chunking": chunking,
                "training.max_steps": args.steps,
                "training.eval_frequency": args.steps,
                "training.optimizer.learn_rate.total_steps": args.steps,
                "training.seed": args.seed,
                "training.batcher.size": args.batch_size,
                "training.optimizer.learn_rate.initial_rate": args.lr,
                "training.optimizer.learn_rate.warmup_steps": args.steps // 10,
                "training.logger.progress_bar": None,
            }
            with timer() as train_time:
                spacy_train(CONFIG, tmp / name, overrides=overrides)
            nlp = spacy.load(tmp / name / "model-last")
            row = {
                "dataset": dataset,
                "strategy": name,
                "train_ms_per_doc": 1000 * train_time["seconds"] / (args.steps * args.batch_size),
            }
            for slice_name, records in (("all", test), ("long", long_slice)):
                with timer() as predict_time:
                    docs = list(nlp.pipe([t for t, _ in records], batch_size=32))
                predicted = [max(doc.cats, key=doc.cats.get) for doc in docs]
                scores = accuracy_macro_f1([g[0] for _, g in records], predicted, labels)
                row[f"{slice_name}_accuracy"] = scores["accuracy"]
                row[f"{slice_name}_macro_f1"] = scores["macro_f1"]
                row[f"{slice_name}_predict_ms_per_doc"] = 1000 * predict_time["seconds"] / len(records)
            row["n_test"], row["n_long"] = len(test), len(long_slice)
            print(json.dumps(row), flush=True)
            rows.append(row)
    head = next((row for row in rows if row["strategy"] == "head"), None)
    if head is not None:  # the ratios need head among the strategies run
        for row in rows:
            row["long_predict_time_vs_head"] = row["long_predict_ms_per_doc"] / head["long_predict_ms_per_doc"]
            row["long_accuracy_vs_head"] = row["long_accuracy"] - head["long_accuracy"]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="bbc_news,imdb")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None)
    parser.add_argument("--dev", type=int, default=32, help="spacy train's dev set, drawn with the training sample")
    parser.add_argument("--train", type=int, default=1600)
    parser.add_argument("--test", type=int, default=400, help="test sample (all lengths)")
    parser.add_argument("--test-long", type=int, default=300, help="test documents over 512 wordpieces")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=128, help="wordpieces per window")
    parser.add_argument("--max-windows", type=int, default=4, help="windows per document in training")
    parser.add_argument(
        "--max-windows-predict", type=int, default=None, help="windows per document at prediction (default: all)"
    )
    parser.add_argument(
        "--strategies",
        type=lambda text: text.split(","),
        default=None,
        help="comma-separated subset of head,head_tail,sliding_mean,sliding_max,sliding_attention",
    )
    parser.add_argument("--name", default="chunking", help="results file name under bench/results/")
    parser.add_argument("--seed", type=int, default=0)
    args = parse_args(parser, argv, SMOKE)
    args.model = args.model or minilm_path()
    command = command_line("chunking.py", argv)
    rows = [row for dataset in args.datasets.split(",") for row in run(dataset, args, command)]
    notes = (
        f"MiniLM (all-MiniLM-L6-v2), windows of {args.max_length} wordpieces, {args.steps} steps x batch "
        f"{args.batch_size} on {args.train} training documents, lr {args.lr}, seed {args.seed}; sliding windows: "
        f"stride 3/4 of the window, at most {args.max_windows} sampled windows per document in training, "
        f"{args.max_windows_predict or 'all'} (evenly spaced) at prediction. 'long' = test documents over 512 wordpieces; long_accuracy_vs_head in accuracy points, "
        f"long_predict_time_vs_head as a ratio. Times are per document on this machine's CPUs."
    )
    write_results(
        args.name,
        command,
        rows,
        [
            "dataset",
            "strategy",
            "all_accuracy",
            "all_macro_f1",
            "long_accuracy",
            "long_macro_f1",
            "long_accuracy_vs_head",
            "train_ms_per_doc",
            "long_predict_ms_per_doc",
            "long_predict_time_vs_head",
        ],
        notes,
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
