"""spaCy's text-classifier tests (spacy/tests/pipeline/test_textcat.py, spaCy 3.8)
adapted to bertcat and bertcat_multilabel: where spaCy runs a test on textcat and
textcat_multilabel, it runs here on both factories.

What became of each of spaCy's tests:

Adapted
  test_issue4030               -> test_issue4030_empty_doc (bertcat's scores differ: see below)
  test_issue5551               -> test_issue5551_fixed_seed_same_results
  test_issue6908               -> test_issue6908_labels_from_the_initialize_config
  test_issue9904               -> test_issue9904_get_loss_batch_size, and
                                  test_get_loss_on_predict_output (issue 24 fix)
  test_label_types, test_invalid_label_value, test_no_label, test_implicit_label,
  test_error_with_multi_labels, test_initialize_examples
  test_resize, test_resize_same_results (issue 24 fix)
  test_overfitting_IO, test_overfitting_IO_multi -> test_overfitting_IO[both factories]
  test_positive_class          -> test_positive_class, test_positive_class_multilabel
                                  (issue 24 fix), test_multilabel_initialize_with_labels
  test_positive_class_not_present, test_positive_class_not_binary
  test_textcat_evaluation, test_textcat_eval_missing: spaCy calls Scorer.score_cats;
                                  here the component's own scorer scores the same examples
  test_textcat_loss            (issue 24 fix; expected values of bertcat's cross-entropy)
  test_textcat_multilabel_threshold, test_textcat_multi_threshold (bertcat_multilabel),
                                  and test_exclusive_threshold_is_not_used (bertcat)
  test_textcat_legacy_scorers

Not applicable
  test_issue3611               TextCatBOW's n-grams longer than a doc (no n-gram features here)
  test_issue7019               printing of None scores by `spacy evaluate` (no component)
  test_no_resize               the old textcat architectures that cannot resize
  test_tok2vec_lazy_init       a lazily initialized tok2vec layer (no tok2vec here)
  test_textcat_configs         textcat's architectures (BOW, CNN, Ensemble, Reduce, ...)
  test_simple_train, test_textcat_learns_multilabel: skipped in spaCy itself ("flakey");
                               that a classifier learns is test_overfitting_IO here

Deliberate differences (docs/reference/textcat-differences.md), as adapted assertions
  empty docs: bertcat's scores are uniform (they sum to 1), textcat's are 0.0
  labels found in the data are sorted (textcat keeps the order they are first seen in)
  get_loss: cross-entropy on the logits behind the scores (textcat: mean squared error)
  `spacy debug data` checks text classifiers by factory name: test_debug_data_...

Beyond spaCy's tests, the contract its code and docs state
  test_evaluate_has_no_side_effects (issue 24 fix for bertcat_multilabel)
  test_exclusive_doc_without_own_positive_is_skipped (issue 24 fix)
  test_find_threshold: `spacy find-threshold` on a saved pipeline
"""

import copy
import importlib
import math

import numpy
import pytest
import spacy
from numpy.testing import assert_almost_equal
from spacy import util
from spacy.lang.en import English
from spacy.language import Language
from spacy.tokens import DocBin
from spacy.training import Example
from spacy.training.initialize import init_nlp
from thinc.api import fix_random_seed

from ..support import SINGLE_DATA, assert_same_cats, make_examples, tiny_config
from .shared import (
    FACTORIES,
    LABELS,
    LEARN_RATE,
)

TRAIN_DATA_SINGLE_LABEL = [
    ("I'm so happy.", {"cats": {"POSITIVE": 1.0, "NEGATIVE": 0.0}}),
    ("I'm so angry", {"cats": {"POSITIVE": 0.0, "NEGATIVE": 1.0}}),
]

TRAIN_DATA_MULTI_LABEL = [
    ("I'm angry and confused", {"cats": {"ANGRY": 1.0, "CONFUSED": 1.0, "HAPPY": 0.0}}),
    ("I'm confused but happy", {"cats": {"ANGRY": 0.0, "CONFUSED": 1.0, "HAPPY": 1.0}}),
]
TRAIN_DATA = {"bertcat": TRAIN_DATA_SINGLE_LABEL, "bertcat_multilabel": TRAIN_DATA_MULTI_LABEL}


