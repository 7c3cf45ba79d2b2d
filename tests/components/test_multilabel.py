"""Multi-label on sparse labels: thresholds tuned during training with a fallback for
rare labels, the asymmetric loss, and collapsed labels made visible."""

import logging

import numpy
import pytest
import spacy
from spacy.cli.train import train
from spacy.training import Example

from spacy_bertcat.components.loss import asymmetric_loss, resolve_class_weights, sigmoid_binary_cross_entropy
from spacy_bertcat.decisions.metrics import best_f1_threshold
from spacy_bertcat.decisions.thresholds import collapsed_labels, tune_with_fallback

from ..support import CONFIGS, MULTI_DATA, make_nlp, tiny_config, write_corpus

SPARSE = [
    ("the team won the match", {"sport": 1.0, "business": 0.0, "tech": 0.0}),
    ("the bank profit and shares", {"sport": 0.0, "business": 1.0, "tech": 0.0}),
    ("a new phone and computer software", {"sport": 0.0, "business": 0.0, "tech": 1.0}),
    ("the game and the goal", {"sport": 1.0, "business": 0.0, "tech": 0.0}),
    ("the market and the bank", {"sport": 0.0, "business": 1.0, "tech": 0.0}),
    ("the team lost the game", {"sport": 1.0, "business": 0.0, "tech": 0.0}),
]


