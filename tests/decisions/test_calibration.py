"""Calibrated scores, calibration metrics and conformal prediction sets: the math on
synthetic scores, then the `calibrate` and `evaluate` commands on small trained
models, and the calibrated pipeline loaded in a new process."""

import json
import os
import random
import subprocess
import sys
import warnings

import numpy
import pytest
import spacy
from spacy.tokens import DocBin

from spacy_bertcat.decisions.calibration import (
    Calibration,
    conformal_quantiles,
    conformal_report,
    fit_calibration,
    fit_temperature,
    prediction_sets,
)
from spacy_bertcat.decisions.metrics import calibration_metrics

from ..support import WORDS, make_examples, tiny_config


def softmax(z):
    e = numpy.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def synthetic(n, n_classes=4, seed=0, overconfidence=3.0):
    """Labels drawn from softmax(z); the 'model' reports overconfidence x z."""
    rng = numpy.random.default_rng(seed)
    z = rng.normal(size=(n, n_classes)) * 2
    p = softmax(z)
    y = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z * overconfidence, numpy.eye(n_classes)[y]


# The math


def test_temperature_scaling_fixes_overconfident_scores():
    logits, gold = synthetic(6000)
    cal = fit_calibration(
        list("abcd"), logits[:3000], gold[:3000], numpy.ones_like(gold[:3000]), exclusive=True, name="t"
    )
    assert cal.temperature == pytest.approx(3.0, rel=0.1)
    test_logits, test_gold = logits[3000:], gold[3000:]
    before = softmax(test_logits)
    after = softmax(cal.apply(numpy, test_logits))
    m_before = calibration_metrics(test_gold, before, exclusive=True)
    m_after = calibration_metrics(test_gold, after, exclusive=True)
    assert m_before["ece"] > 0.1 and m_after["ece"] < 0.03
    assert m_after["log_loss"] < m_before["log_loss"] and m_after["brier"] < m_before["brier"]
    assert (after.argmax(axis=1) == before.argmax(axis=1)).all()  # accuracy unchanged
    assert numpy.abs(cal.uncalibrate(after.astype("f")) - before).max() < 1e-5
    assert cal.fitted["after"]["ece"] < cal.fitted["before"]["ece"]


def test_temperature_of_calibrated_scores_is_one():
    logits, gold = synthetic(5000, overconfidence=1.0)
    assert fit_temperature(logits, gold.argmax(axis=1)) == pytest.approx(1.0, abs=0.1)


def test_platt_scaling_per_label_keeps_decisions():
    rng = numpy.random.default_rng(1)
    z = rng.normal(size=(4000, 3)) * 2 - 1
    gold = (rng.random(z.shape) < 1 / (1 + numpy.exp(-z))).astype(float)
    gold[:, 2] = 0.0
    gold[:3, 2] = 1.0  # too rare for its own scaling: pooled
    labels = ["x", "y", "rare"]
    model = 3 * z + 1
    cal = fit_calibration(labels, model, gold, numpy.ones_like(gold), exclusive=False, name="m", min_support=5)
    assert cal.slopes[0] == pytest.approx(1 / 3, rel=0.1) and cal.intercepts[0] == pytest.approx(-1 / 3, abs=0.1)
    assert cal.pooled == ["rare"]
    raw = 1 / (1 + numpy.exp(-model))
    calibrated = 1 / (1 + numpy.exp(-cal.apply(numpy, model)))
    for j, label in enumerate(labels):
        t = cal.calibrate_threshold(label, 0.5)
        assert ((raw[:, j] >= 0.5) == (calibrated[:, j] >= t)).mean() > 0.999
        assert cal.uncalibrate_threshold(label, t) == pytest.approx(0.5, abs=1e-6)
    before = calibration_metrics(gold[:, :2], raw[:, :2], exclusive=False)
    after = calibration_metrics(gold[:, :2], calibrated[:, :2], exclusive=False)
    assert after["ece"] < before["ece"] / 3