def make_get_examples(nlp, data):
    train_examples = [Example.from_dict(nlp.make_doc(text), annotations) for text, annotations in data]

    def get_examples():
        return train_examples

    return get_examples


def add_component(nlp, factory, name, **settings):
    config = tiny_config(name)
    config.update(settings)
    return nlp.add_pipe(factory, config=config)


@pytest.mark.parametrize("factory", FACTORIES)
def test_issue4030_empty_doc(shared, factory):
    """An empty doc gets a defined result without running the model. textcat gives
    0.0 for every label (when no doc of the batch has tokens); so does
    bertcat_multilabel. Deliberate difference: bertcat gives every class 1/n, so that
    its scores sum to 1 like every other exclusive prediction, and decides no class."""
    nlp = shared(factory)
    doc = nlp("")
    labels = LABELS[factory]
    expected = 1.0 / len(labels) if factory == "bertcat" else 0.0
    assert doc.cats == {label: pytest.approx(expected) for label in labels}
    assert doc._.bertcat_labels[factory] == []


@pytest.mark.parametrize("factory", FACTORIES)
def test_issue5551_fixed_seed_same_results(tiny_bert, factory):
    """After fixing the random seed, the results of the pipeline are identical."""
    text = "Once hot, form ping-pong-ball-sized balls of the mixture, each weighing roughly 25 g."
    annots = {"cats": {"Labe1": 1.0, "Label2": 0.0, "Label3": 0.0}}
    results = []
    for _ in range(3):
        fix_random_seed(0)
        nlp = English()
        pipe = add_component(nlp, factory, tiny_bert)
        for label in annots["cats"]:
            pipe.add_label(label)
        nlp.initialize()
        doc = nlp.make_doc(text)
        nlp.update([Example.from_dict(doc, annots)])
        results.append(pipe.model.ops.to_numpy(pipe.model.predict([doc]))[0])
    assert len(results) == 3
    assert_almost_equal(results[0], results[1], decimal=5)
    assert_almost_equal(results[0], results[2], decimal=5)


@pytest.mark.parametrize("factory", FACTORIES)
def test_issue6908_labels_from_the_initialize_config(tiny_bert, tmp_path, factory):
    """Initializing with labels in a list, from [initialize.components]."""
    nlp = spacy.blank("en")
    doc = nlp.make_doc("Some text")
    doc.cats = {"label1": 0, "label2": 1}
    DocBin(docs=[doc]).to_disk(tmp_path / "train.spacy")
    add_component(nlp, factory, tiny_bert)
    config = util.load_config_from_str(nlp.config.to_str())
    config["paths"]["train"] = str(tmp_path / "train.spacy")
    config["paths"]["dev"] = str(tmp_path / "train.spacy")
    config["initialize"]["components"][factory] = {"labels": ["label1", "label2"]}
    nlp = init_nlp(config)
    assert nlp.get_pipe(factory).labels == ("label1", "label2")


@pytest.mark.parametrize("factory", FACTORIES)
def test_issue9904_get_loss_batch_size(trained, shared, factory):
    """The loss is a mean: the same examples twice give the same loss. (spaCy's test
    pairs `examples * 2` with `scores.repeat(2, axis=0)`, which puts rows beside other
    examples; harmless for an untrained textcat, wrong for a trained model, so the
    scores are repeated in the order of the examples here.)"""
    nlp = shared(factory)
    pipe = nlp.get_pipe(factory)
    examples = trained(factory).examples(nlp)
    scores = pipe.predict([eg.predicted for eg in examples])
    loss = pipe.get_loss(examples, scores)[0]
    loss_double_bs = pipe.get_loss(examples * 2, numpy.concatenate([scores, scores]))[0]
    assert loss == pytest.approx(loss_double_bs, rel=1e-5)


