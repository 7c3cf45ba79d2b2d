"""Reliability: odd input, interrupted saves and training, several processes,
determinism, and fuzzed batches. (Bad labels and damaged files: test_loss.py,
test_pipeline.py, test_serialize.py.)"""

import os
import pickle
import signal
import subprocess
import sys
import time

import numpy
import pytest
import spacy
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.util import registry

from spacy_bertcat.components.bertcat import BertCat
from spacy_bertcat.data import atomic

from ..support import CONFIGS, SINGLE_DATA, assert_same_cats, make_examples, make_nlp, tiny_config, write_corpus

SLIDING = {"@misc": "spacy-bertcat.sliding_window.v1", "stride": 16}


@pytest.fixture(scope="module")
def trained(tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert, chunking=SLIDING)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    return nlp


ODD_TEXTS = [
    "\x00\x01\x02 control \x7f characters\u200b",
    "emoji 😀🎉👍🏽 and flags 🇩🇪",
    "mixed scripts: Ελληνικά, русский, العربية, 中文, हिन्दी, 한국어",
    "\u0301\u0302 combining marks alone",
    "\ufeff\u2028\u2029",
    "a" * 5000,  # one 5000-character "word"
]


def test_odd_characters_get_a_result(trained):
    docs = list(trained.pipe(ODD_TEXTS + ["good film"], batch_size=4))
    assert len(docs) == len(ODD_TEXTS) + 1
    for doc in docs:
        assert set(doc.cats) == {"NEG", "POS"}
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


def test_one_million_characters(trained):
    text = ("the team won the match " * 50_000)[:1_000_000]
    doc = trained(text)
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    assert trained.get_pipe("bertcat").model.attrs["truncation"].last_batch == [False]


def test_max_length_above_the_models_limit(tiny_bert):
    with pytest.warns(UserWarning, match="BCW002"):
        nlp, _, _ = make_nlp(tiny_bert, max_length=4096)  # the tiny model has 128 positions
    assert nlp.get_pipe("bertcat").model.attrs["window"] == 128 - 2
    assert sum(nlp("good " * 1000).cats.values()) == pytest.approx(1.0, abs=1e-5)


def test_tokenizer_that_does_not_fit_the_model(tmp_path, tiny_bert):
    import transformers

    small = transformers.BertConfig(
        vocab_size=20, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
    )
    transformers.AutoModel.from_config(small).save_pretrained(tmp_path / "small")
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(str(tmp_path / "small"), tokenizer_name=tiny_bert))
    with pytest.raises(ValueError, match="BC016"):
        nlp.initialize(lambda: make_examples(nlp, SINGLE_DATA))


@pytest.mark.timeout(180)
def test_n_process_2_matches_one_process(trained):
    # A long document first, so torch has run its OpenMP thread pool in this process
    # before the fork (the workers deadlocked on it until the shim's fork handler).
    trained("good film " * 2000)
    texts = [t for t, _ in SINGLE_DATA] * 6 + ["", "good " * 80]
    one = [doc.cats for doc in trained.pipe(texts)]
    two = [doc.cats for doc in trained.pipe(texts, n_process=2, batch_size=4)]
    assert_same_cats(two, one)


def test_pickle(trained):
    texts = [t for t, _ in SINGLE_DATA]
    copy = pickle.loads(pickle.dumps(trained))
    assert_same_cats([d.cats for d in copy.pipe(texts)], [d.cats for d in trained.pipe(texts)])


def test_nan_loss_is_not_added_to_the_losses(tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert)
    shim = nlp.get_pipe("bertcat").model.shims[0]
    with torch.no_grad():
        shim.hf_model.classifier.bias.fill_(float("nan"))
    with pytest.warns(UserWarning, match="BCW003"):
        losses = nlp.update(examples, sgd=optimizer)
    assert losses["bertcat"] == 0.0 and shim.n_skipped == 1


def test_same_seed_same_weights(tiny_bert, tmp_path):
    """Two CPU trainings with the same seed (dropout, sampled windows, shuffled
    length-grouped batches) end with bit-identical weights."""
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA, copies=4)
    states = []
    for run in range(2):
        from spacy.cli.train import train

        train(
            CONFIGS / "bertcat.cfg",
            tmp_path / f"out{run}",
            overrides={
                "paths.train": corpus,
                "paths.dev": corpus,
                "components.bertcat.model.name": tiny_bert,
                "components.bertcat.model.max_length": 16,
                "components.bertcat.model.hidden_dropout": 0.2,
                "components.bertcat.model.chunking.max_windows": 2,
                "training.max_steps": 6,
                "training.optimizer.learn_rate.total_steps": 6,
                "training.eval_frequency": 3,
                "training.batcher.size": 4,
            },
        )
        states.append(
            spacy.load(tmp_path / f"out{run}" / "model-last").get_pipe("bertcat").model.shims[0].model.state_dict()
        )
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_interrupted_save_keeps_the_previous_model(trained, tmp_path, monkeypatch):
    trained.to_disk(tmp_path / "p")
    expected = [d.cats for d in spacy.load(tmp_path / "p").pipe(["good film"])]

    def crash(*args):
        raise KeyboardInterrupt  # the moment before the new file would replace the old

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        trained.to_disk(tmp_path / "p")
    monkeypatch.undo()
    assert not list((tmp_path / "p" / "bertcat").glob(".*.tmp"))  # no debris
    assert_same_cats([d.cats for d in spacy.load(tmp_path / "p").pipe(["good film"])], expected)


