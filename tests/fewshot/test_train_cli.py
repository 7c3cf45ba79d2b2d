"""`spacy train` of the shipped few-shot config as a subprocess (tiny model, a few
steps); the trained pipeline predicts the same in a fresh process."""

import json
import subprocess
import sys

import spacy

from ..support import CONFIGS, SINGLE_DATA, assert_same_cats, write_corpus

TEXTS = ["a great film", "i hate this awful movie", "the bank profit"]
PREDICT = """
import json, sys
import spacy
nlp = spacy.load(sys.argv[1])
print(json.dumps([doc.cats for doc in nlp.pipe(json.loads(sys.argv[2]))]))
"""


def test_spacy_train_with_the_fewshot_config(tiny_bert, tmp_path):
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA, copies=1)
    overrides = {
        "paths.train": corpus,
        "paths.dev": corpus,
        "components.bertcat.model.name": tiny_bert,
        "components.bertcat.model.max_length": 32,
        "components.bertcat.warmup.pairs_per_example": 4,
        "components.bertcat.warmup.batch_size": 4,
        "training.max_epochs": 2,
        "training.eval_frequency": 1,
        "training.batcher.size": 4,
        "training.logger.progress_bar": None,
    }
    args = [f"--{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in overrides.items()]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(CONFIGS / "bertcat_fewshot.cfg"),
            "--output",
            str(tmp_path / "out"),
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    path = tmp_path / "out" / "model-last"
    nlp = spacy.load(path)
    pipe = nlp.get_pipe("bertcat")
    assert pipe.model.shims[0].model.pooling == "normalized_mean"
    assert nlp.config["components"]["bertcat"]["warmup"]["@misc"] == "spacy-bertcat.contrastive_warmup.v1"
    cats = [doc.cats for doc in nlp.pipe(TEXTS)]
    fresh = subprocess.run(
        [sys.executable, "-c", PREDICT, str(path), json.dumps(TEXTS)], capture_output=True, text=True, check=True
    )
    assert_same_cats(cats, json.loads(fresh.stdout.strip().splitlines()[-1]))
