"""Write a randomly initialised BERT (bert-base sizes by default) with a given
tokenizer into a directory: for speed runs where real weights can't travel.

    python bench/make_random_bert.py OUT_DIR --tokenizer DIR [--layers 12 --hidden 768]
"""

import argparse
import shutil
from pathlib import Path

import torch
from transformers import AutoModel, BertConfig


def make_random_bert(out: Path, tokenizer: Path, layers: int = 12, hidden: int = 768, heads: int = 12) -> Path:
    """Save a random BERT of these sizes (seed 0) and the tokenizer files of `tokenizer`
    into `out`. RETURNS (Path): out."""
    out, tokenizer = Path(out), Path(tokenizer)
    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=layers, hidden_size=hidden, num_attention_heads=heads, intermediate_size=4 * hidden
    )
    AutoModel.from_config(config).save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (tokenizer / name).exists():
            shutil.copy(tokenizer / name, out / name)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    args = parser.parse_args(argv)
    make_random_bert(args.out, args.tokenizer, args.layers, args.hidden, args.heads)


if __name__ == "__main__":
    main()
