"""The calibrators of exclusive classes beyond temperature scaling (vector
scaling, Dirichlet/ODIR, top-label isotonic and histogram maps), choosing one by
cross-validation, what may change a decision, ECE intervals, and the
calibration fitted inside `spacy train` (saved, packaged, loaded in a new
process, n_process)."""

import json
import logging
import os
import subprocess
import sys
import tarfile

import numpy
import pytest
import spacy

from spacy_bertcat.components.decision_state import DecisionState
from spacy_bertcat.decisions.calibration import Calibration, conformal_report, fit_calibration
from spacy_bertcat.decisions.metrics import calibration_metrics

from ..support import CONFIGS, SINGLE_DATA, write_corpus

METHODS = ("none", "temperature", "isotonic", "histogram", "vector", "dirichlet")


def softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic(n, n_classes=4, seed=0, overconfidence=3.0, bias=0.0):
    """Labels drawn from softmax(z); the 'model' reports overconfidence x z (+ a
    bias towards the first class)."""
    rng = numpy.random.default_rng(seed)
    z = rng.normal(size=(n, n_classes)) * 2
    y = (softmax(z).cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    logits = z * overconfidence
    logits[:, 0] += bias
    return logits, numpy.eye(n_classes)[y]


def fit(method, logits, gold, **kwargs):
    labels = [f"c{j}" for j in range(gold.shape[1])]
    return fit_calibration(
        labels, logits, gold, numpy.ones_like(gold), exclusive=True, name="c", method=method, **kwargs
    )


@pytest.mark.parametrize("n_classes", [2, 4])
@pytest.mark.parametrize("method", METHODS)
def test_each_calibrator_fits_applies_and_round_trips(method, n_classes):
    logits, gold = synthetic(1600, n_classes=n_classes, seed=n_classes)
    cal = fit(method, logits[:800], gold[:800], allow_decision_changes=True)
    assert cal.method == method
    test, test_gold = logits[800:], gold[800:]
    raw = softmax(test)
    after = softmax(cal.apply(numpy, test))
    before_ece = calibration_metrics(test_gold, raw, exclusive=True)["ece"]
    after_ece = calibration_metrics(test_gold, after, exclusive=True)["ece"]
    if method != "none":
        assert after_ece < before_ece / 2, (before_ece, after_ece)  # 3x over-confident: any map helps
    # Which maps keep the top class, and which are smooth.
    assert cal.keeps_top_class == (method not in ("vector", "dirichlet"))
    assert cal.differentiable == (method not in ("isotonic", "histogram"))
    if cal.keeps_top_class:
        assert (after.argmax(axis=1) == raw.argmax(axis=1)).all()
    # Plain numbers in the cfg: a JSON round trip applies the same map.
    stored = json.loads(json.dumps(cal.to_dict()))
    numpy.testing.assert_allclose(Calibration.from_dict(stored).apply(numpy, test), cal.apply(numpy, test), atol=1e-9)
    # uncalibrate takes the scores back: exactly where invertible, closely elsewhere.
    back = cal.uncalibrate(after.astype("f"))
    if cal.invertible:
        assert numpy.abs(back - raw).max() < 1e-4
    else:  # many scores map onto one: the preimage is a guess (the component does not rely on it)
        assert numpy.abs(back - raw).mean() < 0.05
    assert (back.argmax(axis=1) == raw.argmax(axis=1)).mean() > (0.999 if cal.invertible else 0.9)


@pytest.mark.parametrize("method", METHODS)
def test_apply_takes_numpy_and_torch(method):
    """The contract other code relies on: apply(xp, logits) maps logits to
    calibrated logits for numpy and torch alike, and gradients flow through
    the differentiable maps."""
    torch = pytest.importorskip("torch")
    logits, gold = synthetic(400, seed=3)
    cal = fit(method, logits, gold, allow_decision_changes=True)
    x = torch.tensor(logits[:16], dtype=torch.float32, requires_grad=True)
    out = cal.apply(torch, x)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    expected = softmax(cal.apply(numpy, logits[:16].astype("f")))
    numpy.testing.assert_allclose(torch.softmax(out, dim=-1).detach().numpy(), expected, atol=1e-5)
    if cal.differentiable and method != "none":
        torch.log_softmax(out, dim=-1)[:, 0].sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_a_cfg_in_the_shape_of_earlier_versions_still_loads():
    """A temperature calibration as pipelines saved before the new calibrators
    store it (every field of that version, no more) loads and applies."""
    stored = {
        "method": "temperature",
        "labels": ["NEG", "POS"],
        "temperature": 1.5,
        "slopes": [],
        "intercepts": [],
        "pooled": [],
        "n_docs": 300,
        "alphas": [0.1, 0.05],
        "quantiles": [0.4, 0.6],
        "fitted": {"before": {"ece": 0.1}, "after": {"ece": 0.02}},
    }
    state = DecisionState({"labels": ["NEG", "POS"], "calibration": stored})
    cal = state.calibration
    assert cal.method == "temperature" and cal.keeps_top_class and cal.differentiable and cal.invertible
    numpy.testing.assert_allclose(cal.apply(numpy, numpy.array([[3.0, 0.0]])), [[2.0, 0.0]])
    assert cal.prediction_sets(numpy.array([[0.7, 0.3]]))[0].tolist() == [True, False]
    assert "temperature 1.500" in cal.describe()
    # A later version's extra field is ignored rather than refused.
    assert Calibration.from_dict({**stored, "added_later": 1}).temperature == 1.5


def test_decision_changing_methods_need_permission():
    logits, gold = synthetic(200)
    for method in ("vector", "dirichlet"):
        with pytest.raises(ValueError, match="BC160.*allow-decision-changes"):
            fit(method, logits, gold)
    with pytest.raises(ValueError, match="BC161"):
        fit("platt", logits, gold)
    with pytest.raises(ValueError, match="BC161"):
        fit_calibration(["a"], logits[:, :1], gold[:, :1], numpy.ones_like(gold[:, :1]), exclusive=False, name="m",
                        method="isotonic")  # fmt: skip
    # Allowed: the changes are counted, with the accuracy before and after.
    biased, gold = synthetic(1000, overconfidence=1.0, bias=1.5)
    cal = fit("vector", biased, gold, allow_decision_changes=True)
    assert cal.fitted["decisions_changed"] > 0
    assert cal.fitted["accuracy_after"] > cal.fitted["accuracy_before"]  # the bias is undone


def test_cross_validation_keeps_calibrated_scores_and_fixes_miscalibrated_ones():
    logits, gold = synthetic(1500, overconfidence=1.0, seed=5)
    calibrated = fit("auto", logits, gold)
    assert calibrated.method == "none", calibrated.fitted["selection"]
    logits, gold = synthetic(1500, overconfidence=3.0, seed=5)
    chosen = fit("auto", logits[:750], gold[:750])
    selection = chosen.fitted["selection"]
    assert chosen.method in ("temperature", "isotonic", "histogram")  # decision-keeping only, by default
    assert [row["method"] for row in selection["rows"]] == ["none", "temperature", "isotonic", "histogram"]
    assert all(row["changed"] == 0 for row in selection["rows"])
    row = next(r for r in selection["rows"] if r["method"] == chosen.method)
    assert row["eligible"] and row["ece_gain"] > row["ece_gain_se"]
    new = calibration_metrics(gold[750:], softmax(chosen.apply(numpy, logits[750:])), exclusive=True)
    assert new["ece"] < calibration_metrics(gold[750:], softmax(logits[750:]), exclusive=True)["ece"] / 2
    # With permission, the decision-changing maps are candidates too.
    allowed = fit("auto", logits[:200], gold[:200], allow_decision_changes=True)
    assert {"vector", "dirichlet"} <= {row["method"] for row in allowed.fitted["selection"]["rows"]}


@pytest.mark.parametrize("method", ["isotonic", "vector"])
def test_prediction_sets_keep_their_guarantee_whatever_the_calibrator(method):
    """The conformal quantile is taken on the model's own scores, so coverage
    holds whichever map doc.cats goes through (and whether it keeps decisions)."""
    logits, gold = synthetic(4000, overconfidence=2.0, seed=7)
    cal = fit(method, logits[:2000], gold[:2000], allow_decision_changes=True, alphas=[0.1])
    plain = fit("temperature", logits[:2000], gold[:2000], alphas=[0.1])
    assert cal.quantiles == plain.quantiles
    report = conformal_report(cal, gold[2000:], softmax(logits[2000:]))
    assert report["0.1"]["coverage"] >= 0.9 - 0.02


def test_ece_intervals_and_noise_floors():
    logits, gold = synthetic(2000, overconfidence=1.0, seed=2)
    m = calibration_metrics(gold, softmax(logits), exclusive=True, bootstrap=100)
    for key in ("ece", "ece_adaptive"):
        low, high = m[f"{key}_interval"]
        assert 0 <= low <= m[key] and high - low < 0.05
    assert 0 < m["ece_floor"] < 0.05 and 0 < m["ece_adaptive_floor"] < 0.05
    assert m["ece"] < m["ece_floor"] * 2.5  # calibrated scores: the ECE is about the floor
    assert "ece_interval" not in calibration_metrics(gold, softmax(logits), exclusive=True)


# In a pipeline


def test_spacy_train_calibrates_on_dev_and_model_best_carries_it(tiny_bert, tmp_path, caplog):
    """calibrate_on_dev: each evaluation of `spacy train` fits the calibration
    on the dev data (with a warning that dev is reused), without BCW014 when
    training goes on; model-best carries it, loads in a new process (n_process=2
    too) and packages with it."""
    from spacy.cli.train import train

    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA, copies=6)
    with caplog.at_level(logging.INFO, logger="spacy.bertcat"), pytest.warns(UserWarning) as caught:
        train(
            CONFIGS / "bertcat.cfg",
            tmp_path / "out",
            overrides={
                "paths.train": corpus,
                "paths.dev": corpus,
                "components.bertcat.model.name": tiny_bert,
                "components.bertcat.model.max_length": 32,
                "components.bertcat.calibrate_on_dev": "isotonic",
                "training.max_steps": 4,
                "training.optimizer.learn_rate.total_steps": 4,
                "training.eval_frequency": 2,
                "training.batcher.size": 8,
            },
        )
    codes = " ".join(str(w.message) for w in caught)
    assert "BCW055" in codes and "BCW014" not in codes
    assert any("calibrated on 24 dev docs" in r.getMessage() for r in caplog.records)
    model = tmp_path / "out" / "model-best"
    nlp = spacy.load(model)
    pipe = nlp.get_pipe("bertcat")
    assert pipe.calibration.method == "isotonic" and pipe.calibration.alphas == [0.1, 0.05]
    texts = [text for text, _ in SINGLE_DATA] + ["a film", ""]
    expected = [doc.cats for doc in nlp.pipe(texts)]
    script = (
        "import json, sys, spacy\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "texts = json.loads(sys.argv[2])\n"
        "one = [[d.cats, d._.bertcat_uncalibrated_cats['bertcat'], d._.bertcat_labels['bertcat']] for d in nlp.pipe(texts)]\n"
        "two = [d.cats for d in nlp.pipe(texts, n_process=2, batch_size=2)]\n"
        "print(json.dumps({'one': one, 'two': two, 'method': nlp.get_pipe('bertcat').calibration.method}))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run(
        [sys.executable, "-c", script, str(model), json.dumps(texts)], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["method"] == "isotonic"
    for (cats, raw, decided), want, text in zip(got["one"], expected, texts):
        assert cats == pytest.approx(want, abs=1e-5)
        if text:
            assert decided == [max(raw, key=raw.get)] and max(cats, key=cats.get) == decided[0]
    for cats, want in zip(got["two"], expected):
        assert cats == pytest.approx(want, abs=1e-5)
    # `spacy package` ships the calibration: it is plain numbers in the component's cfg.
    (tmp_path / "packages").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "spacy", "package", str(model), str(tmp_path / "packages"), "--name", "calibrated",
         "--version", "0.0.1", "--build", "sdist", "--force"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    (sdist,) = list((tmp_path / "packages").rglob("*.tar.gz"))
    with tarfile.open(sdist) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.endswith("/bertcat/cfg")]
        cfg = json.loads(tar.extractfile(member).read())
    assert cfg["calibration"]["method"] == "isotonic"
    assert cfg["calibration"]["knots"] == pytest.approx(pipe.calibration.knots)
