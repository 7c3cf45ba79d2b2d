"""Attributions on spaCy tokens: what they explain (the component's own score,
through its windows, aggregation and calibration), where they are stored, and the
defined results and coded errors of bad input."""

import warnings

import numpy
import pytest
import spacy

from spacy_bertcat.decisions.calibration import Calibration
from spacy_bertcat.explain import METHODS, explain, explain_doc, explaining
from spacy_bertcat.explain.attribute import doc_inputs, wordpiece_shares

from ..support import MULTI_DATA, SINGLE_DATA, tiny_config, train_tiny

LONG = "a great film and i love this movie but the ending was boring and bad " * 4
SLIDING = {"@misc": "spacy-bertcat.sliding_window.v1", "stride": 6, "max_windows": 4}
CHUNKINGS = {
    "head": {"@misc": "spacy-bertcat.head.v1"},
    "head_tail": {"@misc": "spacy-bertcat.head_tail.v1", "head": 4},
    "sliding_mean": {**SLIDING, "aggregation": "mean"},
    "sliding_max": {**SLIDING, "aggregation": "max"},
    "sliding_attention": {**SLIDING, "aggregation": "attention"},
}


def trained(name, factory="bertcat", data=SINGLE_DATA, steps=4, **settings):
    return train_tiny(name, factory, data, steps, learn_rate=1e-3, **settings)


@pytest.fixture(scope="module")
def nlp(tiny_bert):
    return trained(tiny_bert)


@pytest.fixture(scope="module")
def multi_nlp(tiny_bert):
    return trained(tiny_bert, "bertcat_multilabel", MULTI_DATA)


def completeness(result):
    return result.score - result.baseline_score - sum(result.attributions)


@pytest.mark.parametrize("method", METHODS)
def test_methods_explain_the_component_score_on_each_token(nlp, method):
    doc = nlp("a great film , i love this movie")
    pipe = nlp.get_pipe("bertcat")
    result = pipe.explain(doc, method=method)
    assert result.label == doc._.bertcat_labels["bertcat"][0]  # default: the predicted label
    assert result.score == pytest.approx(doc.cats[result.label], abs=1e-5)
    values = doc._.bertcat_attributions["bertcat"][result.label]
    assert len(values) == len(doc) and values == result.attributions
    assert any(v != 0 for v in values)
    assert doc._.bertcat_explanations["bertcat"][result.label]["method"] == method
    spans = doc.spans["bertcat_rationale"]
    assert spans and all(s.label_ == result.label for s in spans)
    top = max(range(len(doc)), key=lambda i: values[i])
    assert any(s.start <= top < s.end for s in spans)


def test_integrated_gradients_is_complete(nlp):
    doc = nlp.make_doc("i hate this awful film")
    result = explain(nlp, doc, "NEG", n_steps=50)
    assert abs(result.delta) < 0.02 * abs(result.score - result.baseline_score) + 1e-6
    assert completeness(result) == pytest.approx(result.delta, abs=1e-6)


def test_occlusion_of_a_one_token_doc_is_the_baseline_change(nlp):
    doc = nlp.make_doc("great")
    ig = explain(nlp, doc, "POS", n_steps=4)
    occ = explain(nlp, doc, "POS", method="occlusion")
    assert occ.attributions[0] == pytest.approx(ig.score - ig.baseline_score, abs=1e-5)


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_every_chunking_strategy_is_explained_through_its_windows(tiny_bert, chunking):
    nlp = trained(tiny_bert, steps=0, chunking=CHUNKINGS[chunking], max_length=10)
    doc = nlp(LONG)
    pipe = nlp.get_pipe("bertcat")
    inputs = doc_inputs(pipe, doc.text)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipe.explain(doc, "POS", n_steps=8)
    assert result.score == pytest.approx(doc.cats["POS"], abs=1e-5)
    assert abs(completeness(result)) < 0.05 * abs(result.score - result.baseline_score) + 1e-4
    assert result.n_windows == inputs.n_windows
    unread = "BCW040" in " ".join(str(w.message) for w in caught)
    if chunking.startswith("sliding"):
        assert result.n_windows > 1 and not result.truncated and not unread
        assert result.aggregation == chunking.split("_")[1]
    else:  # one window: the tokens past it were not read, and get 0
        assert result.truncated and unread
        read = set(inputs.positions[inputs.positions >= 0].tolist())
        tokens_read = {t for piece in read for t, _ in wordpiece_shares(inputs.offsets, doc)[piece]}
        unread_tokens = [t.i for t in doc if t.i not in tokens_read]
        assert unread_tokens and all(result.attributions[i] == 0.0 for i in unread_tokens)
        assert any(result.attributions[i] != 0.0 for i in tokens_read)


def test_a_doc_over_max_windows_predict_is_explained_where_read(tiny_bert):
    chunking = {**SLIDING, "max_windows_predict": 2}
    nlp = trained(tiny_bert, steps=0, chunking=chunking, max_length=10)
    doc = nlp(LONG)
    with pytest.warns(UserWarning, match="BCW040"):
        result = nlp.get_pipe("bertcat").explain(doc, "NEG", method="occlusion")
    assert result.n_windows == 2 and result.truncated
    assert result.score == pytest.approx(doc.cats["NEG"], abs=1e-5)
    assert 0.0 in result.attributions


