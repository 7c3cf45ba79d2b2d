"""The components on tiny random models: learning, predicting, bad input."""

import warnings

import pytest
import spacy
import torch

from spacy_bertcat import BertCat, BertCatMultilabel

from ..support import (
    MULTI_DATA,
    SINGLE_DATA,
    assert_same_cats,
    assert_same_weights,
    make_examples,
    make_nlp,
    tiny_config,
)

FACTORIES = [("bertcat", SINGLE_DATA), ("bertcat_multilabel", MULTI_DATA)]


@pytest.mark.parametrize("factory,data", FACTORIES)
def test_overfit_and_roundtrip(tiny_bert, factory, data):
    nlp, examples, optimizer = make_nlp(tiny_bert, factory, data, learn_rate=3e-3)
    first = None
    for _ in range(60):
        losses = nlp.update(examples, sgd=optimizer)
        first = first if first is not None else losses[factory]
    assert losses[factory] < first / 5
    for text, cats in data:
        predicted = nlp(text).cats
        for label, gold in cats.items():
            assert (predicted[label] > 0.5) == (gold == 1.0), (text, predicted)
    nlp2 = spacy.blank("en")
    nlp2.add_pipe(factory, config=tiny_config(tiny_bert))
    nlp2.from_bytes(nlp.to_bytes())
    texts = [text for text, _ in data]
    assert_same_weights(nlp.get_pipe(factory), nlp2.get_pipe(factory))
    assert_same_cats([d.cats for d in nlp.pipe(texts)], [d.cats for d in nlp2.pipe(texts)])
    assert_same_cats([nlp(t).cats for t in texts], [nlp2(t).cats for t in texts])


def test_labels_from_data_sorted_and_head_sized(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert, "bertcat_multilabel", MULTI_DATA)
    pipe = nlp.get_pipe("bertcat_multilabel")
    assert pipe.labels == ("business", "sport", "tech")
    config = pipe.model.shims[0].hf_model.config
    assert config.num_labels == 3
    assert config.id2label == {0: "business", 1: "sport", 2: "tech"}
    assert config.label2id == {"business": 0, "sport": 1, "tech": 2}


@pytest.mark.filterwarnings("ignore:.*BCW001")
def test_exclusive_scores_sum_to_one(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert)
    for doc in nlp.pipe(["a good film", "bad", "x " * 40]):
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-6)


def test_initialize_with_explicit_labels_and_add_label(tiny_bert):
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    assert pipe.add_label("Z") == 1 and pipe.add_label("Z") == 0
    examples = make_examples(nlp, [("good", {"Z": 1.0, "A": 0.0}), ("bad", {"Z": 0.0, "A": 1.0})])
    nlp.initialize(lambda: examples)
    assert pipe.labels == ("Z", "A")  # added first, then the rest from the data, sorted
    assert pipe.add_label("NEW") == 1  # after initialize the head grows (test_contract.py)
    assert pipe.labels == ("Z", "A", "NEW") and pipe.model.shims[0].num_labels == 3
    with pytest.raises(ValueError, match="BC024"):
        BertCat.add_label(pipe, 3)


@pytest.mark.parametrize("factory,empty", [("bertcat", 0.5), ("bertcat_multilabel", 0.0)])
def test_empty_and_whitespace_docs_need_no_model_call(tiny_bert, factory, empty, monkeypatch):
    data = SINGLE_DATA if factory == "bertcat" else [(t, {"POS": c["POS"]}) for t, c in SINGLE_DATA]
    nlp, _, _ = make_nlp(tiny_bert, factory, data)
    pipe = nlp.get_pipe(factory)
    calls = []
    shim = pipe.model.shims[0]
    predict = shim.predict
    monkeypatch.setattr(shim, "predict", lambda batches, counts: calls.append(len(counts)) or predict(batches, counts))
    docs = list(nlp.pipe(["", "   \n\t ", "a good film", ""]))
    assert calls == [1]  # only the one real doc reached the model
    for i in (0, 1, 3):
        assert set(docs[i].cats.values()) == {empty}
    assert docs[2].cats == nlp("a good film").cats


def test_one_hundred_thousand_words(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert, chunking={"@misc": "spacy-bertcat.sliding_window.v1", "max_windows_predict": None})
    text = " ".join(["good film"] * 50_000)
    doc = nlp(text)
    assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)
    assert nlp.get_pipe("bertcat").model.attrs["truncation"].last_batch == [False]


def test_truncation_warning_once(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert)  # head chunking, 30 wordpieces of text
    with pytest.warns(UserWarning, match="BCW001.*sliding_window.v1"):
        nlp("good " * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nlp("bad " * 100)
    chunking = {"@misc": "spacy-bertcat.sliding_window.v1", "max_windows_predict": 2}
    nlp, _, _ = make_nlp(tiny_bert, chunking=chunking)
    with pytest.warns(UserWarning, match="BCW001.*Raise max_windows_predict"):
        nlp("good " * 100)


def test_fewer_than_two_labels(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, [("good", {"POS": 1.0}), ("fine", {"POS": 1.0})])
    with pytest.raises(ValueError, match="BC001"):
        nlp.initialize(lambda: examples)


@pytest.mark.parametrize(
    "cats,code",
    [({"POS": 0.9, "NEG": 0.1}, "BC002"), ({"POS": 1.0, "NEG": 1.0}, "BC003"), ({"POS": 0.0, "NEG": 0.0}, "BC004")],
)
def test_bad_training_labels_rejected_at_initialize(tiny_bert, cats, code):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, SINGLE_DATA + [("odd", cats)])
    with pytest.raises(ValueError, match=code):
        nlp.initialize(lambda: examples)


