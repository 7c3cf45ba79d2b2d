"""`spacy train` with the shipped configs, on a tiny model and toy corpora."""

import pytest
import spacy
from spacy.cli.evaluate import evaluate
from spacy.cli.train import train

from ..support import CONFIGS, MULTI_DATA, SINGLE_DATA, write_corpus


def overrides(name, corpus, **extra):
    settings = {
        "paths.train": corpus,
        "paths.dev": corpus,
        "components.bertcat.model.name": name,
        "components.bertcat.model.max_length": 32,
        "components.bertcat.model.chunking.stride": 16,
        "training.max_steps": 12,
        "training.optimizer.learn_rate.total_steps": 12,
        "training.eval_frequency": 4,
        "training.optimizer.learn_rate.warmup_steps": 2,
        "training.optimizer.learn_rate.initial_rate": 0.003,
        "training.batcher.size": 4,
    }
    settings.update(extra)
    return settings


@pytest.mark.parametrize(
    "config,data,accumulate",
    [("bertcat.cfg", SINGLE_DATA, 1), ("bertcat_multilabel.cfg", MULTI_DATA, 1), ("bertcat.cfg", SINGLE_DATA, 2)],
)
def test_spacy_train_and_evaluate(tiny_bert, tmp_path, config, data, accumulate):
    corpus = write_corpus(tmp_path / "train.spacy", data)
    train(
        CONFIGS / config,
        tmp_path / "out",
        overrides=overrides(tiny_bert, corpus, **{"training.accumulate_gradient": accumulate}),
    )
    nlp = spacy.load(tmp_path / "out" / "model-best")
    assert nlp.pipe_names == ["bertcat"]
    assert set(nlp("a good film").cats) == {label for _, cats in data for label in cats}
    scores = evaluate(tmp_path / "out" / "model-best", corpus)
    assert scores["cats_score"] is not None and 0.0 <= scores["cats_macro_auc"] <= 1.0
    assert set(scores["cats_f_per_type"]) == set(nlp.get_pipe("bertcat").labels)
    meta = nlp.meta["performance"]
    assert "cats_score" in meta


def test_batch_by_length():
    import random

    from spacy.util import registry

    random.seed(0)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc("x" * n) for n in random.sample(range(1, 1000), 300)]
    batcher = registry.batchers.get("spacy-bertcat.batch_by_length.v1")(size=16, buffer=5)
    batches = list(batcher(docs))
    assert sorted(len(d.text) for b in batches for d in b) == sorted(len(d.text) for d in docs)
    assert sorted(len(b) for b in batches) == [300 % 16] + [16] * (300 // 16)  # one short batch

    def padded(batches):
        return sum(len(b) * max(len(d.text) for d in b) for b in batches)

    random_batches = [docs[i : i + 16] for i in range(0, 300, 16)]
    assert padded(batches) < 0.7 * padded(random_batches)


@pytest.mark.parametrize(
    "text", ["", "a", "hello world ", "  leading and trailing  ", "x\n\ny \t z", "naïve café 😀 end."]
)
def test_text_length_is_the_length_of_the_text_without_building_it(text):
    from spacy.training import Example

    from spacy_bertcat.data.text import text_length

    doc = spacy.blank("en").make_doc(text)
    assert text_length(doc) == len(doc.text) == len(text)
    assert text_length(Example(doc, doc)) == len(text)


# Training configs only: tune_space.cfg is a search space (tests/tune checks it).
TRAINING_CONFIGS = sorted(p for p in CONFIGS.glob("*.cfg") if p.name != "tune_space.cfg")


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_resolve_and_save_atomically(path):
    """Every shipped config (the demo's bbc.cfg included) builds its pipeline and its
    [training] block, and saves through the atomic callback."""
    from spacy.schemas import ConfigSchemaTraining
    from spacy.util import load_config, load_model_from_config, registry

    nlp = load_model_from_config(load_config(path), auto_fill=True, validate=True)
    assert {"bertcat", "bertcat_multilabel"} & {nlp.get_pipe_meta(name).factory for name in nlp.pipe_names}
    training = registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    assert training["before_to_disk"].__qualname__.startswith("create_atomic_save_v1")


def test_initialize_reads_the_training_corpus_once(tiny_bert):
    """spaCy's validate_get_examples reads the whole corpus just to check it; a
    lazily read .spacy corpus would then be read twice at initialize."""
    from ..support import make_examples, tiny_config

    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, SINGLE_DATA)
    reads = []

    def get_examples():
        reads.append(1)
        yield from examples

    nlp.get_pipe("bertcat").initialize(get_examples, nlp=nlp)
    assert len(reads) == 1
    assert nlp.get_pipe("bertcat").labels == ("NEG", "POS")
    with pytest.raises(TypeError, match="E930"):
        nlp.get_pipe("bertcat").initialize(lambda: [], nlp=nlp)


def test_wordpiece_length_counts_with_the_components_tokenizer(tiny_bert):
    """The shipped configs group training batches by the wordpieces the component
    reads (its tokenizer, capped at its window), as Hugging Face's group_by_length
    groups by input ids; without an initialized component, by characters."""
    from spacy.util import registry

    from spacy_bertcat.layers.classifier import get_shim

    from ..support import make_examples, tiny_config

    length = registry.misc.get("spacy-bertcat.wordpiece_length.v1")()
    nlp = spacy.blank("en")
    texts = ["unbelievably", "a cat", "the team won the match " * 20]
    assert [length(nlp.make_doc(t)) for t in texts] == [len(t) for t in texts]
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert, max_length=32))
    nlp.initialize(lambda: make_examples(nlp, SINGLE_DATA))
    tokenizer = get_shim(nlp.get_pipe("bertcat").model).tokenizer
    window = nlp.get_pipe("bertcat").model.attrs["window"]
    expected = [min(len(tokenizer.encode([t])[0]), window) for t in texts]
    assert [length(nlp.make_doc(t)) for t in texts] == expected
    assert expected[-1] == window and expected[1] != len(texts[1])
    other = spacy.blank("en")  # another pipeline's docs: not this component's
    assert length(other.make_doc(texts[1])) == len(texts[1])