def test_multilabel_explains_each_label_sigmoid(multi_nlp):
    doc = multi_nlp("the bank profit and the team won the match")
    pipe = multi_nlp.get_pipe("bertcat_multilabel")
    top = max(doc.cats, key=doc.cats.get)
    assert pipe.explain(doc).label == top
    for label in pipe.labels:
        result = pipe.explain(doc, label, n_steps=16)
        assert result.score == pytest.approx(doc.cats[label], abs=1e-5)
        assert abs(completeness(result)) < 0.05 * abs(result.score - result.baseline_score) + 1e-4
    assert set(doc._.bertcat_attributions["bertcat_multilabel"]) == set(pipe.labels)


def test_calibrated_score_is_explained(nlp, monkeypatch):
    pipe = nlp.get_pipe("bertcat")
    pipe.set_calibration(Calibration("temperature", list(pipe.labels), temperature=2.5))
    try:
        for differentiable in (True, False):  # False: e.g. an isotonic calibration
            monkeypatch.setattr(Calibration, "differentiable", differentiable, raising=False)
            doc = nlp("excellent and fun")
            raw = doc._.bertcat_uncalibrated_cats["bertcat"]
            assert raw["POS"] != pytest.approx(doc.cats["POS"], abs=1e-4)
            result = pipe.explain(doc, "POS", n_steps=8)
            assert result.calibrated is differentiable
            expected = doc.cats["POS"] if differentiable else raw["POS"]
            assert result.score == pytest.approx(expected, abs=1e-5)
            assert doc._.bertcat_explanations["bertcat"]["POS"]["calibrated"] is differentiable
            occ = pipe.explain(doc, "POS", method="occlusion")  # no gradients: always calibrated
            assert occ.calibrated and occ.score == pytest.approx(doc.cats["POS"], abs=1e-5)
    finally:
        pipe.set_calibration(None)


def test_explaining_block_explains_nlp_pipe(nlp):
    texts = ["a great film", "a terrible movie", ""]
    with explaining(nlp, method="gradient_x_input"):
        docs = list(nlp.pipe(texts))
    for doc in docs:
        (label,) = doc._.bertcat_attributions["bertcat"]
        assert len(doc._.bertcat_attributions["bertcat"][label]) == len(doc)
    assert nlp("a great film")._.bertcat_attributions is None  # only inside the block
    with nlp.get_pipe("bertcat").explaining(label="NEG", method="occlusion"):
        doc = nlp("boring and bad")
    assert list(doc._.bertcat_attributions["bertcat"]) == ["NEG"]


def test_empty_docs_get_defined_results(nlp):
    pipe = nlp.get_pipe("bertcat")
    empty = pipe.explain(nlp(""), "POS")
    assert empty.attributions == [] and empty.score == 0.5
    spaces = nlp.make_doc("   \n ")
    result = pipe.explain(spaces, "NEG", method="occlusion")
    assert result.attributions == [0.0] * len(spaces)
    assert spaces.spans["bertcat_rationale"].__len__() == 0


def test_bad_input_gets_coded_errors(nlp):
    pipe = nlp.get_pipe("bertcat")
    doc = nlp("a great film")
    with pytest.raises(ValueError, match="BC130"):
        pipe.explain(doc, "sport")
    with pytest.raises(ValueError, match="BC131"):
        pipe.explain(doc, method="lime")
    with pytest.raises(ValueError, match="BC135"):
        pipe.explain(doc, n_steps=0)
    with pytest.raises(ValueError, match="BC136"):
        explain(nlp, doc, component="textcat")
    fresh = spacy.blank("en")
    fresh.add_pipe("bertcat", config=tiny_config("unused"))
    with pytest.raises(ValueError, match="BC134"):
        fresh.get_pipe("bertcat").explain(fresh.make_doc("a b"), "X")


def test_missing_captum_names_the_extra(nlp, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "captum", None)
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    with pytest.raises(ImportError, match=r"BC133.*spacy-bertcat\[explain\]"):
        nlp.get_pipe("bertcat").explain(nlp("a great film"))


def test_wordpieces_go_to_the_tokens_they_overlap(nlp):
    doc = nlp.make_doc("filmgoal can't")
    pipe = nlp.get_pipe("bertcat")
    inputs = doc_inputs(pipe, doc.text)
    shares = wordpiece_shares(inputs.offsets, doc)
    first = [s for s, (start, _) in zip(shares, inputs.offsets) if start < 8]
    assert len(first) >= 2 and all(s == [(0, 1.0)] for s in first)  # "filmgoal": several pieces, one token
    # a wordpiece over two tokens is shared by characters
    assert wordpiece_shares(numpy.asarray([[0, 12]]), doc) == [[(0, 8 / 11), (1, 2 / 11), (2, 1 / 11)]]
    result = explain_doc(pipe, doc, "POS", method="gradient_x_input")
    assert len(result.attributions) == len(doc)
