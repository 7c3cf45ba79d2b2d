"""Fine-tuning controls on small data: full fine-tuning, frozen bottom half, gradual
unfreezing and layer-wise learning-rate decay, over several seeds.

Each setting trains MiniLM with `spacy train` on n examples (same samples and seeds
for every strategy, three epochs' worth of steps), then scores the test sample.
Reports the mean and spread (standard deviation) of accuracy and macro-F1 over the
seeds, and the time per step.

    python bench/finetuning.py --dataset ag_news --sizes 500,2000 --seeds 0,1,2
"""
import argparse
import json
import shlex
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    DEFAULT_DATA, accuracy_macro_f1, label_set, minilm_path, read_jsonl, timer, to_docbin, write_results,
)

CONFIG = Path(__file__).parent.parent / "configs" / "bertcat.cfg"


def strategies(steps: int):
    third = steps // 3  # the unfreezing schedule is laid out over thirds of the budget
    return {
        "full": {},
        "frozen_bottom_half": {"components.bertcat.model.freeze_embeddings": True,
                               "components.bertcat.model.freeze_layers": 3},
        "gradual_unfreezing": {"components.bertcat.model.head_lr_scale": 5.0,
                               "training.before_update": {"@callbacks": "spacy-bertcat.gradual_unfreezing.v1",
                                                          "head_steps": third // 2, "unfreeze_every": max(1, third // 4),
                                                          "layers_per_stage": 2, "components": None}},
        "layerwise_decay": {"components.bertcat.model.layer_lr_decay": 0.8,
                            "components.bertcat.model.head_lr_scale": 5.0},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None,
                        help="the same step budget for every size (default: --epochs epochs of each size)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    args = parser.parse_args()
    args.model = args.model or minilm_path()
    command = "python bench/finetuning.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    import spacy
    from spacy.cli.train import train as spacy_train

    folder = args.data_dir / args.dataset
    test = read_jsonl(folder / "test.jsonl", limit=args.test, seed=0)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        steps = args.steps or args.epochs * size // args.batch_size
        results = {}
        for seed in [int(s) for s in args.seeds.split(",")]:
            pool = read_jsonl(folder / "train.jsonl", limit=size + 64, seed=seed)
            train, dev = pool[:size], pool[size:]
            labels = label_set(pool, test)
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                paths = {"paths.train": to_docbin(train, labels, tmp / "train.spacy"),
                         "paths.dev": to_docbin(dev, labels, tmp / "dev.spacy")}
                for name, settings in strategies(steps).items():
                    overrides = {
                        **paths, **settings,
                        "components.bertcat.model.name": args.model,
                        "components.bertcat.model.max_length": args.max_length,
                        "components.bertcat.model.chunking": {"@misc": "spacy-bertcat.head.v1"},
                        "training.max_steps": steps, "training.eval_frequency": steps,
                        "training.optimizer.learn_rate.total_steps": steps,
                        "training.seed": seed, "training.batcher.size": args.batch_size,
                        "training.optimizer.learn_rate.initial_rate": args.lr,
                        "training.optimizer.learn_rate.warmup_steps": steps // 10,
                        "training.logger.progress_bar": None,
                    }
                    with timer() as train_time:
                        spacy_train(CONFIG, tmp / name, overrides=overrides)
                    nlp = spacy.load(tmp / name / "model-last")
                    predicted = [max(d.cats, key=d.cats.get) for d in nlp.pipe([t for t, _ in test], batch_size=64)]
                    scores = accuracy_macro_f1([g[0] for _, g in test], predicted, labels)
                    scores["s_per_step"] = train_time["seconds"] / steps
                    results.setdefault(name, []).append(scores)
                    print(json.dumps({"size": size, "seed": seed, "strategy": name, **scores}), flush=True)
        for name, runs in results.items():
            row = {"train_size": size, "strategy": name, "steps": steps, "seeds": len(runs)}
            for key in ("accuracy", "macro_f1", "s_per_step"):
                values = [r[key] for r in runs]
                row[f"{key}_mean"] = statistics.mean(values)
                row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
    budget = f"{args.steps} steps for every size" if args.steps else f"{args.epochs} epochs of steps"
    notes = (f"{args.dataset}, MiniLM (all-MiniLM-L6-v2), max_length {args.max_length}, batch {args.batch_size}, "
             f"{budget}, lr {args.lr} with 10% warmup then linear decay, test sample of "
             f"{len(test)}. frozen_bottom_half: embeddings + layers 0-2 frozen; gradual_unfreezing: head only for "
             "the first sixth of the steps, then 2 more layers every twelfth (head lr x5); layerwise_decay: each layer 0.8 x "
             "the one above (head lr x5). Mean and sample standard deviation over the seeds (each seed draws its "
             "own training sample). s_per_step includes spaCy's two small dev evaluations and saving.")
    write_results(f"finetuning_{args.dataset}", command, rows, [
        "train_size", "strategy", "steps", "accuracy_mean", "accuracy_sd", "macro_f1_mean", "macro_f1_sd",
        "s_per_step_mean"], notes)


if __name__ == "__main__":
    main()
