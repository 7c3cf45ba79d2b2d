"""Training speed and accuracy: bertcat through `spacy train` vs `transformers.Trainer`.

Same model (packaged all-MiniLM-L6-v2), data sample, steps, batch size, learning
rate and schedule (linear warmup + decay), weight decay 0.01 without biases/norms,
gradient clipping 1.0, max length, seed; head truncation on both sides. Wall time
covers model loading and training (spaCy's includes its two small dev evaluations and
saving). Accuracy is measured on the same test sample, each side predicting its own way.

    python bench/train_vs_trainer.py --dataset ag_news --train 3000 --steps 300
"""

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    DEFAULT_DATA,
    accuracy_macro_f1,
    command_line,
    hf_dataset,
    label_set,
    minilm_path,
    parse_args,
    read_jsonl,
    smoke_skips,
    timer,
    train_overrides,
    write_results,
)

CONFIG = Path(__file__).parent.parent / "configs" / "bertcat.cfg"
# --smoke: every variant on a few documents, 2 steps (CPU: --gpu and --bf16 are not run).
SMOKE = {
    "train": 16,
    "dev": 8,
    "test": 8,
    "steps": 2,
    "batch_size": 8,
    "warmup": 1,
    "max_length": 32,
    "variants": "bertcat,bertcat_random,trainer,trainer_grouped",
}


def run_spacy(train, dev, test, labels, args, tmp: Path, batcher: str):
    import spacy
    from spacy.cli.train import train as spacy_train

    overrides = {
        **train_overrides(train, dev, labels, args, tmp, args.steps),
        "training.optimizer.learn_rate.initial_rate": args.lr,
        "training.optimizer.learn_rate.warmup_steps": args.warmup,
        "training.logger.progress_bar": None,
    }
    if batcher == "random":
        overrides["training.batcher"] = {
            "@batchers": "spacy.batch_by_sequence.v1",
            "size": args.batch_size,
            "get_length": None,
        }
    if args.attention_dropout is not None:
        overrides["components.bertcat.model.attention_dropout"] = args.attention_dropout
    if args.bf16:
        overrides["components.bertcat.model.mixed_precision"] = True
        overrides["components.bertcat.model.amp_dtype"] = "bfloat16"
    with timer() as train_time:
        spacy_train(CONFIG, tmp / "out", overrides=overrides, use_gpu=0 if args.gpu else -1)
    if args.gpu:
        spacy.require_gpu(0)
    nlp = spacy.load(tmp / "out" / "model-last")
    with timer() as predict_time:
        predicted = [max(doc.cats, key=doc.cats.get) for doc in nlp.pipe([t for t, _ in test], batch_size=64)]
    return train_time["seconds"], predicted, predict_time["seconds"]


def length_grouping(on: bool) -> dict:
    """RETURNS (dict): The TrainingArguments that turn length-grouped batches on or off:
    group_by_length up to transformers 4, train_sampling_strategy from 5."""
    import dataclasses

    from transformers import TrainingArguments

    if "group_by_length" in {field.name for field in dataclasses.fields(TrainingArguments)}:
        return {"group_by_length": on}
    return {"train_sampling_strategy": "group_by_length" if on else "random"}