@pytest.mark.parametrize("alpha", [0.1, 0.05])
def test_conformal_coverage_on_synthetic_scores(alpha):
    """Coverage of split-conformal sets is within 2 points of 1 - alpha, averaged
    over random calibration/test splits, and the sets are not all labels."""
    logits, gold = synthetic(6000, n_classes=5, seed=3, overconfidence=2.0)
    scores = softmax(logits)
    coverages, sizes = [], []
    for seed in range(10):
        order = numpy.random.default_rng(seed).permutation(len(gold))
        cal, test = order[:1000], order[1000:]
        (q,) = conformal_quantiles(scores[cal], gold[cal].argmax(axis=1), [alpha])
        sets = prediction_sets(scores[test], q)
        coverages.append(sets[numpy.arange(len(test)), gold[test].argmax(axis=1)].mean())
        sizes.append(sets.sum(axis=1).mean())
    assert abs(numpy.mean(coverages) - (1 - alpha)) < 0.02
    assert all(abs(c - (1 - alpha)) < 0.03 for c in coverages)
    assert numpy.mean(sizes) < 4.5


def test_conformal_report_counts_sets():
    cal = Calibration("temperature", ["a", "b", "c"], alphas=[0.1], quantiles=[0.6])
    raw = numpy.asarray([[0.7, 0.2, 0.1], [0.35, 0.33, 0.32], [0.55, 0.45, 0.0]])
    gold = numpy.eye(3)[[0, 1, 1]]
    report = conformal_report(cal, gold, raw)["0.1"]
    # sets: {a}, {} (no class at 1 - p <= 0.6), {a, b}
    assert report["sizes"] == [1, 1, 1, 0] and report["coverage"] == pytest.approx(2 / 3)


def test_metrics_agree_with_scikit_learn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    logits, gold = synthetic(500, n_classes=3, seed=5)
    p = softmax(logits)
    m = calibration_metrics(gold, p, exclusive=True)
    assert m["log_loss"] == pytest.approx(sklearn_metrics.log_loss(gold.argmax(axis=1), p, labels=[0, 1, 2]))
    assert m["brier"] == pytest.approx(((p - gold) ** 2).sum(axis=1).mean())
    # ECE by hand: 15 equal-width bins of the top-class confidence.
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == gold.argmax(axis=1))
    bins = numpy.minimum((conf * 15 - 1e-12).astype(int), 14)
    ece = sum(abs(conf[bins == b].mean() - correct[bins == b].mean()) * (bins == b).sum() for b in set(bins)) / len(p)
    assert m["ece"] == pytest.approx(ece)
    binary = calibration_metrics(gold, p, exclusive=False)
    assert binary["brier"] == pytest.approx(sklearn_metrics.brier_score_loss(gold.ravel(), p.ravel()))
    assert binary["log_loss"] == pytest.approx(sklearn_metrics.log_loss(gold.ravel(), p.ravel()))
    assert sum(m["adaptive_bins"]["count"]) == 500 and max(m["adaptive_bins"]["count"]) < 60


def test_too_little_data_is_refused_or_flagged():
    logits, gold = synthetic(300)
    with pytest.raises(ValueError, match="BC056"):
        fit_calibration(list("abcd"), logits[:10], gold[:10], numpy.ones_like(gold[:10]), exclusive=True, name="c")
    with pytest.raises(ValueError, match="BC057"):
        fit_calibration(
            list("abcd"), logits[:30], gold[:30], numpy.ones_like(gold[:30]), exclusive=True, name="c", alphas=[0.01]
        )
    gold_without_d = gold[:100].copy()
    gold_without_d[:, 2] += gold_without_d[:, 3]
    gold_without_d[:, 3] = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit_calibration(
            list("abcd"), logits[:100], gold_without_d, numpy.ones_like(gold_without_d), exclusive=True, name="c"
        )
    codes = " ".join(str(w.message) for w in caught)
    assert "BCW012" in codes and "BCW013" in codes and "'d'" in codes


# Pipelines


def noisy_rows(n, seed, noise=0.3):
    """Two topics told apart by their words, with a share of the labels flipped: a
    model trained to fit them all is over-confident on new documents."""
    rng = random.Random(seed)
    vocab = {
        "sport": ["team", "match", "goal", "win", "game"],
        "business": ["market", "shares", "bank", "profit", "vote"],
    }
    rows = []
    for _ in range(n):
        label = rng.choice(sorted(vocab))
        words = rng.sample(vocab[label], 3) + rng.sample(WORDS[:20], 3)
        rng.shuffle(words)
        gold = label if rng.random() > noise else ("business" if label == "sport" else "sport")
        rows.append({"text": " ".join(words), "label": gold})
    return rows


