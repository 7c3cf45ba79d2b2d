"""Fine-tuning controls on small data: full fine-tuning, frozen bottom half, gradual
unfreezing, layer-wise learning-rate decay and LoRA adapters, over several seeds.

Each setting trains MiniLM with `spacy train` (in its own process, for its peak
memory) on n examples (same samples and seeds for every strategy), then scores the
test sample. Reports the mean and spread (standard deviation) of accuracy and
macro-F1 over the seeds, the time per step, trainable parameters, peak memory of the
training process and the size on disk of the saved component.

    python bench/finetuning.py --dataset ag_news --sizes 500,2000 --seeds 0,1,2
    python bench/finetuning.py --strategies full,layerwise_decay,lora_r8,lora_r16 --name finetuning_lora
"""

import argparse
import json
import os
import statistics
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
    run_python,
    smoke_skips,
    timer,
    to_docbin,
    write_results,
)

CONFIG = Path(__file__).parent.parent / "configs" / "bertcat.cfg"
# --smoke: every strategy but lora_r16 (lora_r8's path at another rank) on a few
# documents, one seed, 6 steps (gradual unfreezing's schedule needs 6 to unfreeze);
# `spacy train` runs in this process (the same code, no new interpreter).
SMOKE = {
    "sizes": "16",
    "seeds": "0",
    "dev": 4,
    "test": 8,
    "steps": 6,
    "batch_size": 4,
    "max_length": 32,
    "strategies": "full,frozen_bottom_half,gradual_unfreezing,layerwise_decay,lora_r8",
}


def lora(r: int, lr: float):
    """LoRA on every projection of the encoder layers (alpha = 2r), the head at the
    same rate; saved as the adapter alone (its size on disk is the number reported)."""
    return {
        "components.bertcat.model.adapter": {
            "@misc": "spacy-bertcat.lora.v1",
            "r": r,
            "alpha": 2.0 * r,
            "dropout": 0.1,
            "target_modules": None,
            "save": "adapter",
        },
        "training.optimizer.learn_rate.initial_rate": lr,
    }


