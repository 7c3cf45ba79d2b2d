"""spaCy's component contract, as its textcat keeps it, and the data and decision
rules around it (issue 24): labels without negatives, multi-label thresholds tuned
only where asked, decisions that calibration cannot flip, get_loss on predict's
output, rehearsal, initialize's arguments, documents of other classifiers, labels
added after initialize, explicit per-label weights, and clear refusals (an optimized
pipeline in `spacy train`, a model type or package the installation lacks)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy
import pytest
import spacy
import srsly
from confection import ConfigValidationError
from spacy.training import Example

from spacy_bertcat.decisions.calibration import Calibration

from ..support import CONFIGS, MULTI_DATA, SINGLE_DATA, make_examples, make_nlp, tiny_config, write_corpus

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [text for text, _ in MULTI_DATA] + ["good film", "the bank", "a phone", "the match", ""]
AG_NEWS = [
    ("the team won the match", {"Sports": 1.0, "World": 0.0, "Business": 0.0, "Sci/Tech": 0.0}),
    ("the minister and the election vote", {"Sports": 0.0, "World": 1.0, "Business": 0.0, "Sci/Tech": 0.0}),
    ("the bank profit and shares", {"Sports": 0.0, "World": 0.0, "Business": 1.0, "Sci/Tech": 0.0}),
    ("a new phone and computer software", {"Sports": 0.0, "World": 0.0, "Business": 0.0, "Sci/Tech": 1.0}),
    ("the game and the goal", {"Sports": 1.0, "World": 0.0, "Business": 0.0, "Sci/Tech": 0.0}),
    ("the party lost the vote", {"Sports": 0.0, "World": 1.0, "Business": 0.0, "Sci/Tech": 0.0}),
]


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )


def trained(name, factory="bertcat_multilabel", data=MULTI_DATA, steps=5, **settings):
    nlp, examples, optimizer = make_nlp(name, factory, data, learn_rate=3e-3, **settings)
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp, examples, optimizer


# 1. Labels without negative examples


def test_a_label_without_negatives_trains_and_is_warned_about(tiny_bert):
    """Positives-only data ({"question": 1.0} and {"statement": 1.0}) gave both
    labels the balanced weight 0, so the default multi-label recipe never trained
    them (every loss 0.0); now they get weight 1 and a warning says why the model
    will predict them for every document and how to mark negatives."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat_multilabel", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, [("is it good?", {"question": 1.0}), ("it is good.", {"statement": 1.0})])
    with pytest.warns(UserWarning, match=r"BCW030.*\['question', 'statement'\].*no negative.*0\.0") as record:
        optimizer = nlp.initialize(lambda: examples)
    assert "every document" in str(record[0].message)
    pipe = nlp.get_pipe("bertcat_multilabel")
    assert pipe.cfg["label_weights"] == [1.0, 1.0]
    losses = [nlp.update(examples, sgd=optimizer)["bertcat_multilabel"] for _ in range(3)]
    assert all(loss > 0.0 for loss in losses) and losses[-1] < losses[0]
    nlp = spacy.blank("en")  # with a negative each: no warning, balanced weights
    nlp.add_pipe("bertcat_multilabel", config=tiny_config(tiny_bert))
    complete = make_examples(
        nlp, [("is it good?", {"question": 1.0, "statement": 0.0}), ("it is.", {"question": 0.0, "statement": 1.0})]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nlp.initialize(lambda: complete)


# 2. Thresholds are tuned only where asked


def test_evaluating_in_a_loop_of_ones_own_leaves_the_thresholds(tiny_bert):
    """A hand-written update + nlp.evaluate scores the data and changes nothing;
    `pipe.tuning_thresholds()` is the opt-in. (`spacy train`'s evaluations still
    tune: test_multilabel.py::test_spacy_train_tunes_thresholds_on_dev_and_model_best_carries_them.)"""
    nlp, examples, optimizer = make_nlp(tiny_bert, "bertcat_multilabel", MULTI_DATA)
    pipe = nlp.get_pipe("bertcat_multilabel")
    assert pipe.cfg["tune_thresholds"]  # the default
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
        before = pipe.decisions.to_dict()
        nlp.evaluate(examples)
        assert pipe.decisions.to_dict() == before
    assert pipe.cfg["thresholds"] is None and pipe.thresholds == {label: 0.5 for label in pipe.labels}
    with pipe.tuning_thresholds():
        nlp.evaluate(examples)
    tuned = dict(pipe.cfg["thresholds"])
    assert set(tuned) == set(pipe.labels)
    nlp.update(examples, sgd=optimizer)
    nlp.evaluate(examples)  # outside the block again
    assert pipe.cfg["thresholds"] == tuned


# 3. Calibration never flips a decision


def test_calibration_keeps_a_decision_at_exactly_the_threshold(tiny_bert):
    """A label whose threshold equals a document's score exactly is assigned; after
    Platt scaling it still is (float rounding of the mapped threshold flipped it in
    about half of these cases), and doc.cats >= pipe.thresholds agrees with every
    decision; removing the calibration restores the thresholds exactly."""
    nlp, _, _ = trained(tiny_bert)
    pipe = nlp.get_pipe("bertcat_multilabel")
    rng = numpy.random.default_rng(0)
    for trial in range(24):
        pipe.set_calibration(None)
        pipe.set_thresholds({label: 0.5 for label in pipe.labels})
        label = pipe.labels[trial % 3]
        score = list(nlp.pipe(TEXTS))[trial % 8].cats[label]
        pipe.set_thresholds({label: score})
        before = [doc._.bertcat_labels["bertcat_multilabel"] for doc in nlp.pipe(TEXTS)]
        assert label in before[trial % 8]
        slopes, intercepts = rng.uniform(0.3, 3.0, 3).tolist(), rng.uniform(-2, 2, 3).tolist()
        pipe.set_calibration(Calibration("platt", list(pipe.labels), slopes=slopes, intercepts=intercepts))
        docs = list(nlp.pipe(TEXTS))
        assert [doc._.bertcat_labels["bertcat_multilabel"] for doc in docs] == before, trial
        for doc in docs:
            decided = doc._.bertcat_labels["bertcat_multilabel"]
            assert [lab for lab in pipe.labels if doc.cats[lab] >= pipe.thresholds[lab]] == decided, trial
        assert pipe.uncalibrated_thresholds[label] == score
        pipe.set_calibration(None)
        assert pipe.thresholds[label] == score


# 4. get_loss takes predict's output


@pytest.mark.parametrize("factory,data", [("bertcat", SINGLE_DATA), ("bertcat_multilabel", MULTI_DATA)])
def test_get_loss_takes_what_predict_returns(tiny_bert, factory, data):
    """get_loss(examples, pipe.predict(docs)) is the loss update() reports for the
    batch (the tiny models have no dropout), calibrated or not; scores that are
    not predict's own array are taken back to logits, to float tolerance."""
    nlp, examples, optimizer = trained(tiny_bert, factory, data, steps=3)
    pipe = nlp.get_pipe(factory)
    examples = examples + make_examples(nlp, [("", data[0][1])])  # no text: left out, as in update
    docs = [eg.predicted for eg in examples]
    scores = pipe.predict(docs)
    loss, d_logits = pipe.get_loss(examples, scores)
    copied_loss, copied_d = pipe.get_loss(examples, scores.copy())
    pipe.set_calibration(
        Calibration("temperature", list(pipe.labels), temperature=2.5)
        if factory == "bertcat"
        else Calibration("platt", list(pipe.labels), slopes=[0.5, 2.0, 1.5], intercepts=[1.0, -1.0, 0.2])
    )
    calibrated = pipe.predict(docs)
    assert not numpy.allclose(calibrated, scores)
    calibrated_loss, _ = pipe.get_loss(examples, calibrated)
    calibrated_copy_loss, _ = pipe.get_loss(examples, calibrated.copy())
    with pytest.warns(UserWarning, match="BCW014"):  # training removes the calibration
        update_loss = pipe.update(examples, sgd=None)[factory]
    assert loss == pytest.approx(update_loss, rel=1e-5)
    assert calibrated_loss == pytest.approx(update_loss, rel=1e-5)
    assert copied_loss == pytest.approx(update_loss, rel=1e-4)
    assert calibrated_copy_loss == pytest.approx(update_loss, rel=1e-3)
    assert d_logits.shape == scores.shape and not d_logits[-1].any()
    numpy.testing.assert_allclose(copied_d, d_logits, atol=1e-6)


# 5. Rehearsal


def test_rehearse_pulls_the_model_back_to_its_predictions_at_resume(tiny_bert):
    """nlp.resume_training() keeps a copy of the model; nlp.rehearse on raw text
    then trains towards that copy's predictions (spaCy's textcat contract), so
    predictions moved away by other training come back. Without resume_training,
    rehearse does nothing, as textcat's."""
    nlp, examples, _ = trained(tiny_bert, steps=10)
    pipe = nlp.get_pipe("bertcat_multilabel")
    assert pipe.rehearse(examples) == {"bertcat_multilabel": 0.0}
    optimizer = nlp.resume_training()
    optimizer.learn_rate = 3e-3
    assert pipe._rehearsal_model is not None
    texts = [text for text, _ in MULTI_DATA]
    target = numpy.asarray([list(doc.cats.values()) for doc in nlp.pipe(texts)])
    flipped = [(text, {k: 1.0 - v for k, v in cats.items()}) for text, cats in MULTI_DATA]
    for _ in range(4):
        nlp.update(make_examples(nlp, flipped), sgd=optimizer)
    moved = numpy.asarray([list(doc.cats.values()) for doc in nlp.pipe(texts)])
    raw = [Example(nlp.make_doc(text), nlp.make_doc(text)) for text in texts]  # no gold labels needed
    losses = [nlp.rehearse(raw, sgd=optimizer)["bertcat_multilabel"] for _ in range(8)]
    back = numpy.asarray([list(doc.cats.values()) for doc in nlp.pipe(texts)])
    assert losses[0] > 0.0 and losses[-1] < losses[0]
    assert numpy.abs(back - target).mean() < 0.5 * numpy.abs(moved - target).mean()
    pipe_losses = pipe.rehearse(raw, sgd=optimizer)  # the component's own verb, with a thinc optimizer
    assert 0.0 < pipe_losses["bertcat_multilabel"] < losses[0]


# 6. initialize's arguments


def test_multilabel_initialize_takes_no_positive_label(tiny_bert):
    """As spaCy's textcat_multilabel: positive_label is a TypeError, not stored
    and ignored; in [initialize.components] it is a config error."""
    nlp = spacy.blank("en")
    pipe = nlp.add_pipe("bertcat_multilabel", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, MULTI_DATA)
    with pytest.raises(TypeError, match="positive_label"):
        pipe.initialize(lambda: examples, nlp=nlp, positive_label="tech")
    nlp.config["initialize"]["components"]["bertcat_multilabel"] = {"positive_label": "tech"}
    with pytest.raises(ConfigValidationError, match="positive_label"):
        nlp.initialize(lambda: examples)


# 7. Documents that belong to another classifier


def test_a_document_of_another_classifier_is_skipped_not_an_error(tiny_bert):
    """A bertcat over Sports and World beside one over all four AG News labels:
    a Business article has no class of the first; it is skipped in its training
    (BCW031, once) instead of stopping with BC004."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", name="sport_world", config=tiny_config(tiny_bert))
    nlp.add_pipe("bertcat", name="topics", config=tiny_config(tiny_bert))
    nlp.config["initialize"]["components"]["sport_world"] = {"labels": ["Sports", "World"]}
    examples = make_examples(nlp, AG_NEWS)
    with pytest.warns(UserWarning, match=r"BCW031.*'sport_world': 2 of 6 .*\['Business', 'Sci/Tech'\]"):
        optimizer = nlp.initialize(lambda: examples)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once
        losses = nlp.update(examples, sgd=optimizer)
    assert losses["sport_world"] > 0.0 and losses["topics"] > 0.0
    business = make_examples(nlp, [AG_NEWS[2]])
    before = nlp.get_pipe("sport_world").model.predict([business[0].predicted])
    assert nlp.update(business, sgd=optimizer)["sport_world"] == 0.0  # nothing to learn for it
    numpy.testing.assert_array_equal(nlp.get_pipe("sport_world").model.predict([business[0].predicted]), before)
    with pytest.raises(ValueError, match="BC004"):  # no positive at all is still an error
        nlp.update(make_examples(nlp, [("odd", {"Sports": 0.0, "World": 0.0})]), sgd=optimizer)


# 8. Labels added after initialize


SCRIPT_CATS = (
    "import json, sys, spacy\n"
    "nlp = spacy.load(sys.argv[1])\n"
    "print(json.dumps([d.cats for d in nlp.pipe(json.loads(sys.argv[2]))]))\n"
)


@pytest.mark.parametrize("factory,data", [("bertcat", SINGLE_DATA), ("bertcat_multilabel", MULTI_DATA)])
def test_add_label_after_initialize_grows_the_head(tiny_bert, tmp_path, factory, data):
    """add_label after initialize adds an output as textcat's does: the existing
    labels' weights are kept, so their logits are unchanged up to float rounding
    (bertcat: their softmax scores change, as a new class shares the probability),
    the new label trains, and the pipeline saves and loads in a new process."""
    nlp, examples, optimizer = trained(tiny_bert, factory, data, steps=3)
    pipe = nlp.get_pipe(factory)
    docs = [nlp.make_doc(text) for text in TEXTS[:6]]
    before = pipe.model.predict(docs)
    assert pipe.add_label("extra") == 1 and pipe.add_label("extra") == 0
    assert pipe.labels[-1] == "extra" and len(pipe.cfg["label_weights"] or [1.0] * len(pipe.labels)) == len(pipe.labels)
    after = pipe.model.predict(docs)
    assert after.shape == (len(docs), len(pipe.labels))
    # the same weights, in a matrix product one output wider: equal to float rounding (1 ulp)
    numpy.testing.assert_allclose(after[:, :-1], before, rtol=1e-6, atol=1e-7)
    config = pipe.model.shims[0].hf_model.config
    assert config.num_labels == len(pipe.labels) and config.id2label[len(pipe.labels) - 1] == "extra"
    new = [(text, {**{label: 0.0 for label in cats}, "extra": 1.0}) for text, cats in data[:1]]
    if factory == "bertcat":
        new = [(text, {"extra": 1.0, **{label: 0.0 for label in pipe.labels if label != "extra"}}) for text, _ in new]
    more = make_examples(nlp, new) + examples
    first = nlp.update(more, sgd=optimizer)[factory]
    for _ in range(5):
        last = nlp.update(more, sgd=optimizer)[factory]
    assert last < first
    nlp.to_disk(tmp_path / "p")
    expected = [doc.cats for doc in nlp.pipe(TEXTS)]
    out = run("-c", SCRIPT_CATS, tmp_path / "p", json.dumps(TEXTS), cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    for got, want in zip(json.loads(out.stdout.strip().splitlines()[-1]), expected):
        assert list(got) == list(want) and list(got.values()) == pytest.approx(list(want.values()), abs=1e-5)


def test_add_label_after_calibration_removes_it(tiny_bert):
    nlp, _, _ = trained(tiny_bert, "bertcat", SINGLE_DATA, steps=1)
    pipe = nlp.get_pipe("bertcat")
    pipe.set_calibration(Calibration("temperature", list(pipe.labels), temperature=2.0))
    with pytest.warns(UserWarning, match="BCW032"):
        pipe.add_label("NEUTRAL")
    assert pipe.calibration is None and "NEUTRAL" in nlp("a fine film").cats


# 9. Explicit per-label weights for bertcat_multilabel


def test_explicit_label_weights_for_multilabel(tiny_bert):
    """A dict of label weights, through nlp.add_pipe and as a config block of
    `label = weight` lines, was merged with the default weights block and failed
    ("unexpected argument"); the default is now a name, so either form works."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat_multilabel", config={**tiny_config(tiny_bert), "class_weights": {"sport": 3.0, "tech": 0.5}})
    nlp.initialize(lambda: make_examples(nlp, MULTI_DATA))
    assert nlp.get_pipe("bertcat_multilabel").cfg["label_weights"] == [1.0, 3.0, 0.5]  # business, sport, tech
    config = spacy.util.load_config(CONFIGS / "bertcat_multilabel.cfg")
    config["components"]["bertcat"]["model"].update(tiny_config(tiny_bert)["model"])
    text = config.to_str().replace(
        '[components.bertcat.class_weights]\n@misc = "spacy-bertcat.balanced_class_weights.v1"\npower = 0.5\nmax_weight = null',
        "[components.bertcat.class_weights]\nsport = 3.0\ntech = 0.5",
    )
    assert "sport = 3.0" in text
    loaded = spacy.util.load_model_from_config(spacy.util.load_config_from_str(text), auto_fill=True)
    loaded.initialize(lambda: make_examples(loaded, MULTI_DATA))
    assert loaded.get_pipe("bertcat").cfg["label_weights"] == [1.0, 3.0, 0.5]
    nlp = spacy.blank("en")  # the default: the balanced weights' square root, as before
    nlp.add_pipe("bertcat_multilabel", config=tiny_config(tiny_bert))
    assert nlp.config["components"]["bertcat_multilabel"]["class_weights"] == "sqrt_balanced"
    nlp.initialize(lambda: make_examples(nlp, MULTI_DATA))
    # business 2 / 2, sport 2 / 2, tech 2 / 1 (one document leaves tech missing)
    assert nlp.get_pipe("bertcat_multilabel").cfg["label_weights"] == pytest.approx([1.0, 1.0, 2**0.5])


