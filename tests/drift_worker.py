"""Run by test_version_drift.py under another environment's Python:
`python -m tests.drift_worker save DIR` trains and saves a tiny pipeline and writes the
predictions it makes; `python -m tests.drift_worker predict DIR` loads and predicts."""
import json
import sys
import tempfile
from pathlib import Path

import spacy
import transformers

from .util import MULTI_DATA, make_examples, make_model_dir, tiny_config

TEXTS = [text for text, _ in MULTI_DATA] + ["", "the bank and the team " * 30]


def save(path: Path) -> None:
    with tempfile.TemporaryDirectory() as model_dir:
        nlp = spacy.blank("en")
        chunking = {"@misc": "spacy-bertcat.sliding_window.v1", "aggregation": "attention", "stride": 16}
        nlp.add_pipe("bertcat_multilabel", config=tiny_config(make_model_dir(Path(model_dir)), chunking=chunking))
        examples = make_examples(nlp, MULTI_DATA)
        optimizer = nlp.initialize(lambda: examples)
        for _ in range(3):
            nlp.update(examples, sgd=optimizer)
        nlp.to_disk(path)
    predict(path, nlp)


def predict(path: Path, nlp=None) -> None:
    nlp = nlp or spacy.load(path)
    cats = [doc.cats for doc in nlp.pipe(TEXTS)]
    (path / f"cats-{transformers.__version__}.json").write_text(json.dumps(cats))
    print(transformers.__version__)


if __name__ == "__main__":
    {"save": save, "predict": predict}[sys.argv[1]](Path(sys.argv[2]))
