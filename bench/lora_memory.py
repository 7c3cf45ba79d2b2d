"""Peak memory of `spacy train` with full fine-tuning and with LoRA (dropout 0.1 and
0), sampled every 0.2 s from outside the training process (psutil), on the same data
and steps. Where the memory goes on the CPU: the optimizer state LoRA saves against
the copies of each adapted projection's input that peft's LoRA dropout keeps for
the backward pass.

    python bench/lora_memory.py --steps 32
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import finetuning  # noqa: E402
from common import DEFAULT_DATA, command_line, label_set, minilm_path, parse_args, read_jsonl, to_docbin, write_results  # noqa: E402

# --smoke: full and LoRA (the training processes watched from outside, as measured)
# on a few documents, 2 steps.
SMOKE = {"steps": 2, "train": 16, "dev": 4, "dropouts": "0.1"}


def peak_of_training(overrides, output: Path) -> float:
    """RETURNS (float): The training process's peak RSS in MiB (0.2 s samples)."""
    import psutil

    process = subprocess.Popen(
        [sys.executable, "-c", finetuning.TRAIN, str(finetuning.CONFIG), str(output), json.dumps(overrides)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watched, peak = psutil.Process(process.pid), 0.0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss / 2**20)
        except psutil.Error:
            break
        time.sleep(0.2)
    _, err = process.communicate()
    if process.returncode:
        raise RuntimeError(err[-3000:])
    return peak


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=None, help="model directory (default: the packaged MiniLM)")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--dropouts", default="0.1,0", help="LoRA dropouts, one run each after full fine-tuning")
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--dev", type=int, default=64)
    args = parse_args(parser, argv, SMOKE)
    pool = read_jsonl(args.data_dir / "ag_news" / "train.jsonl", limit=args.train + args.dev, seed=0)
    labels = label_set(pool)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = {
            "paths.train": to_docbin(pool[: args.train], labels, tmp / "train.spacy"),
            "paths.dev": to_docbin(pool[args.train :], labels, tmp / "dev.spacy"),
            "components.bertcat.model.name": args.model or minilm_path(),
            "components.bertcat.model.max_length": 64,
            "components.bertcat.model.chunking": {"@misc": "spacy-bertcat.head.v1"},
            "training.max_steps": args.steps,
            "training.eval_frequency": args.steps,
            "training.optimizer.learn_rate.total_steps": args.steps,
            "training.batcher.size": 16,
            "training.logger.progress_bar": None,
        }
        runs = [("full", {})]
        for dropout in args.dropouts.split(","):
            lora = finetuning.lora(args.rank, 1e-3)
            lora["components.bertcat.model.adapter"]["dropout"] = float(dropout)
            runs.append((f"lora_r{args.rank}_dropout{dropout}", lora))
        for name, settings in runs:
            peak = peak_of_training({**base, **settings}, tmp / name)
            rows.append({"strategy": name, "peak_rss_mib": round(peak)})
            print(json.dumps(rows[-1]), flush=True)
    full = rows[0]["peak_rss_mib"]
    for row in rows:
        row["vs_full"] = row["peak_rss_mib"] / full
    command = command_line("lora_memory.py", argv)
    notes = (
        f"MiniLM, AG News, {args.train} training docs, batch 16, max_length 64, {args.steps} steps; peak RSS of the "
        "`spacy train` process sampled every 0.2 s (MiB). LoRA on every projection of the encoder layers, "
        "saved as the adapter alone."
    )
    write_results(
        "lora_memory", command, rows, ["strategy", "peak_rss_mib", "vs_full"], notes=notes, results_dir=args.results_dir
    )


if __name__ == "__main__":
    main()