def strategies(steps: int, lora_lr: float):
    third = steps // 3  # the unfreezing schedule is laid out over thirds of the budget
    return {
        "full": {},
        "frozen_bottom_half": {
            "components.bertcat.model.freeze_embeddings": True,
            "components.bertcat.model.freeze_layers": 3,
        },
        "gradual_unfreezing": {
            "components.bertcat.model.head_lr_scale": 5.0,
            "training.before_update": {
                "@callbacks": "spacy-bertcat.gradual_unfreezing.v1",
                "head_steps": third // 2,
                "unfreeze_every": max(1, third // 4),
                "layers_per_stage": 2,
                "components": None,
            },
        },
        "layerwise_decay": {
            "components.bertcat.model.layer_lr_decay": 0.8,
            "components.bertcat.model.head_lr_scale": 5.0,
        },
        "lora_r8": lora(8, lora_lr),
        "lora_r16": lora(16, lora_lr),
    }


TRAIN = """
import json, resource, sys
from pathlib import Path
from spacy.cli.train import train
train(Path(sys.argv[1]), Path(sys.argv[2]), overrides=json.loads(sys.argv[3]))
print("PEAK_RSS_MB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def train_in_process(output: Path, overrides, inline: bool = False) -> float:
    """Run `spacy train` in a new process (inline: the same code in this one, for
    smoke runs). RETURNS (float): its peak RSS in MB."""
    out = run_python(
        ["-c", TRAIN, str(CONFIG), str(output), json.dumps(overrides)],
        inline=inline,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    return float(out.strip().split("PEAK_RSS_MB")[-1])


def trainable_parameters(overrides, labels) -> int:
    """Parameters the optimizer updates, counted on an initialized pipeline."""
    from spacy.training import Example
    from spacy.util import load_config, load_model_from_config

    config = load_config(
        CONFIG, overrides={k: v for k, v in overrides.items() if not k.startswith(("paths.", "training."))}
    )
    nlp = load_model_from_config(config, auto_fill=True)
    nlp.initialize(
        lambda: [
            Example.from_dict(nlp.make_doc("a b"), {"cats": {k: float(k == label) for k in labels}}) for label in labels
        ]
    )
    model = nlp.get_pipe("bertcat").model.shims[0].model
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def component_size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None)
    parser.add_argument("--sizes", default="500,2000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dev", type=int, default=64, help="spacy train's dev set, drawn with each training sample")
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="the same step budget for every size (default: --epochs epochs of each size)",
    )
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--lora-lr", type=float, default=1e-3)
    parser.add_argument(
        "--strategies", default="full,frozen_bottom_half,gradual_unfreezing,layerwise_decay,lora_r8,lora_r16"
    )
    parser.add_argument("--name", default=None)
    args = parse_args(parser, argv, SMOKE)
    args.model = args.model or minilm_path()
    command = command_line("finetuning.py", argv)
    names = [
        name for name in args.strategies.split(",") if not (name.startswith("lora") and smoke_skips(args, name, "peft"))
    ]
    import spacy

    folder = args.data_dir / args.dataset
    test = read_jsonl(folder / "test.jsonl", limit=args.test, seed=0)
    rows = []
    n_trainable = {}
    for size in [int(s) for s in args.sizes.split(",")]:
        steps = args.steps or args.epochs * size // args.batch_size
        results = {}
        for seed in [int(s) for s in args.seeds.split(",")]:
            pool = read_jsonl(folder / "train.jsonl", limit=size + args.dev, seed=seed)
            train, dev = pool[:size], pool[size:]
            labels = label_set(pool, test)
            with tempfile.TemporaryDirectory() as tmp:
                tmp = Path(tmp)
                paths = {
                    "paths.train": to_docbin(train, labels, tmp / "train.spacy"),
                    "paths.dev": to_docbin(dev, labels, tmp / "dev.spacy"),
                }
                chosen = strategies(steps, args.lora_lr)
                for name in names:
                    settings = chosen[name]
                    overrides = {
                        **paths,
                        **settings,
                        "components.bertcat.model.name": args.model,
                        "components.bertcat.model.max_length": args.max_length,
                        "components.bertcat.model.chunking": {"@misc": "spacy-bertcat.head.v1"},
                        "training.max_steps": steps,
                        "training.eval_frequency": steps,
                        "training.optimizer.learn_rate.total_steps": steps,
                        "training.seed": seed,
                        "training.batcher.size": args.batch_size,
                        "training.optimizer.learn_rate.initial_rate": args.lr,
                        "training.optimizer.learn_rate.warmup_steps": steps // 10,
                        "training.logger.progress_bar": None,
                    }
                    with timer() as train_time:
                        peak = train_in_process(tmp / name, overrides, inline=args.smoke)
                    nlp = spacy.load(tmp / name / "model-last")
                    predicted = [max(d.cats, key=d.cats.get) for d in nlp.pipe([t for t, _ in test], batch_size=64)]
                    scores = accuracy_macro_f1([g[0] for _, g in test], predicted, labels)
                    scores["s_per_step"] = train_time["seconds"] / steps
                    scores["peak_rss_mb"] = peak
                    scores["disk_mb"] = component_size_mb(tmp / name / "model-last" / "bertcat")
                    if name not in n_trainable:
                        n_trainable[name] = trainable_parameters(overrides, labels)
                    results.setdefault(name, []).append(scores)
                    print(json.dumps({"size": size, "seed": seed, "strategy": name, **scores}), flush=True)
        for name, runs in results.items():
            row = {
                "train_size": size,
                "strategy": name,
                "steps": steps,
                "seeds": len(runs),
                "trainable_params": n_trainable[name],
            }
            for key in ("accuracy", "macro_f1", "s_per_step", "peak_rss_mb", "disk_mb"):
                values = [r[key] for r in runs]
                row[f"{key}_mean"] = statistics.mean(values)
                row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
            rows.append(row)
    budget = f"{args.steps} steps for every size" if args.steps else f"{args.epochs} epochs of steps"
    notes = (
        f"{args.dataset}, MiniLM (all-MiniLM-L6-v2), max_length {args.max_length}, batch {args.batch_size}, "
        f"{budget}, lr {args.lr} with 10% warmup then linear decay, test sample of "
        f"{len(test)}. frozen_bottom_half: embeddings + layers 0-2 frozen; gradual_unfreezing: head only for "
        "the first sixth of the steps, then 2 more layers every twelfth (head lr x5); layerwise_decay: each layer 0.8 x "
        "the one above (head lr x5); lora_rN: LoRA adapters of rank N (alpha 2N, dropout 0.1) on every linear "
        f"projection of the encoder layers, encoder fixed, head trained, lr {args.lora_lr} for adapters and head. "
        "Mean and sample standard deviation over the seeds (each seed draws its "
        "own training sample). s_per_step includes spaCy's two small dev evaluations and saving, "
        "measured around a `spacy train` subprocess (its start-up, about 5 s, is spread over the steps). "
        "peak_rss_mb: peak resident memory of that process. disk_mb: the saved component (LoRA: "
        'save = "adapter", the adapter and the head; merged, a LoRA component is the size of the full one).'
    )
    write_results(
        args.name or f"finetuning_{args.dataset}",
        command,
        rows,
        [
            "train_size",
            "strategy",
            "steps",
            "trainable_params",
            "accuracy_mean",
            "accuracy_sd",
            "macro_f1_mean",
            "macro_f1_sd",
            "s_per_step_mean",
            "peak_rss_mb_mean",
            "disk_mb_mean",
        ],
        notes,
        results_dir=args.results_dir,
    )


if __name__ == "__main__":
    main()