def to_spacy(rows, labels, path):
    nlp = spacy.blank("en")
    db = DocBin()
    for row in rows:
        doc = nlp.make_doc(row["text"])
        doc.cats = {label: float(label == row["label"]) for label in labels}
        db.add(doc)
    db.to_disk(path)
    return path


@pytest.fixture(scope="module")
def overconfident(tiny_bert, tmp_path_factory):
    """A bertcat pipeline trained to memorize noisy labels, with held-out and test data."""
    from thinc.api import fix_random_seed

    fix_random_seed(0)
    tmp = tmp_path_factory.mktemp("overconfident")
    labels = ["business", "sport"]
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    train = noisy_rows(48, seed=0)
    examples = make_examples(nlp, [(r["text"], {label: float(label == r["label"]) for label in labels}) for r in train])
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 3e-3
    for _ in range(60):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp / "model")
    return {
        "model": tmp / "model",
        "dev": to_spacy(noisy_rows(300, seed=1), labels, tmp / "dev.spacy"),
        "test": to_spacy(noisy_rows(300, seed=2), labels, tmp / "test.spacy"),
        "tmp": tmp,
    }


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "spacy_bertcat", *map(str, args)], capture_output=True, text=True)


def test_calibrate_and_evaluate_from_the_cli(overconfident):
    tmp = overconfident["tmp"]
    out = run_cli("calibrate", overconfident["model"], overconfident["dev"], "-o", tmp / "calibrated")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "temperature" in out.stdout and "Saved the calibrated pipeline" in out.stdout
    for name in ("uncalibrated", "calibrated"):
        model = overconfident["model"] if name == "uncalibrated" else tmp / "calibrated"
        out = run_cli("evaluate", model, overconfident["test"], "-o", tmp / f"report-{name}")
        assert out.returncode == 0, out.stdout + out.stderr
    before = json.loads((tmp / "report-uncalibrated" / "report.json").read_text())
    after = json.loads((tmp / "report-calibrated" / "report.json").read_text())
    # The over-confident model's calibration error on new data is cut; accuracy is unchanged.
    assert after["summary"]["accuracy"] == before["summary"]["accuracy"]
    assert before["summary"]["ece"] > 0.1
    assert after["summary"]["ece"] < before["summary"]["ece"] / 2
    assert after["summary"]["log_loss"] < before["summary"]["log_loss"]
    # The calibrated pipeline's report shows both, and the prediction sets.
    assert after["calibration"]["uncalibrated"]["ece"] == pytest.approx(before["summary"]["ece"], abs=1e-5)
    assert before["calibration"]["uncalibrated"] is None and "conformal" not in before
    for alpha, info in after["conformal"].items():
        assert info["target"] == 1 - float(alpha) and info["coverage"] >= info["target"] - 0.05
        assert sum(info["sizes"]) == 300
    markdown = (tmp / "report-calibrated" / "report.md").read_text()
    assert (
        "## Calibration" in markdown and "| calibrated (doc.cats) |" in markdown and "### Prediction sets" in markdown
    )
    assert "![reliability diagram](reliability.png)" in markdown
    assert (tmp / "report-calibrated" / "reliability.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "not calibrated" in (tmp / "report-uncalibrated" / "report.md").read_text()
    # predict writes each row's prediction set.
    source = tmp / "new.jsonl"
    source.write_text('{"text": "team match goal"}\n{"text": ""}\n')
    out = run_cli("predict", tmp / "calibrated", source, tmp / "predictions.jsonl")
    assert out.returncode == 0, out.stdout + out.stderr
    rows = [json.loads(line) for line in (tmp / "predictions.jsonl").read_text().splitlines()]
    assert isinstance(rows[0]["prediction_set"], list) and rows[1]["prediction_set"] == []


def test_calibrated_pipeline_in_a_new_process(overconfident):
    """doc.cats are calibrated; the model's own scores, the sets and the decision
    are reachable; loading needs nothing but the folder."""
    tmp = overconfident["tmp"]
    target = tmp / "calibrated-api"
    if not target.exists():
        out = run_cli(
            "calibrate", overconfident["model"], overconfident["dev"], "-o", target, "--method", "temperature"
        )
        assert out.returncode == 0, out.stdout + out.stderr
    texts = ["team match goal", "market shares bank the", "", "the a an is"]
    original = spacy.load(overconfident["model"])
    expected_raw = [doc.cats for doc in original.pipe(texts)]
    script = (
        "import json, sys, spacy\n"
        "nlp = spacy.load(sys.argv[1]); pipe = nlp.get_pipe('bertcat')\n"
        "docs = list(nlp.pipe(json.loads(sys.argv[2])))\n"
        "print(json.dumps({'cats': [d.cats for d in docs], 'raw': [d._.bertcat_uncalibrated_cats['bertcat'] for d in docs],\n"
        "  'sets': [d._.bertcat_sets['bertcat'] for d in docs], 'labels': [d._.bertcat_labels['bertcat'] for d in docs],\n"
        "  'sets_05': [pipe.prediction_set(d, 0.05) for d in docs], 'temperature': pipe.calibration.temperature}))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp / "no-cache"))
    out = subprocess.run(
        [sys.executable, "-c", script, str(target), json.dumps(texts)], capture_output=True, text=True, env=env, cwd=tmp
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["temperature"] > 1.0  # the model was over-confident
    for cats, raw, expected in zip(got["cats"], got["raw"], expected_raw):
        assert raw == pytest.approx(expected, abs=1e-5)
        logits = numpy.log(numpy.asarray([expected["business"], expected["sport"]]))
        assert [cats["business"], cats["sport"]] == pytest.approx(
            softmax(logits[None] / got["temperature"])[0].tolist(), abs=1e-5
        )
    for text, cats, labels, in_set, in_set_05 in zip(texts, got["cats"], got["labels"], got["sets"], got["sets_05"]):
        ranked = sorted(cats, key=cats.get, reverse=True)
        assert in_set == ranked[: len(in_set)] and in_set_05 == ranked[: len(in_set_05)]
        assert len(in_set_05) >= len(in_set)
        if text:
            assert labels == ranked[:1]
        else:
            assert in_set == [] and labels == []


def test_calibrate_refuses_bad_input_and_writes_nothing(overconfident, tmp_path):
    few = to_spacy(noisy_rows(8, seed=4), ["business", "sport"], tmp_path / "few.spacy")
    out = run_cli("calibrate", overconfident["model"], few, "-o", tmp_path / "out")
    assert out.returncode == 1 and "BC056" in out.stdout and "8 usable documents" in " ".join(out.stdout.split())
    out = run_cli("calibrate", overconfident["model"], overconfident["dev"], "-o", tmp_path / "out", "--alpha", "0.001")
    assert out.returncode == 1 and "BC057" in out.stdout
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    assert len(out.stdout.strip().splitlines()) < 8  # a message, not a traceback


def test_training_a_calibrated_model_drops_the_calibration(overconfident):
    nlp = spacy.load(overconfident["model"])
    pipe = nlp.get_pipe("bertcat")
    logits, gold = synthetic(200, n_classes=2)
    pipe.set_calibration(fit_calibration(pipe.labels, logits, gold, numpy.ones_like(gold), exclusive=True, name="b"))
    assert pipe.calibration is not None
    examples = make_examples(nlp, [("team match goal", {"sport": 1.0, "business": 0.0})])
    with pytest.warns(UserWarning, match="BCW014"):
        nlp.update(examples, sgd=nlp.create_optimizer())
    assert pipe.calibration is None and pipe.cfg["calibration"] is None


def multi_rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        labels = [label for label in ("business", "sport", "tech") if rng.random() < 0.4]
        words = {"business": ["market", "bank"], "sport": ["team", "goal"], "tech": ["phone", "software"]}
        text = " ".join(w for label in labels for w in words[label]) + " " + " ".join(rng.sample(WORDS[:20], 3))
        rows.append((text, {label: float(label in labels) for label in ("business", "sport", "tech")}))
    return rows


def test_multilabel_calibration_keeps_decisions(tiny_bert, tmp_path):
    from spacy_bertcat.evaluation.calibrate import calibrate_pipe
    from spacy_bertcat.evaluation.report import gold_matrix

    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat_multilabel", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, multi_rows(40, seed=0))
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 3e-3
    for _ in range(30):
        nlp.update(examples, sgd=optimizer)
    pipe = nlp.get_pipe("bertcat_multilabel")
    pipe.set_thresholds({"business": 0.3, "sport": 0.6})
    held_out = [eg.reference for eg in make_examples(nlp, multi_rows(120, seed=1))]
    texts = [text for text, _ in multi_rows(50, seed=2)]
    before = [doc._.bertcat_labels["bertcat_multilabel"] for doc in nlp.pipe(texts)]
    raw_before = [doc.cats for doc in nlp.pipe(texts)]
    gold, mask = gold_matrix(held_out, pipe.labels)
    result = calibrate_pipe(pipe, held_out, gold, mask)
    assert result.calibration.method == "platt" and result.thresholds_before["business"] == pytest.approx(0.3)
    assert pipe.thresholds != result.thresholds_before
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    docs = list(loaded.pipe(texts))
    assert [doc._.bertcat_labels["bertcat_multilabel"] for doc in docs] == before
    for doc, raw in zip(docs, raw_before):
        assert doc._.bertcat_uncalibrated_cats["bertcat_multilabel"] == pytest.approx(raw, abs=1e-5)
    assert loaded.get_pipe("bertcat_multilabel").uncalibrated_thresholds == pytest.approx(
        result.thresholds_before, abs=1e-6
    )
    # Removing the calibration restores the thresholds on the model's own scores.
    pipe.set_calibration(None)
    assert pipe.thresholds == pytest.approx(result.thresholds_before, abs=1e-6)


def test_calibrate_a_multilabel_pipeline_from_the_cli(tiny_bert, tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat_multilabel", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, multi_rows(40, seed=0))
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "model")
    rows = [{"text": text, "labels": [k for k, v in cats.items() if v]} for text, cats in multi_rows(60, seed=3)]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = run_cli("calibrate", tmp_path / "model", tmp_path / "dev.jsonl")  # in place
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Platt scaling" in out.stdout and "BCW012" in out.stdout
    assert spacy.load(tmp_path / "model").get_pipe("bertcat_multilabel").calibration.method == "platt"
    assert not list(tmp_path.glob(".model*"))  # no temporary folder left behind


def test_calibrate_chooses_by_cross_validation_and_changes_decisions_only_when_allowed(overconfident, tmp_path):
    """The default prints the cross-validation table it chose from and keeps
    every decision; a decision-changing method is refused without
    --allow-decision-changes, and with it (a subprocess, as users run it) the
    changed decisions and the accuracy before and after are reported."""
    from typer.testing import CliRunner

    from spacy_bertcat.cli import app

    runner = CliRunner()
    result = runner.invoke(
        app, ["calibrate", str(overconfident["model"]), str(overconfident["dev"]), "-o", str(tmp_path / "auto")]
    )
    assert result.exit_code == 0, result.output
    assert "Choosing the method: 5-fold cross-validation on 300 docs" in result.output
    for method in ("none", "temperature", "isotonic", "histogram"):
        assert method in result.output
    assert "vector" not in result.output and "<- chosen" in result.output
    chosen = spacy.load(tmp_path / "auto").get_pipe("bertcat").calibration
    assert chosen.keeps_top_class and chosen.fitted["decisions_changed"] == 0
    refused = runner.invoke(
        app,
        [
            "calibrate",
            str(overconfident["model"]),
            str(overconfident["dev"]),
            "-o",
            str(tmp_path / "no"),
            "--method",
            "vector",
        ],
    )
    assert refused.exit_code == 1 and "BC160" in refused.output and not (tmp_path / "no").exists()
    out = run_cli(
        "calibrate", overconfident["model"], overconfident["dev"], "-o", tmp_path / "dirichlet",
        "--method", "dirichlet", "--allow-decision-changes",
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Dirichlet calibration" in out.stdout and "Decisions changed on the held-out data:" in out.stdout
    assert "accuracy" in out.stdout
    loaded = spacy.load(tmp_path / "dirichlet").get_pipe("bertcat")
    assert loaded.calibration.method == "dirichlet" and not loaded.calibration.keeps_top_class
    # The component now decides on doc.cats (its calibrated scores).
    for doc in loaded_pipeline_docs(tmp_path / "dirichlet"):
        assert doc._.bertcat_labels["bertcat"] == [max(doc.cats, key=doc.cats.get)]


def loaded_pipeline_docs(path):
    nlp = spacy.load(path)
    return list(nlp.pipe(["team match goal", "market shares bank", "the a an is", "goal bank vote win"]))
