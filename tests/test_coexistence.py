"""bertcat beside a spacy-transformers `transformer` in one pipeline (spaCy's
transformer users have spacy-transformers 1.4.0, which pins transformers<4.53.3)."""

import numpy
import pytest
import spacy

from .support import SINGLE_DATA, assert_same_cats, make_examples, tiny_config

spacy_transformers = pytest.importorskip("spacy_transformers")


def test_train_save_load_with_spacy_transformers(tiny_bert, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "transformer",
        config={
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": tiny_bert,
                "tokenizer_config": {"use_fast": True},
                "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 16, "stride": 12},
            }
        },
    )
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, SINGLE_DATA)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 3e-3
    for _ in range(20):
        losses = nlp.update(examples, sgd=optimizer)
    assert losses["bertcat"] < 0.69  # learned something (chance is ln 2)
    texts = [text for text, _ in SINGLE_DATA]
    expected = list(nlp.pipe(texts))
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.pipe_names == ["transformer", "bertcat"]
    docs = list(loaded.pipe(texts))
    assert_same_cats([d.cats for d in docs], [d.cats for d in expected])
    for doc, ref in zip(docs, expected):
        numpy.testing.assert_allclose(doc._.trf_data.tensors[0], ref._.trf_data.tensors[0], rtol=1e-4, atol=1e-5)