@pytest.mark.parametrize("factory", FACTORIES)
def test_get_loss_on_predict_output(trained, factory):
    """get_loss takes what predict returns (spaCy's update passes the model's output,
    which is what predict returns): its loss is the one update reports for the same
    examples (no dropout in the tiny config)."""
    model = trained(factory)
    nlp = model.load()
    pipe = nlp.get_pipe(factory)
    examples = model.examples(nlp)
    scores = pipe.predict([eg.predicted for eg in examples])
    loss, d_scores = pipe.get_loss(examples, scores)
    assert d_scores.shape == scores.shape
    assert loss == pytest.approx(pipe.update(examples)[factory], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("factory", FACTORIES)
def test_label_types(tiny_bert, factory):
    nlp = Language()
    textcat = add_component(nlp, factory, tiny_bert)
    textcat.add_label("answer")
    with pytest.raises(ValueError, match="BC024"):
        textcat.add_label(9)
    # exclusive classes need at least two labels (textcat: E867)
    if factory == "bertcat":
        with pytest.raises(ValueError, match="BC001"):
            nlp.initialize()
    else:
        nlp.initialize()


@pytest.mark.parametrize("factory", FACTORIES)
def test_invalid_label_value(tiny_bert, factory):
    nlp = Language()
    add_component(nlp, factory, tiny_bert)
    example_getter = make_get_examples(nlp, TRAIN_DATA[factory])

    def invalid_examples():
        # make one example with an invalid score
        examples = example_getter()
        ref = examples[0].reference
        key = list(ref.cats.keys())[0]
        ref.cats[key] = 2.0
        return examples

    with pytest.raises(ValueError, match="BC002"):
        nlp.initialize(get_examples=invalid_examples)


@pytest.mark.parametrize("factory", FACTORIES)
def test_no_label(tiny_bert, factory):
    nlp = Language()
    add_component(nlp, factory, tiny_bert)
    with pytest.raises(ValueError, match="BC025"):
        nlp.initialize()


@pytest.mark.parametrize("factory", FACTORIES)
def test_implicit_label(tiny_bert, factory):
    """The labels come from the data. Deliberate difference: sorted (textcat keeps
    the order in which they are first seen)."""
    nlp = Language()
    pipe = add_component(nlp, factory, tiny_bert)
    nlp.initialize(get_examples=make_get_examples(nlp, TRAIN_DATA[factory]))
    found = {label for _, annotations in TRAIN_DATA[factory] for label in annotations["cats"]}
    assert pipe.labels == tuple(sorted(found))


@pytest.mark.parametrize("factory", FACTORIES)
def test_resize(tiny_bert, factory):
    """The classifier is resizable: a label added after initialize gets an output."""
    nlp = Language()
    textcat = add_component(nlp, factory, tiny_bert)
    textcat.add_label("POSITIVE")
    textcat.add_label("NEGATIVE")
    nlp.initialize()
    assert len(nlp("a text").cats) == 2
    assert textcat.add_label("NEUTRAL") == 1
    assert textcat.labels == ("POSITIVE", "NEGATIVE", "NEUTRAL")
    assert set(nlp("a text").cats) == {"POSITIVE", "NEGATIVE", "NEUTRAL"}
    # the head has three outputs: its weights load into a component with three labels
    copy_nlp = Language()
    add_component(copy_nlp, factory, tiny_bert).from_bytes(textcat.to_bytes())
    assert set(copy_nlp("a text").cats) == {"POSITIVE", "NEGATIVE", "NEUTRAL"}


@pytest.mark.parametrize("factory", FACTORIES)
def test_resize_same_results(trained, factory):
    """A resized classifier still gives the old labels the same scores. Deliberate
    difference for `bertcat` (see docs/reference/textcat-differences.md): the old
    labels keep their *logits* (to float rounding); their softmax probabilities
    change because the new class, which starts like a fresh head row rather than
    with textcat's -5000 bias, takes part of the probability mass."""
    model = trained(factory)
    nlp = model.load()
    textcat = nlp.get_pipe(factory)
    train_examples = model.examples(nlp)
    optimizer = nlp.create_optimizer()
    optimizer.learn_rate = LEARN_RATE[factory]
    test_text = model.texts[0]
    before = dict(nlp(test_text).cats)
    logits_before = textcat.logits([nlp.make_doc(test_text)])[0][0]
    assert len(before) == len(LABELS[factory])
    # test the trained model again after resizing
    textcat.add_label("NEUTRAL")
    doc = nlp(test_text)
    assert len(doc.cats) == len(before) + 1
    logits_after = textcat.logits([nlp.make_doc(test_text)])[0][0]
    assert logits_after[: len(before)] == pytest.approx(logits_before, rel=1e-5, abs=1e-6)
    if factory == "bertcat_multilabel":  # independent labels: the scores themselves stay
        for label, score in before.items():
            assert doc.cats[label] == pytest.approx(score, rel=1e-5, abs=1e-6)
    assert doc.cats["NEUTRAL"] <= 1
    for _ in range(5):
        nlp.update(train_examples, sgd=optimizer)
    # test the trained model again after training further with new label
    doc = nlp(test_text)
    assert len(doc.cats) == len(before) + 1
    assert all(doc.cats[label] != score for label, score in before.items())
    assert all(score <= 1 for score in doc.cats.values())


def test_error_with_multi_labels(tiny_bert):
    nlp = Language()
    add_component(nlp, "bertcat", tiny_bert)
    train_examples = make_get_examples(nlp, TRAIN_DATA_MULTI_LABEL)()
    with pytest.raises(ValueError, match="BC003"):
        nlp.initialize(get_examples=lambda: train_examples)


@pytest.mark.parametrize("factory", FACTORIES)
def test_initialize_examples(tiny_bert, factory):
    nlp = Language()
    textcat = add_component(nlp, factory, tiny_bert)
    for _, annotations in TRAIN_DATA[factory]:
        for label in annotations["cats"]:
            textcat.add_label(label)
    # you shouldn't really call this more than once, but for testing it should be fine
    nlp.initialize()
    get_examples = make_get_examples(nlp, TRAIN_DATA[factory])
    nlp.initialize(get_examples=get_examples)
    with pytest.raises(TypeError):
        nlp.initialize(get_examples=lambda: None)
    with pytest.raises(TypeError):
        nlp.initialize(get_examples=get_examples())


@pytest.mark.parametrize("factory", FACTORIES)
def test_overfitting_IO(trained, tmp_path, factory):
    """Quickly overfit the component (the shared training run: DATA[factory]),
    then check predictions after saving and loading, scoring, and that nlp.pipe and
    nlp() agree."""
    model = trained(factory)
    assert model.losses[-1] < 0.01
    assert model.losses[-1] < model.losses[0] / 20
    nlp = model.load()  # nlp.evaluate below must not see a shared pipeline (test_evaluate_...)
    textcat = nlp.get_pipe(factory)
    assert textcat.labels == LABELS[factory]

    # test the trained model
    cats = [nlp(text).cats for text in model.texts]
    for (_, gold), predicted in zip(model.data, cats):
        assert set(predicted) == set(LABELS[factory])
        for label, value in gold.items():
            assert (predicted[label] > 0.9) if value == 1.0 else (predicted[label] < 0.1), (label, predicted)
        if factory == "bertcat":
            assert sum(predicted.values()) == pytest.approx(1.0, 0.001)

    # Also test the results are still the same after IO
    nlp.to_disk(tmp_path)
    nlp2 = util.load_model_from_path(tmp_path)
    assert_same_cats([nlp2(text).cats for text in model.texts], cats)
    nlp3 = spacy.load(tmp_path)
    assert_same_cats([doc.cats for doc in nlp3.pipe(model.texts)], cats)

    # Test scoring
    scores = nlp.evaluate(model.examples(nlp))
    assert scores["cats_micro_f"] == 1.0
    assert scores["cats_macro_f"] == 1.0
    assert scores["cats_macro_auc"] == 1.0
    assert scores["cats_score"] == 1.0
    assert "cats_score_desc" in scores

    # Make sure that running pipe twice, or comparing to call, always amounts to the same predictions
    texts = ["Just a sentence.", "I like green eggs.", "I am happy.", "I eat ham."]
    batch_cats_1 = [doc.cats for doc in nlp.pipe(texts)]
    batch_cats_2 = [doc.cats for doc in nlp.pipe(texts)]
    no_batch_cats = [doc.cats for doc in [nlp(text) for text in texts]]
    for cats_1, cats_2 in zip(batch_cats_1, batch_cats_2):
        for cat in cats_1:
            assert_almost_equal(cats_1[cat], cats_2[cat], decimal=5)
    for cats_1, cats_2 in zip(batch_cats_1, no_batch_cats):
        for cat in cats_1:
            assert_almost_equal(cats_1[cat], cats_2[cat], decimal=5)


def test_positive_class(tiny_bert):
    nlp = English()
    textcat = add_component(nlp, "bertcat", tiny_bert)
    get_examples = make_get_examples(nlp, TRAIN_DATA_SINGLE_LABEL)
    textcat.initialize(get_examples, labels=["POS", "NEG"], positive_label="POS")
    assert textcat.labels == ("POS", "NEG")
    assert textcat.cfg["positive_label"] == "POS"


def test_positive_class_multilabel(tiny_bert):
    """The multi-label component takes no positive_label (textcat_multilabel's
    initialize has no such argument: a TypeError)."""
    nlp = English()
    textcat_multilabel = add_component(nlp, "bertcat_multilabel", tiny_bert)
    get_examples = make_get_examples(nlp, TRAIN_DATA_MULTI_LABEL)
    with pytest.raises(TypeError):
        textcat_multilabel.initialize(get_examples, labels=["POS", "NEG"], positive_label="POS")


def test_multilabel_initialize_with_labels(tiny_bert):
    """The rest of spaCy's test_positive_class. Adapted: spaCy asserts that
    textcat_multilabel's cfg has no "positive_label"; bertcat_multilabel's cfg may
    hold it as None (the scorer ignores it for multi-label scores)."""
    nlp = English()
    textcat_multilabel = add_component(nlp, "bertcat_multilabel", tiny_bert)
    get_examples = make_get_examples(nlp, TRAIN_DATA_MULTI_LABEL)
    textcat_multilabel.initialize(get_examples, labels=["FICTION", "DRAMA"])
    assert textcat_multilabel.labels == ("FICTION", "DRAMA")
    assert textcat_multilabel.cfg.get("positive_label") is None


def test_positive_class_not_present(tiny_bert):
    nlp = English()
    textcat = add_component(nlp, "bertcat", tiny_bert)
    get_examples = make_get_examples(nlp, TRAIN_DATA_SINGLE_LABEL)
    with pytest.raises(ValueError, match="BC023"):
        textcat.initialize(get_examples, labels=["SOME", "THING"], positive_label="POS")


def test_positive_class_not_binary(tiny_bert):
    nlp = English()
    textcat = add_component(nlp, "bertcat", tiny_bert)
    get_examples = make_get_examples(nlp, TRAIN_DATA_MULTI_LABEL)
    with pytest.raises(ValueError, match="BC023"):
        textcat.initialize(get_examples, labels=["SOME", "THING", "POS"], positive_label="POS")


def test_textcat_evaluation(tiny_bert):
    """spaCy's numbers for multi-label scoring, from bertcat_multilabel's scorer."""
    train_examples = []
    nlp = English()
    pipe = add_component(nlp, "bertcat_multilabel", tiny_bert)
    for label in ["winter", "summer", "spring", "autumn"]:
        pipe.add_label(label)
    ref1 = nlp.make_doc("one")
    ref1.cats = {"winter": 1.0, "summer": 1.0, "spring": 1.0, "autumn": 1.0}
    pred1 = nlp.make_doc("one")
    pred1.cats = {"winter": 1.0, "summer": 0.0, "spring": 1.0, "autumn": 1.0}
    train_examples.append(Example(pred1, ref1))

    ref2 = nlp.make_doc("two")
    ref2.cats = {"winter": 0.0, "summer": 0.0, "spring": 1.0, "autumn": 1.0}
    pred2 = nlp.make_doc("two")
    pred2.cats = {"winter": 1.0, "summer": 0.0, "spring": 0.0, "autumn": 1.0}
    train_examples.append(Example(pred2, ref2))

    scores = pipe.score(train_examples)
    assert scores["cats_f_per_type"]["winter"]["p"] == 1 / 2
    assert scores["cats_f_per_type"]["winter"]["r"] == 1 / 1
    assert scores["cats_f_per_type"]["summer"]["p"] == 0
    assert scores["cats_f_per_type"]["summer"]["r"] == 0 / 1
    assert scores["cats_f_per_type"]["spring"]["p"] == 1 / 1
    assert scores["cats_f_per_type"]["spring"]["r"] == 1 / 2
    assert scores["cats_f_per_type"]["autumn"]["p"] == 2 / 2
    assert scores["cats_f_per_type"]["autumn"]["r"] == 2 / 2

    assert scores["cats_micro_p"] == 4 / 5
    assert scores["cats_micro_r"] == 4 / 6


@pytest.mark.parametrize("factory,spring_p", [("bertcat_multilabel", 1 / 1), ("bertcat", 1 / 2)])
def test_textcat_eval_missing(tiny_bert, factory, spring_p):
    """
    multi-label: the missing 'spring' in gold_doc_2 doesn't incur a penalty
    exclusive labels: the missing 'spring' in gold_doc_2 is interpreted as 0.0"""
    train_examples = []
    nlp = English()
    pipe = add_component(nlp, factory, tiny_bert)
    for label in ["winter", "summer", "spring", "autumn"]:
        pipe.add_label(label)

    ref1 = nlp.make_doc("one")
    ref1.cats = {"winter": 0.0, "summer": 0.0, "autumn": 0.0, "spring": 1.0}
    pred1 = nlp.make_doc("one")
    pred1.cats = {"winter": 0.0, "summer": 0.0, "autumn": 0.0, "spring": 1.0}
    train_examples.append(Example(ref1, pred1))

    ref2 = nlp.make_doc("two")
    # reference 'spring' is missing, pred 'spring' is 1
    ref2.cats = {"winter": 0.0, "summer": 0.0, "autumn": 1.0}
    pred2 = nlp.make_doc("two")
    pred2.cats = {"winter": 0.0, "summer": 0.0, "autumn": 0.0, "spring": 1.0}
    train_examples.append(Example(pred2, ref2))

    scores = pipe.score(train_examples)
    assert scores["cats_f_per_type"]["spring"]["p"] == spring_p
    assert scores["cats_f_per_type"]["spring"]["r"] == 1 / 1


# textcat's loss is the mean squared error of its scores (expected: 0 multi-label,
# 0.125 exclusive). bertcat's get_loss takes the same scores (what predict returns)
# and computes its loss on the logits behind them: cross-entropy. Exclusive: doc 1's
# 'spring' has all the probability (loss ~0); doc 2's missing 'spring' is an implied
# 0, so its target is 'autumn', which has half the probability: ln 2; the mean over
# the docs: ln 2 / 2. Multi-label: every observed score equals its gold value
# (loss ~0), and the missing 'spring' of doc 2 adds nothing.
LOSSES = [("bertcat_multilabel", 0.0), ("bertcat", math.log(2) / 2)]


@pytest.mark.parametrize("factory,expected_loss", LOSSES)
def test_textcat_loss(tiny_bert, factory, expected_loss):
    """
    multi-label: the missing 'spring' in gold_doc_2 doesn't incur an increase in loss
    exclusive labels: the missing 'spring' in gold_doc_2 is interpreted as 0.0 and adds to the loss
    """
    train_examples = []
    nlp = English()

    doc1 = nlp("one")
    cats1 = {"winter": 0.0, "summer": 0.0, "autumn": 0.0, "spring": 1.0}
    train_examples.append(Example.from_dict(doc1, {"cats": cats1}))

    doc2 = nlp("two")
    cats2 = {"winter": 0.0, "summer": 0.0, "autumn": 1.0}
    train_examples.append(Example.from_dict(doc2, {"cats": cats2}))

    textcat = add_component(nlp, factory, tiny_bert)
    # spaCy's label order (textcat keeps the data's order; bertcat would sort them)
    textcat.initialize(lambda: train_examples, labels=["winter", "summer", "autumn", "spring"])
    scores = textcat.model.ops.asarray([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]], dtype="f")  # type: ignore
    loss, d_scores = textcat.get_loss(train_examples, scores)
    assert loss == pytest.approx(expected_loss, abs=1e-5)
    assert d_scores.shape == scores.shape
    # doc 2's missing 'spring' scored 0 instead: the exclusive loss falls to ~0 (an
    # implied 0), the multi-label loss stays as it is (a missing value)
    lower = scores.copy()
    lower[1, 3] = 0.0
    lower_loss = textcat.get_loss(train_examples, lower)[0]
    if factory == "bertcat":
        assert lower_loss == pytest.approx(0.0, abs=1e-5)
    else:
        assert lower_loss == pytest.approx(loss, abs=1e-6)