def run_trainer(train, test, labels, args, tmp: Path, group_by_length: bool):
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    index = {label: i for i, label in enumerate(labels)}

    def Dataset(records):
        return hf_dataset(tokenizer, [t for t, _ in records], [index[gold[0]] for _, gold in records], args.max_length)

    with timer() as train_time:
        tokenizer = AutoTokenizer.from_pretrained(args.model)
        extra = {} if args.attention_dropout is None else {"attention_probs_dropout_prob": args.attention_dropout}
        torch.manual_seed(args.seed)
        model = AutoModelForSequenceClassification.from_pretrained(
            args.model,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id=index,
            attn_implementation="sdpa",
            **extra,
        )
        training_args = TrainingArguments(
            output_dir=str(tmp / "hf"),
            max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=args.lr,
            warmup_steps=args.warmup,
            lr_scheduler_type="linear",
            weight_decay=0.01,
            max_grad_norm=1.0,
            seed=args.seed,
            save_strategy="no",
            report_to=[],
            logging_steps=args.steps,
            disable_tqdm=True,
            use_cpu=not args.gpu,
            **length_grouping(group_by_length),
            dataloader_num_workers=0,
            bf16=args.bf16,
            per_device_eval_batch_size=64,
        )
        trainer = Trainer(
            model=model,
            args=training_args,
            train_dataset=Dataset(train),
            data_collator=DataCollatorWithPadding(tokenizer),
        )
        trainer.train()
    # Trainer.predict with group_by_length=True (transformers 4.53; 5:
    # train_sampling_strategy="group_by_length") samples the test set in length-grouped
    # order and returns predictions in that order, not the dataset's; predict in
    # order, as a user must.
    for key, value in length_grouping(False).items():
        setattr(trainer.args, key, value)
    with timer() as predict_time:
        output = trainer.predict(Dataset(test))
    predicted = [labels[i] for i in numpy.argmax(output.predictions, axis=1)]
    return train_time["seconds"], predicted, predict_time["seconds"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ag_news")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None, help="model directory (default: the packaged MiniLM)")
    parser.add_argument("--dev", type=int, default=32, help="spacy train's dev set, drawn with the training sample")
    parser.add_argument("--train", type=int, default=3000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument(
        "--attention-dropout", type=float, default=None, help="set on both sides (default: the model's)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gpu", action="store_true", help="train on GPU 0 (spacy train --gpu-id 0)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on both sides")
    parser.add_argument("--peak-tflops", type=float, default=989.4, help="GPU peak dense bf16 TFLOP/s (H100 SXM)")
    parser.add_argument("--name", default=None, help="results name (default: train_vs_trainer_DATASET[_gpu])")
    parser.add_argument(
        "--variants",
        default="bertcat,trainer,trainer_grouped",
        help="comma list of bertcat, bertcat_random, trainer, trainer_grouped",
    )
    args = parse_args(parser, argv, SMOKE)
    args.model = args.model or minilm_path()
    command = command_line("train_vs_trainer.py", argv)
    folder = args.data_dir / args.dataset
    pool = read_jsonl(folder / "train.jsonl", limit=args.train + args.dev, seed=args.seed)
    train, dev = pool[: args.train], pool[args.train :]
    test = read_jsonl(folder / "test.jsonl", limit=args.test, seed=args.seed)
    labels = label_set(train, test)
    gold = [g[0] for _, g in test]
    rows = []
    for variant in args.variants.split(","):
        if variant.startswith("trainer") and smoke_skips(args, variant, "accelerate"):  # transformers.Trainer needs it
            continue
        random.seed(args.seed)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                if variant.startswith("bertcat"):
                    batcher = "random" if variant == "bertcat_random" else "length"
                    seconds, predicted, predict_seconds = run_spacy(train, dev, test, labels, args, Path(tmp), batcher)
                else:
                    seconds, predicted, predict_seconds = run_trainer(
                        train, test, labels, args, Path(tmp), group_by_length=variant == "trainer_grouped"
                    )
        except Exception as e:  # keep the other systems' results
            if args.smoke:  # a smoke run is there to notice
                raise
            print(f"{variant} failed: {e!r}", file=sys.stderr, flush=True)
            continue
        row = {
            "system": variant,
            "train_s": seconds,
            "examples_per_s": args.steps * args.batch_size / seconds,
            **accuracy_macro_f1(gold, predicted, labels),
            "predict_docs_per_s": len(test) / predict_seconds,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    reference = next((r for r in rows if r["system"] == "trainer"), None)
    tokens_per_example, flops_per_token = model_cost(args, train)
    for row in rows:
        row["speed_vs_trainer"] = row["examples_per_s"] / reference["examples_per_s"] if reference else None
        if args.gpu:  # model FLOP utilization: 6 x non-embedding params per token, plus attention
            flops = row["examples_per_s"] * tokens_per_example * flops_per_token
            row["mfu_vs_peak_bf16"] = flops / (args.peak_tflops * 1e12)
    name = args.name or f"train_vs_trainer_{args.dataset}"
    notes = (
        f"{args.dataset}: {len(train)} train / {len(test)} test examples, {args.steps} steps x batch "
        f"{args.batch_size}, lr {args.lr} (warmup {args.warmup}, linear decay), max_length {args.max_length}, "
        f"seed {args.seed}, attention dropout {'model default' if args.attention_dropout is None else args.attention_dropout}. "
        "bertcat = `spacy train` with configs/bertcat.cfg (head truncation, length-grouped batches); "
        "bertcat_random = the same with spaCy's batch_by_sequence; trainer = Trainer defaults; "
        "trainer_grouped = Trainer with group_by_length=True."
    )
    columns = ["system", "train_s", "examples_per_s", "speed_vs_trainer", "accuracy", "macro_f1", "predict_docs_per_s"]
    if args.gpu:
        name += "_gpu" if not args.name else ""
        columns.append("mfu_vs_peak_bf16")
        notes += (
            f" GPU run{' with bf16 autocast' if args.bf16 else ''}; mfu_vs_peak_bf16 = (6 N + 12 L d T) FLOPs per "
            f"real wordpiece x wordpieces/s / {args.peak_tflops} TFLOP/s (N non-embedding parameters, T mean length)."
        )
    recorded = {
        k: str(v) for k, v in vars(args).items() if args.smoke or k not in ("smoke", "smoke_dir", "results_dir")
    }
    write_results(name, command, rows, columns, notes, {"args": recorded}, args.results_dir)


def model_cost(args, train):
    """RETURNS (Tuple[float, float]): Mean real wordpieces per training example, and
    training FLOPs per wordpiece (forward + backward)."""
    from transformers import AutoConfig, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    lengths = [
        len(ids) for ids in tokenizer([t for t, _ in train], truncation=True, max_length=args.max_length)["input_ids"]
    ]
    config = AutoConfig.from_pretrained(args.model)
    d, layers = config.hidden_size, config.num_hidden_layers
    params = layers * (4 * d * d + 2 * d * config.intermediate_size)
    mean = sum(lengths) / len(lengths)
    return mean, 6 * params + 12 * layers * d * mean


if __name__ == "__main__":
    main()