# 10. An optimized pipeline in spacy train


def test_spacy_train_refuses_an_optimized_pipeline_before_writing(tiny_bert, tmp_path):
    """Sourcing a pipeline optimized for serving stops at initialize with BC065, a
    config error (no traceback), and writes no model-last."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from spacy_bertcat.serving import optimize_pipe

    nlp, _, _ = trained(tiny_bert, "bertcat", SINGLE_DATA, steps=1)
    optimize_pipe(nlp.get_pipe("bertcat"), int8=False)
    nlp.to_disk(tmp_path / "fast")
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA)
    config = spacy.util.load_config(CONFIGS / "bertcat.cfg")
    config["components"]["bertcat"] = {"source": str(tmp_path / "fast")}
    config.to_disk(tmp_path / "sourced.cfg")
    out = run(
        "-m", "spacy", "train", tmp_path / "sourced.cfg", "--output", tmp_path / "out",
        "--paths.train", corpus, "--paths.dev", corpus, "--training.max_steps", "2",
    )  # fmt: skip
    assert out.returncode == 1 and "BC065" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "Aborting" not in out.stdout
    assert not (tmp_path / "out" / "model-last").exists()
    loaded = spacy.load(tmp_path / "fast")
    with pytest.raises(ConfigValidationError, match="BC065"):  # initialize would replace the serving model
        loaded.initialize(lambda: make_examples(loaded, SINGLE_DATA))


# 12. What the installation lacks


def test_a_model_type_unknown_to_this_transformers_says_to_upgrade(tiny_bert, tmp_path):
    """A pipeline of a family that only a later transformers has (GTE, EuroBERT,
    NomicBERT under transformers 4) is not 'truncated or corrupted': the error
    names the model type and both versions, and the fix."""
    import transformers

    nlp, _, _ = trained(tiny_bert, "bertcat", SINGLE_DATA, steps=1)
    nlp.to_disk(tmp_path / "p")
    path = tmp_path / "p" / "bertcat" / "model"
    model = srsly.msgpack_loads(path.read_bytes())
    shim = srsly.msgpack_loads(model["shims"][0][0])
    hf_config = json.loads(shim["hf_config"])
    hf_config["model_type"] = "future_bert"  # in no transformers release
    shim["hf_config"], shim["transformers_version"] = json.dumps(hf_config), "9.1.0"
    model["shims"][0][0] = srsly.msgpack_dumps(shim)
    path.write_bytes(srsly.msgpack_dumps(model))
    with pytest.raises(ValueError, match="BC101") as error:
        spacy.load(tmp_path / "p")
    message = str(error.value)
    assert "'future_bert'" in message and "9.1.0" in message and transformers.__version__ in message
    assert "Upgrade transformers" in message and "BC012" not in message


def test_a_tokenizer_that_needs_a_missing_package_says_which(tiny_bert, monkeypatch):
    """RoFormer's tokenizer without rjieba: a coded error with the pip command,
    not a bare ImportError."""
    import transformers

    def from_pretrained(*args, **kwargs):
        raise ImportError(
            "You need to install rjieba to use RoFormerTokenizer. See https://pypi.org/project/rjieba/ for installation."
        )

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    with pytest.raises(ConfigValidationError, match=r"BC102[\s\S]*'rjieba'[\s\S]*pip install rjieba"):
        nlp.initialize(lambda: make_examples(nlp, SINGLE_DATA))