@pytest.fixture(scope="module")
def untrained_multilabel(tiny_bert):
    """bertcat_multilabel initialized on TRAIN_DATA_SINGLE_LABEL, not trained."""
    nlp = English()
    add_component(nlp, "bertcat_multilabel", tiny_bert)
    train_examples = make_get_examples(nlp, TRAIN_DATA_SINGLE_LABEL)()
    nlp.initialize(get_examples=lambda: train_examples)
    return nlp, train_examples


def test_textcat_multilabel_threshold(untrained_multilabel):
    # Ensure the scorer can be called with a different threshold
    nlp, train_examples = untrained_multilabel

    # score the model (it's not actually trained but that doesn't matter)
    scores = nlp.evaluate(train_examples)
    assert 0 <= scores["cats_score"] <= 1

    scores = nlp.evaluate(train_examples, scorer_cfg={"threshold": 1.0})
    assert scores["cats_f_per_type"]["POSITIVE"]["r"] == 0

    scores = nlp.evaluate(train_examples, scorer_cfg={"threshold": 0})
    macro_f = scores["cats_score"]
    assert scores["cats_f_per_type"]["POSITIVE"]["r"] == 1.0

    scores = nlp.evaluate(train_examples, scorer_cfg={"threshold": 0, "positive_label": "POSITIVE"})
    pos_f = scores["cats_score"]
    assert scores["cats_f_per_type"]["POSITIVE"]["r"] == 1.0
    assert pos_f >= macro_f


