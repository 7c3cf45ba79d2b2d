"""Run in a fresh process, or under another environment's Python (test_version_drift.py):
`python -m tests.drift_worker save DIR` trains and saves a tiny pipeline and writes the
predictions it makes; `python -m tests.drift_worker predict DIR` loads and predicts.
`save-families DIR` / `predict-families DIR` do the same for one pipeline per encoder
family (tests/families.py), in DIR/<model_type>, with all predictions in
DIR/predictions[-VERSION].json."""

import json
import sys
import tempfile
from pathlib import Path

import spacy
import transformers

from .support import MULTI_DATA, make_examples, make_model_dir, tiny_config

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


def save_families(root: Path) -> None:
    from .layers.test_families import FAMILIES, TEXTS, make_family_nlp
    from .support.families import make_family_dir

    predictions = {}
    for family in FAMILIES:
        with tempfile.TemporaryDirectory() as model_dir:
            nlp, examples, optimizer = make_family_nlp(
                family, make_family_dir(Path(model_dir), family.model_type), "sliding_window"
            )
            nlp.update(examples, sgd=optimizer)
            nlp.to_disk(root / family.model_type)
        predictions[family.model_type] = {"cats": [doc.cats for doc in nlp.pipe(TEXTS)]}
    (root / f"predictions-{transformers.__version__}.json").write_text(json.dumps(predictions))
    print(transformers.__version__)


def predict_families(root: Path) -> None:
    import warnings

    from .layers.test_families import TEXTS

    warnings.simplefilter("ignore")
    predictions = {}
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            nlp = spacy.load(path)
            predictions[path.name] = {"cats": [doc.cats for doc in nlp.pipe(TEXTS)]}
        except Exception as e:  # reported per family by the test
            predictions[path.name] = {"error": repr(e)[:2000]}
    (root / "predictions.json").write_text(json.dumps(predictions))
    (root / f"predictions-{transformers.__version__}.json").write_text(json.dumps(predictions))
    print(transformers.__version__)


if __name__ == "__main__":
    commands = {"save": save, "predict": predict, "save-families": save_families, "predict-families": predict_families}
    commands[sys.argv[1]](Path(sys.argv[2]))