def atomic_save(nlp, path):
    registry.callbacks.get("spacy-bertcat.atomic_save.v1")()(nlp).to_disk(path)


def test_atomic_save_writes_the_same_pipeline(trained, tmp_path):
    atomic_save(trained, tmp_path / "p")
    atomic_save(trained, tmp_path / "p")  # over an existing save
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]  # no debris beside it
    assert trained.to_disk.__self__ is trained  # the caller's nlp is left as it was
    (tmp_path / "plain").mkdir()
    assert (tmp_path / "p").stat().st_mode == (tmp_path / "plain").stat().st_mode  # not private to the user
    (tmp_path / "plain").rmdir()
    docs = list(spacy.load(tmp_path / "p").pipe(["good film", "bad film"]))
    assert_same_cats([d.cats for d in docs], [trained(t).cats for t in ("good film", "bad film")])


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_atomic_save_killed_midway_keeps_the_previous_pipeline(trained, tmp_path, monkeypatch, exchange):
    """spaCy writes the tokenizer, meta.json and config.cfg before the components: a
    save that dies in a component's to_disk must leave none of the new files."""
    atomic_save(trained, tmp_path / "p")
    expected = [d.cats for d in spacy.load(tmp_path / "p").pipe(["good film"])]
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    monkeypatch.setitem(trained.meta, "description", "the second save")

    def die(self, path, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(BertCat, "to_disk", die)
    with pytest.raises(KeyboardInterrupt):
        atomic_save(trained, tmp_path / "p")
    monkeypatch.undo()
    assert "the second save" not in (tmp_path / "p" / "meta.json").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    assert_same_cats([d.cats for d in spacy.load(tmp_path / "p").pipe(["good film"])], expected)
    # The same path, not killed this time, takes the new save.
    if not exchange:
        monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    monkeypatch.setitem(trained.meta, "description", "the second save")
    atomic_save(trained, tmp_path / "p")
    assert "the second save" in (tmp_path / "p" / "meta.json").read_text()


def test_atomic_save_clears_debris_of_a_killed_save(trained, tmp_path):
    debris = tmp_path / ".p.x1y2.tmp"
    (debris / "bertcat").mkdir(parents=True)  # what a killed process leaves
    atomic_save(trained, tmp_path / "p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_killed_training_leaves_a_loadable_model_last(tiny_bert, tmp_path):
    """The shipped config saves through spacy-bertcat.atomic_save.v1: whenever the kill
    lands (mid-save included), model-last holds one whole save."""
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA)
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(CONFIGS / "bertcat.cfg"),
        "--output",
        str(tmp_path / "out"),
        "--paths.train",
        corpus,
        "--paths.dev",
        corpus,
        "--components.bertcat.model.name",
        tiny_bert,
        "--components.bertcat.model.max_length",
        "16",
        "--training.max_steps",
        "100000",
        "--training.optimizer.learn_rate.total_steps",
        "100000",
        "--training.eval_frequency",
        "1",
        "--training.batcher.size",
        "2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    model_last = tmp_path / "out" / "model-last" / "bertcat" / "model"
    deadline = time.time() + 120
    while not model_last.exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)  # a few more saves: the kill lands at any point of the cycle
    process.send_signal(signal.SIGKILL)
    process.wait()
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert set(nlp("good film").cats) == {"NEG", "POS"}


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.lists(TEXT, min_size=0, max_size=12), batch_size=st.integers(1, 8))
def test_fuzz_pipe(trained, texts, batch_size):
    docs = list(trained.pipe(texts, batch_size=batch_size))
    assert len(docs) == len(texts)
    for doc, text in zip(docs, texts):
        assert doc.text == text
        values = numpy.asarray([doc.cats[label] for label in ("NEG", "POS")])
        assert numpy.isfinite(values).all() and values.sum() == pytest.approx(1.0, abs=1e-5)
    if texts:
        assert_same_cats([d.cats for d in docs], [trained(t).cats for t in texts])


def test_concurrent_prediction_from_threads(tiny_bert):
    from concurrent.futures import ThreadPoolExecutor

    chunking = {**SLIDING, "aggregation": "attention"}
    nlp, examples, optimizer = make_nlp(tiny_bert, chunking=chunking)
    torch.nn.init.normal_(nlp.get_pipe("bertcat").model.shims[0].model.aggregation.score.weight)
    texts = [f"good {'film ' * n} bad {'movie ' * (60 - n)}" for n in range(0, 60, 3)]
    expected = [nlp(t).cats for t in texts]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda t: nlp(t).cats, texts * 3))
    assert_same_cats(results, expected * 3)