def test_textcat_multi_threshold(untrained_multilabel):
    # Ensure the scorer can be called with a different threshold
    nlp, train_examples = untrained_multilabel

    # score the model (it's not actually trained but that doesn't matter)
    scores = nlp.evaluate(train_examples)
    assert 0 <= scores["cats_score"] <= 1

    scores = nlp.evaluate(train_examples, scorer_cfg={"threshold": 1.0})
    assert scores["cats_f_per_type"]["POSITIVE"]["r"] == 0

    scores = nlp.evaluate(train_examples, scorer_cfg={"threshold": 0})
    assert scores["cats_f_per_type"]["POSITIVE"]["r"] == 1.0


def test_exclusive_threshold_is_not_used(trained, shared):
    """As for textcat ("threshold: Unused"; spaCy's scorer scores exclusive classes
    at threshold 0.0): the decision is the top class whatever the threshold."""
    nlp = shared("bertcat")
    examples = trained("bertcat").examples(nlp)
    at_zero = nlp.evaluate(examples, scorer_cfg={"threshold": 0.0})
    at_one = nlp.evaluate(examples, scorer_cfg={"threshold": 1.0})
    keys = ["cats_score", "cats_micro_f", "cats_macro_f", "cats_f_per_type", "cats_macro_auc"]
    assert {k: at_zero[k] for k in keys} == {k: at_one[k] for k in keys}