def numeric_gradient(loss, x, eps=1e-6):
    grad = numpy.zeros_like(x)
    for index in numpy.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += eps
        down[index] -= eps
        grad[index] = (loss(up) - loss(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize(
    "settings",
    [
        dict(gamma_neg=4.0, gamma_pos=0.0, clip=0.05),
        dict(gamma_neg=2.0, gamma_pos=1.0, clip=0.0),
        dict(gamma_neg=0.5, gamma_pos=0.5, clip=0.2),
    ],
)
def test_asymmetric_loss_gradient(settings):
    rng = numpy.random.default_rng(0)
    x = rng.normal(size=(6, 4)) * 3
    y = (rng.random((6, 4)) < 0.3).astype("f8")
    mask = numpy.ones_like(y)
    mask[0, 1] = 0.0
    weights = [1.0, 2.0, 0.5, 3.0]
    _, grad = asymmetric_loss(numpy, x, y, mask, weights, **settings)
    expected = numeric_gradient(lambda z: asymmetric_loss(numpy, z, y, mask, weights, **settings)[0], x)
    numpy.testing.assert_allclose(grad, expected, atol=1e-6)
    assert grad[0, 1] == 0.0  # a missing label gets no gradient


def test_asymmetric_loss_reduces_to_cross_entropy_and_spares_easy_negatives():
    rng = numpy.random.default_rng(1)
    x = rng.normal(size=(5, 3)) * 2
    y = (rng.random((5, 3)) < 0.4).astype("f8")
    mask = numpy.ones_like(y)
    plain = asymmetric_loss(numpy, x, y, mask, None, gamma_neg=0.0, gamma_pos=0.0, clip=0.0)
    bce = sigmoid_binary_cross_entropy(numpy, x, y, mask, None)
    assert plain[0] == pytest.approx(bce[0]) and numpy.allclose(plain[1], bce[1], atol=1e-7)
    easy = numpy.array([[-6.0]])  # a negative the model scores at 0.0025
    _, d_clip = asymmetric_loss(
        numpy, easy, numpy.zeros((1, 1)), numpy.ones((1, 1)), None, gamma_neg=4.0, gamma_pos=0.0, clip=0.05
    )
    assert d_clip[0, 0] == 0.0


def test_thresholds_fall_back_to_the_global_one_for_rare_labels():
    """Labels with enough dev positives get the threshold that maximizes their F1;
    the rarer ones share the threshold that maximizes micro-F1 over them pooled
    (over all labels when they have too few positives between them)."""
    rng = numpy.random.default_rng(0)
    n = 400
    gold = numpy.zeros((n, 4))
    gold[:120, 0] = 1
    gold[120:200, 1] = 1
    gold[:3, 2] = 1  # three positives
    gold[200:203, 3] = 1  # three more
    scores = numpy.clip(gold * rng.uniform(0.2, 0.9, gold.shape) + rng.uniform(0, 0.35, gold.shape), 0, 1)
    scores[:, 2:] *= 0.3  # rare labels score low
    mask = numpy.ones_like(gold)
    labels = ["a", "b", "rare", "rarer"]
    tuned = tune_with_fallback(labels, gold, scores, mask, min_support=5, default=0.5)
    assert tuned.fallback == ["rare", "rarer"]
    assert tuned.thresholds["a"] == pytest.approx(best_f1_threshold(scores[:, 0], gold[:, 0])["threshold"])
    pooled = best_f1_threshold(scores[:, 2:].ravel(), gold[:, 2:].ravel())["threshold"]
    assert (
        tuned.thresholds["rare"]
        == tuned.thresholds["rarer"]
        == pytest.approx(pooled)
        == pytest.approx(tuned.global_threshold)
    )
    assert pooled < best_f1_threshold(scores.ravel(), gold.ravel())["threshold"]

    def micro_f1(t):
        predicted = scores[:, 2:] >= t
        tp = (predicted & (gold[:, 2:] == 1)).sum()
        return 2 * tp / (predicted.sum() + gold[:, 2:].sum())

    assert micro_f1(pooled) >= max(micro_f1(t) for t in numpy.linspace(0.005, 0.5, 100)) - 1e-9
    assert "2 too rare to tune the global" in tuned.describe(n)
    few = tune_with_fallback(labels, gold, scores, mask, min_support=7, default=0.5)  # 6 rare positives < 7
    assert few.global_threshold == pytest.approx(best_f1_threshold(scores.ravel(), gold.ravel())["threshold"])


def test_rare_labels_scored_low_fire_as_often_as_their_training_prevalence():
    """The pooled threshold can keep a rare label whose scores run low from ever
    firing; with its training prevalence known, its threshold is lowered so that it
    fires on about that share of the documents (at least one)."""
    rng = numpy.random.default_rng(1)
    n = 500
    gold = numpy.zeros((n, 4))
    gold[:150, 0] = 1
    gold[:3, 1] = 1
    gold[100:104, 2] = 1
    gold[200:202, 3] = 1
    scores = numpy.clip(gold * 0.5 + rng.uniform(0, 0.3, gold.shape), 0, 1)
    scores[:, 3] *= 0.2  # "quiet": rare, and scored far below the other rare labels
    mask = numpy.ones_like(gold)
    labels = ["common", "rare", "rarer", "quiet"]
    plain = tune_with_fallback(labels, gold, scores, mask, min_support=5, default=0.5)
    assert (scores[:, 3] >= plain.thresholds["quiet"]).sum() == 0  # the pooled value: never fires
    prevalence = {"common": 0.3, "rare": 0.006, "rarer": 0.008, "quiet": 0.01}
    tuned = tune_with_fallback(labels, gold, scores, mask, min_support=5, default=0.5, prevalence=prevalence)
    assert tuned.by_prevalence == ["quiet"]
    assert (scores[:, 3] >= tuned.thresholds["quiet"]).sum() == 5  # 1% of 500 documents
    assert tuned.thresholds["rare"] == plain.thresholds["rare"]  # fires already: the cap does not raise it
    assert tuned.thresholds["common"] == plain.thresholds["common"]
    assert "1 of them lowered" in tuned.describe(n)
    unseen = tune_with_fallback(labels, gold, scores, mask, min_support=5, default=0.5, prevalence={"quiet": 0.0})
    assert unseen.by_prevalence == []  # no training positives: no expectation to meet


def test_collapsed_labels():
    gold = numpy.array([[1, 0], [0, 1], [1, 1]], dtype="f")
    scores = numpy.array([[0.9, 0.1], [0.2, 0.2], [0.8, 0.3]], dtype="f")
    assert collapsed_labels(["a", "b"], gold, scores, numpy.ones_like(gold), {"a": 0.5, "b": 0.5}) == {"b": 2}


def test_spacy_train_tunes_thresholds_on_dev_and_model_best_carries_them(tiny_bert, tmp_path, caplog):
    """With the shipped multi-label config, every evaluation tunes the thresholds
    on the dev data; model-best keeps them; evaluating the saved pipeline on other
    data does not retune."""
    corpus = write_corpus(tmp_path / "train.spacy", SPARSE, copies=3)
    with caplog.at_level(logging.INFO, logger="spacy.bertcat"):
        train(
            CONFIGS / "bertcat_multilabel.cfg",
            tmp_path / "out",
            overrides={
                "paths.train": corpus,
                "paths.dev": corpus,
                "components.bertcat.model.name": tiny_bert,
                "components.bertcat.model.max_length": 32,
                "components.bertcat.threshold_min_support": 4,
                "training.max_steps": 6,
                "training.optimizer.learn_rate.total_steps": 6,
                "training.eval_frequency": 3,
                "training.batcher.size": 6,
                "training.optimizer.learn_rate.initial_rate": 3e-3,
                "training.optimizer.learn_rate.warmup_steps": 1,
            },
        )
    assert any("thresholds tuned on 18 docs" in r.getMessage() for r in caplog.records)
    nlp = spacy.load(tmp_path / "out" / "model-best")
    pipe = nlp.get_pipe("bertcat")
    tuned = dict(pipe.cfg["thresholds"])
    assert set(tuned) == {"business", "sport", "tech"} and pipe.thresholds == tuned
    assert pipe.cfg["thresholds_fallback"] == ["tech"]  # 3 positives < 4: the global threshold
    prevalence = pipe.cfg["train_prevalence"]  # saved with the pipeline: it caps the rare labels' thresholds
    assert prevalence["tech"] == pytest.approx(sum(cats["tech"] for _, cats in SPARSE) / len(SPARSE))
    assert tuned["tech"] == pytest.approx(max(tuned["tech"], 1e-4))
    other = [Example(nlp.make_doc(text), nlp.make_doc(text)) for text, _ in MULTI_DATA]
    for eg, (_, cats) in zip(other, MULTI_DATA):
        eg.reference.cats = cats
    nlp.evaluate(other)
    assert pipe.cfg["thresholds"] == tuned


def test_tuning_outside_spacy_train_happens_only_when_asked(tiny_bert):
    """nlp.evaluate in a loop of one's own never tunes (test_contract.py has the
    case after updates); inside pipe.tuning_thresholds() it does. A new global
    threshold sets the tuned thresholds aside, and evaluating leaves them so."""
    nlp, examples, optimizer = make_nlp(tiny_bert, "bertcat_multilabel", SPARSE)
    pipe = nlp.get_pipe("bertcat_multilabel")
    pipe.cfg["tune_thresholds"] = True
    nlp.update(examples, sgd=optimizer)
    nlp.evaluate(examples)
    assert pipe.cfg["thresholds"] is None  # not asked: nothing tuned
    with pipe.tuning_thresholds():
        nlp.evaluate(examples)
    first = dict(pipe.cfg["thresholds"])
    pipe.cfg["threshold"] = 0.7  # a new global threshold sets the tuned ones aside...
    assert pipe.thresholds == {label: 0.7 for label in pipe.labels}
    nlp.evaluate(examples)
    assert pipe.cfg["thresholds"] == first  # ...and an evaluation tunes nothing


def test_collapsed_labels_are_reported_at_evaluation(tiny_bert, caplog):
    nlp, examples, _ = make_nlp(tiny_bert, "bertcat_multilabel", SPARSE)
    pipe = nlp.get_pipe("bertcat_multilabel")
    pipe.set_thresholds({"tech": 0.9999})
    with caplog.at_level(logging.WARNING, logger="spacy.bertcat"):
        nlp.evaluate(examples)
    assert any("BCW011" in r.getMessage() and "tech (1)" in r.getMessage() for r in caplog.records)


def test_asymmetric_loss_from_the_config_trains(tiny_bert):
    config = {"loss": {"@misc": "spacy-bertcat.asymmetric_loss.v1", "gamma_neg": 2.0, "clip": 0.05}}
    asl = spacy.blank("en")
    asl.add_pipe("bertcat_multilabel", config={**tiny_config(tiny_bert), **config})
    examples = [Example.from_dict(asl.make_doc(t), {"cats": c}) for t, c in SPARSE]
    optimizer = asl.initialize(lambda: examples)
    optimizer.learn_rate = 3e-3
    losses = [asl.update(examples, sgd=optimizer)["bertcat_multilabel"] for _ in range(25)]
    assert losses[-1] < losses[0] / 2
    with pytest.raises(ValueError, match="BC022.*clip"):
        bad = spacy.blank("en")
        bad.add_pipe(
            "bertcat_multilabel",
            config={**tiny_config(tiny_bert), "loss": {"@misc": "spacy-bertcat.asymmetric_loss.v1", "clip": 1.5}},
        )


def test_softened_balanced_weights_and_saving(tiny_bert, tmp_path):
    """spacy-bertcat.balanced_class_weights.v1: the balanced positive weights
    raised to a power and capped; the pipeline saves and loads with it."""
    from spacy_bertcat.components.loss import BalancedWeights

    truth = numpy.array([[1, 0], [0, 0], [0, 0], [0, 1]], dtype="f")
    mask = numpy.ones_like(truth)
    assert BalancedWeights()(truth, mask, exclusive=False) == [3.0, 3.0]
    assert BalancedWeights(power=0.5)(truth, mask, exclusive=False) == pytest.approx([3**0.5] * 2)
    assert BalancedWeights(max_weight=2.0)(truth, mask, exclusive=False) == [2.0, 2.0]
    nlp = spacy.blank("en")
    weights = {"@misc": "spacy-bertcat.balanced_class_weights.v1", "power": 0.5, "max_weight": 10.0}
    nlp.add_pipe("bertcat_multilabel", config={**tiny_config(tiny_bert), "class_weights": weights})
    examples = [Example.from_dict(nlp.make_doc(t), {"cats": c}) for t, c in SPARSE]
    nlp.initialize(lambda: examples)
    pipe = nlp.get_pipe("bertcat_multilabel")
    assert pipe.cfg["label_weights"] == pytest.approx([2.0**0.5, 1.0, 5.0**0.5])  # business 2/6, sport 3/6, tech 1/6
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("bertcat_multilabel").cfg["label_weights"] == pytest.approx(pipe.cfg["label_weights"])


def test_factory_defaults_are_the_shipped_recipe():
    """A component added without settings (nlp.add_pipe, a hand-written config)
    gets the measured recipe of the shipped config, not the plain loss that
    collapses on sparse labels."""
    shipped = spacy.util.load_config(CONFIGS / "bertcat_multilabel.cfg")["components"]["bertcat"]
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat_multilabel", config=tiny_config("unused"))
    added = nlp.config["components"]["bertcat_multilabel"]
    for setting in ("loss", "tune_thresholds", "threshold_min_support", "threshold"):
        assert added[setting] == shipped[setting], setting
    # the default weights are named ("sqrt_balanced", so that a block of label =
    # weight lines is not merged with a default block): the shipped block's weights
    assert added["class_weights"] == "sqrt_balanced"
    assert shipped["class_weights"] == {
        "@misc": "spacy-bertcat.balanced_class_weights.v1",
        "power": 0.5,
        "max_weight": None,
    }
    truth = numpy.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [1, 1, 0]], dtype="f")
    mask = numpy.ones_like(truth)
    resolved = spacy.util.registry.resolve({"w": shipped["class_weights"]})["w"]
    assert resolve_class_weights(
        "sqrt_balanced", ["a", "b", "c"], truth, mask, exclusive=False, name="x"
    ) == resolve_class_weights(resolved, ["a", "b", "c"], truth, mask, exclusive=False, name="x")
