"""Write a randomly initialised BERT (bert-base sizes by default) with a given
tokenizer into a directory: for speed runs where real weights can't travel.

    python bench/make_random_bert.py OUT_DIR --tokenizer DIR [--layers 12 --hidden 768]
"""
import argparse
import shutil
from pathlib import Path

import torch
from transformers import AutoModel, BertConfig


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--hidden", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = BertConfig(num_hidden_layers=args.layers, hidden_size=args.hidden, num_attention_heads=args.heads,
                        intermediate_size=4 * args.hidden)
    AutoModel.from_config(config).save_pretrained(args.out)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (args.tokenizer / name).exists():
            shutil.copy(args.tokenizer / name, args.out / name)


if __name__ == "__main__":
    main()