@pytest.mark.parametrize(
    "factory,scorer",
    [("bertcat", "spacy.textcat_scorer.v1"), ("bertcat_multilabel", "spacy.textcat_multilabel_scorer.v1")],
)
def test_textcat_legacy_scorers(tiny_bert, factory, scorer):
    """Check that legacy scorers are registered and produce the expected score
    keys."""
    nlp = English()
    add_component(nlp, factory, tiny_bert, scorer={"@scorers": scorer})
    train_examples = make_get_examples(nlp, TRAIN_DATA_SINGLE_LABEL)()
    nlp.initialize(get_examples=lambda: train_examples)

    # score the model (it's not actually trained but that doesn't matter)
    scores = nlp.evaluate(train_examples)
    assert 0 <= scores["cats_score"] <= 1


@pytest.mark.parametrize("factory", FACTORIES)
def test_evaluate_has_no_side_effects(trained, factory):
    """nlp.evaluate scores the pipeline and changes nothing in it (spaCy's scorers
    read the components' settings), also right after training updates, as in
    `spacy train`: the settings, thresholds and decisions stay as they were."""
    model = trained(factory)
    nlp = model.load()
    pipe = nlp.get_pipe(factory)
    examples = model.examples(nlp)
    nlp.update(examples, sgd=nlp.create_optimizer())
    cfg = copy.deepcopy(pipe.cfg)
    thresholds = dict(pipe.thresholds)
    decisions = [doc._.bertcat_labels[factory] for doc in nlp.pipe(model.texts)]
    nlp.evaluate(examples)
    assert pipe.cfg == cfg
    assert pipe.thresholds == thresholds
    assert [doc._.bertcat_labels[factory] for doc in nlp.pipe(model.texts)] == decisions