def test_unseen_label_at_update_is_an_error_and_changes_nothing(tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert)
    before = {k: v.clone() for k, v in nlp.get_pipe("bertcat").model.shims[0].model.state_dict().items()}
    bad = examples + make_examples(nlp, [("new", {"POS": 0.0, "NEG": 0.0, "MAYBE": 1.0})])
    with pytest.raises(ValueError, match="BC005.*MAYBE"):
        nlp.update(bad, sgd=optimizer)
    after = nlp.get_pipe("bertcat").model.shims[0].model.state_dict()
    assert all((before[k] == after[k]).all() for k in before)


def test_unannotated_docs_are_skipped_in_update(tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert)
    unannotated = make_examples(nlp, [("no labels here", {})])
    losses = nlp.update(unannotated, sgd=optimizer)
    assert losses["bertcat"] == 0.0


def test_docs_without_text_are_not_trained_on(tiny_bert):
    """Training agrees with prediction, which answers empty and whitespace-only docs
    without the model: labelled docs without text add nothing to the gradient (and
    initialize says how many there are)."""
    data = SINGLE_DATA + [("", {"POS": 1.0, "NEG": 0.0}), ("  \n ", {"POS": 0.0, "NEG": 1.0})]
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, data)
    with pytest.warns(UserWarning, match="BCW007.*2 annotated"):
        nlp.initialize(lambda: examples)
    shim = nlp.get_pipe("bertcat").model.shims[0]
    nlp.update(examples[-2:], sgd=False)
    assert all(p.grad is None for p in shim.model.parameters())
    twin = spacy.blank("en")
    twin.add_pipe("bertcat", config=tiny_config(tiny_bert))
    twin.from_bytes(nlp.to_bytes())
    nlp.update(examples, sgd=False)
    twin.update(examples[:-2], sgd=False)
    theirs = dict(twin.get_pipe("bertcat").model.shims[0].model.named_parameters())
    for name, p in shim.model.named_parameters():
        torch.testing.assert_close(p.grad, theirs[name].grad)


@pytest.mark.parametrize("name", ["/no/such/model/dir", "no-such-org/no-such-model-xyz"])
def test_unreachable_model_name(name):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(name))
    examples = make_examples(nlp, SINGLE_DATA)
    with pytest.raises(ValueError, match="BC006"):
        nlp.initialize(lambda: examples)


def test_predict_before_initialize(tiny_bert):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    nlp.get_pipe("bertcat").add_label("A")
    nlp.get_pipe("bertcat").add_label("B")
    with pytest.raises(ValueError, match="BC017"):
        nlp("some text")


def test_model_families(tiny_models):
    for model_type, name in tiny_models.items():
        nlp, examples, optimizer = make_nlp(name)
        for _ in range(3):
            nlp.update(examples, sgd=optimizer)
        assert sum(nlp("a good film").cats.values()) == pytest.approx(1.0, abs=1e-6), model_type


def test_special_tokens_come_from_the_tokenizer(tiny_models):
    for model_type, name in tiny_models.items():
        nlp, _, _ = make_nlp(name)
        tokenizer = nlp.get_pipe("bertcat").model.shims[0].tokenizer
        hf = __import__("transformers").AutoTokenizer.from_pretrained(name)
        framed = hf("good film")["input_ids"]
        plain = hf("good film", add_special_tokens=False)["input_ids"]
        assert tokenizer.prefix + plain + tokenizer.suffix == framed, model_type


def test_pipe_and_call_agree_on_mixed_lengths(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert, chunking={"@misc": "spacy-bertcat.sliding_window.v1", "stride": 10})
    texts = ["good", "a terrible movie " * 30, "", "fun " * 7, "great film " * 80]
    assert_same_cats([doc.cats for doc in nlp.pipe(texts, batch_size=3)], [nlp(t).cats for t in texts])


def test_class_weights_setting_resolved_at_initialize(tiny_bert):
    nlp = spacy.blank("en")
    config = tiny_config(tiny_bert)
    config["class_weights"] = "balanced"
    nlp.add_pipe("bertcat", config=config)
    examples = make_examples(nlp, SINGLE_DATA + [("good film", {"POS": 1.0, "NEG": 0.0})])
    nlp.initialize(lambda: examples)
    assert nlp.get_pipe("bertcat").cfg["label_weights"] == pytest.approx([5 / 4, 5 / 6])  # NEG, POS


def test_multilabel_thresholds_property(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert, "bertcat_multilabel", MULTI_DATA)
    pipe = nlp.get_pipe("bertcat_multilabel")
    assert isinstance(pipe, BertCatMultilabel)
    pipe.set_thresholds({"tech": 0.3})
    assert pipe.thresholds == {"business": 0.5, "sport": 0.5, "tech": 0.3}
    with pytest.raises(ValueError, match="BC018"):
        pipe.set_thresholds({"tech": 1.5})


def test_truncation_is_reported_in_training(tiny_bert, caplog):
    data = SINGLE_DATA + [("good film " * 40, {"POS": 1.0, "NEG": 0.0})]
    with caplog.at_level("INFO", logger="spacy.bertcat"):
        nlp, examples, optimizer = make_nlp(tiny_bert, data=data)
        assert "BCW005" in caplog.text and "1 of 5 training documents (20.0%)" in caplog.text
        nlp.update(examples, sgd=optimizer)
        pipe = nlp.get_pipe("bertcat")
        assert pipe.truncation_stats["train_docs"] == 5 and pipe.truncation_stats["train_truncated"] == 1
        caplog.clear()
        nlp.evaluate(examples)  # what spacy train does at each evaluation
        assert "1 of 5 training documents seen so far were truncated" in caplog.text