def test_exclusive_doc_without_own_positive_is_skipped(tiny_bert):
    """textcat takes any doc whose values are 0 or 1 with at most one positive. A doc
    whose positive label is not the component's (here a label left out of
    `labels` at initialize, as another classifier's) has no annotation of the
    component's own: it is skipped with a warning, not refused (BC004), and adds
    nothing to the loss."""
    nlp = English()
    pipe = add_component(nlp, "bertcat", tiny_bert)
    nlp.config["initialize"]["components"]["bertcat"] = {"labels": ["NEG", "POS"]}
    other = [("the market and the bank", {"POS": 0.0, "NEG": 0.0, "OTHER": 1.0})]
    examples = make_examples(nlp, SINGLE_DATA + other)
    with pytest.warns(UserWarning):
        nlp.initialize(lambda: examples)
        loss_all = pipe.update(examples)["bertcat"]
    assert pipe.labels == ("NEG", "POS")
    assert loss_all == pytest.approx(pipe.update(examples[:-1])["bertcat"], rel=1e-5)


@pytest.mark.parametrize("factory", FACTORIES)
def test_find_threshold(trained, shared, tmp_path, factory):
    """`spacy find-threshold` works on a saved pipeline: it varies the component's
    `threshold`. Multi-label: the scores follow it. Exclusive: all thresholds score
    the same, as for textcat (the decision is the top class)."""
    from spacy.cli.find_threshold import find_threshold

    model = trained(factory)
    nlp = shared(factory)
    nlp.to_disk(tmp_path / "pipeline")
    DocBin(docs=[eg.reference for eg in model.examples(nlp)]).to_disk(tmp_path / "dev.spacy")
    best, score, scores = find_threshold(
        str(tmp_path / "pipeline"), tmp_path / "dev.spacy", factory, "threshold", "cats_micro_f", n_trials=3
    )
    assert sorted(scores) == [0.0, 0.5, 1.0]
    if factory == "bertcat_multilabel":
        assert best == 0.5 and score == 1.0
        assert scores[0.0] < 1.0 and scores[1.0] < 1.0
    else:
        assert set(scores.values()) == {1.0}


def test_debug_data_checks_text_classifiers_by_factory_name():
    """Deliberate difference (docs/reference/textcat-differences.md): `spacy debug data` runs its text
    classification checks (label counts, values other than 0/1, several positives
    for exclusive classes) for the factories named textcat and textcat_multilabel
    only; for a pipeline of bertcat components it skips them (bertcat makes the same
    checks itself at initialize: BC002, BC003, BC005)."""
    debug_data = importlib.import_module("spacy.cli.debug_data")  # spacy.cli.debug_data is also a function
    compile_gold = getattr(debug_data, "_compile_gold", None)
    if compile_gold is None:
        pytest.skip("spacy.cli.debug_data has no _compile_gold in this spaCy version")
    nlp = English()
    examples = make_examples(nlp, SINGLE_DATA)
    assert not compile_gold(examples, ["bertcat"], nlp, False)["cats"]
    assert not compile_gold(examples, ["bertcat_multilabel"], nlp, False)["cats"]
    assert compile_gold(examples, ["textcat"], nlp, False)["cats"]
