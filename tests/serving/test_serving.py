"""Serving on ONNX Runtime (`spacy-bertcat optimize`, serving/onnx.py): the optimized
pipeline loads in a fresh process with spacy.load and predicts what the original
does (float32: to float noise; int8: closely), keeps chunking, aggregation,
thresholds and calibration, works with n_process and spaCy's own verbs, refuses to
train, and fails clearly where ONNX Runtime is missing. Every encoder family's
export is checked in test_families.py (test_family_onnx)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy

from spacy_bertcat.evaluation.calibrate import calibrate_pipe
from spacy_bertcat.evaluation.report import gold_matrix

from ..support import MULTI_DATA, SINGLE_DATA, assert_same_cats, make_examples, tiny_config

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from spacy_bertcat.serving import OnnxWindowClassifier, optimize_pipe  # noqa: E402

# Depends on the transformers version: `make test-tf5` runs it under transformers 5 too.
pytestmark = pytest.mark.transformers

ROOT = Path(__file__).resolve().parents[2]
WINDOWS = {"@misc": "spacy-bertcat.sliding_window.v1", "stride": 10, "aggregation": "attention", "max_windows": 3}
TEXTS = [text for text, _ in SINGLE_DATA] + ["the team won the match and the bank profit was good " * 12, ""]

PREDICT = (
    "import json, sys\n"
    "if sys.argv[3] == 'no-onnxruntime':\n"
    "    sys.modules['onnxruntime'] = None  # import onnxruntime fails\n"
    "import spacy\n"
    "nlp = spacy.load(sys.argv[1])\n"
    "nlp('a first prediction makes the session in this process')\n"
    "docs = list(nlp.pipe(json.loads(sys.argv[2]), n_process=int(sys.argv[4]), batch_size=2))\n"
    "print(json.dumps([[d.cats, d._.bertcat_labels, d._.bertcat_uncalibrated_cats, d._.bertcat_sets] for d in docs]))\n"
)


def run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )


def predict_in_new_process(path, texts=TEXTS, onnxruntime=True, n_process=1):
    out = run("-c", PREDICT, path, json.dumps(texts), "yes" if onnxruntime else "no-onnxruntime", n_process)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def trained_nlp(name, factory="bertcat", data=SINGLE_DATA, steps=10, **config):
    nlp = spacy.blank("en")
    nlp.add_pipe(factory, config=tiny_config(name, **{"chunking": WINDOWS, "max_length": 32, **config}))
    examples = make_examples(nlp, data)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 1e-2
    for _ in range(steps):
        nlp.update(examples, sgd=optimizer)
    return nlp, examples


@pytest.fixture(scope="module")
def original(tiny_bert, tmp_path_factory):
    """A trained bertcat pipeline (sliding windows, attention aggregation) with a
    calibration and prediction sets, saved, and what it predicts."""
    path = tmp_path_factory.mktemp("original") / "model"
    nlp, _ = trained_nlp(tiny_bert)
    # calibrated on other texts than TEXTS: a conformal quantile taken on a text's own
    # score would put that text exactly on the set's boundary, where float noise decides
    held_out = make_examples(
        nlp,
        [
            (f"{text} {word}", cats)
            for text, cats in SINGLE_DATA
            for word in ("indeed", "so", "then", "now", "too", "again")
        ],
    )
    docs = [eg.reference for eg in held_out]
    gold, mask = gold_matrix(docs, nlp.get_pipe("bertcat").labels)
    # top-label isotonic: the non-parametric map must travel into the optimized pipeline too
    calibrate_pipe(nlp.get_pipe("bertcat"), docs, gold, mask, alphas=[0.2], method="isotonic")
    nlp.to_disk(path)
    return path, [
        [d.cats, d._.bertcat_labels, d._.bertcat_uncalibrated_cats, d._.bertcat_sets] for d in nlp.pipe(TEXTS)
    ]


@pytest.fixture(scope="module")
def optimized(original, tmp_path_factory):
    """The original optimized both ways by the CLI."""
    root = tmp_path_factory.mktemp("optimized")
    paths = {}
    for kind in ("fp32", "int8"):
        out = run("-m", "spacy_bertcat", "optimize", original[0], root / kind, f"--{kind}")
        assert out.returncode == 0, out.stderr[-3000:] + out.stdout[-3000:]
        paths[kind] = root / kind
    return paths


def test_float32_serving_predicts_what_the_original_does_in_a_new_process(original, optimized):
    """doc.cats (calibrated), the decisions, the uncalibrated scores and the
    prediction sets, from `spacy.load` in a fresh process: chunking, attention
    aggregation, calibration and sets survive the export."""
    got = predict_in_new_process(optimized["fp32"])
    expected = original[1]
    assert_same_cats([g[0] for g in got], [e[0] for e in expected])
    assert_same_cats([g[2]["bertcat"] for g in got[:-1]], [e[2]["bertcat"] for e in expected[:-1]])
    assert [g[1] for g in got] == [e[1] for e in expected]
    assert [g[3] for g in got] == [e[3] for e in expected]


def test_int8_serving_is_close(original, optimized):
    got = predict_in_new_process(optimized["int8"])
    expected = original[1]
    scores = lambda rows: [list(r[2]["bertcat"].values()) for r in rows[:-1]]  # uncalibrated
    assert numpy.ptp(scores(expected)) > 0.1  # the model tells the texts apart
    numpy.testing.assert_allclose(scores(got), scores(expected), atol=0.05)
    assert [g[1] for g in got] == [e[1] for e in expected]
    meta = json.loads((optimized["int8"] / "meta.json").read_text())
    assert meta["bertcat_serving"]["bertcat"]["int8"] is True
    assert any(r.startswith("onnxruntime") for r in meta["requirements"])  # `spacy package` installs it


def test_serving_with_n_process(optimized):
    """n_process: forked workers (after a first prediction made the parent's
    session) predict what one process does; each makes its own session."""
    one = predict_in_new_process(optimized["int8"], n_process=1)
    two = predict_in_new_process(optimized["int8"], n_process=2)
    assert_same_cats([g[0] for g in two], [g[0] for g in one])


def test_spacy_evaluate_and_predict_on_an_optimized_pipeline(optimized, tmp_path):
    from ..support import write_corpus

    corpus = write_corpus(tmp_path / "dev.spacy", SINGLE_DATA)
    out = run("-m", "spacy", "evaluate", optimized["int8"], corpus, "--output", tmp_path / "scores.json")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "cats_score" in json.loads((tmp_path / "scores.json").read_text())
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    out = run("-m", "spacy_bertcat", "predict", optimized["int8"], tmp_path / "in.jsonl", tmp_path / "out.jsonl")
    assert out.returncode == 0, out.stderr[-3000:]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == len(TEXTS)


def test_optimize_check_compares_with_the_original(original, tmp_path):
    (tmp_path / "dev.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": max(c, key=c.get)}) + "\n" for t, c in SINGLE_DATA)
    )
    out = run("-m", "spacy_bertcat", "optimize", original[0], tmp_path / "fast", "--check", tmp_path / "dev.jsonl")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "same decisions" in out.stdout and "accuracy" in out.stdout


def test_an_optimized_pipeline_does_not_train(optimized):
    nlp = spacy.load(optimized["int8"])
    with pytest.raises(ValueError, match="BC065"):
        nlp.update(make_examples(nlp, SINGLE_DATA))


def test_optimizing_twice_or_in_place_fails_clearly(optimized, tmp_path):
    out = run("-m", "spacy_bertcat", "optimize", optimized["int8"], tmp_path / "again")
    assert out.returncode == 1 and "BC066" in out.stdout and "Traceback" not in out.stderr
    assert not (tmp_path / "again").exists()
    out = run("-m", "spacy_bertcat", "optimize", optimized["int8"], optimized["int8"])
    assert out.returncode == 1 and "BC080" in out.stdout


def test_loading_without_onnxruntime_says_what_to_install(optimized):
    out = run("-c", PREDICT, optimized["int8"], json.dumps(TEXTS), "no-onnxruntime", 1)
    assert out.returncode != 0 and "BC063" in out.stderr and "spacy-bertcat[onnx]" in out.stderr


def test_multilabel_thresholds_survive(tiny_bert, tmp_path):
    nlp, _ = trained_nlp(tiny_bert, "bertcat_multilabel", MULTI_DATA)
    pipe = nlp.get_pipe("bertcat_multilabel")
    pipe.set_thresholds({label: 0.3 + 0.1 * i for i, label in enumerate(pipe.labels)})
    texts = [text for text, _ in MULTI_DATA]
    expected = [(doc.cats, doc._.bertcat_labels) for doc in nlp.pipe(texts)]
    optimize_pipe(pipe, int8=False)
    assert isinstance(pipe.model.shims[0].model, OnnxWindowClassifier)
    nlp.to_disk(tmp_path / "fast")
    nlp = spacy.load(tmp_path / "fast")
    got = [(doc.cats, doc._.bertcat_labels) for doc in nlp.pipe(texts)]
    assert_same_cats([g[0] for g in got], [e[0] for e in expected])
    assert [g[1] for g in got] == [e[1] for e in expected]


def test_lora_adapters_are_merged_into_the_export(tiny_bert):
    pytest.importorskip("peft")
    lora = {"@misc": "spacy-bertcat.lora.v1", "r": 4, "alpha": 8.0, "dropout": 0.0}
    nlp, _ = trained_nlp(tiny_bert, adapter=lora)
    expected = [doc.cats for doc in nlp.pipe(TEXTS)]
    optimize_pipe(nlp.get_pipe("bertcat"), int8=False)
    assert_same_cats([doc.cats for doc in nlp.pipe(TEXTS)], expected)


def test_optimize_never_replaces_a_folder(original, tmp_path):
    """OUTPUT_DIR must be new or empty: `optimize model-best training` must not
    delete `training/` (saves replace their target), nor write into MODEL."""
    keep = tmp_path / "training"
    keep.mkdir()
    (keep / "model-last").mkdir()
    out = run("-m", "spacy_bertcat", "optimize", original[0], keep)
    assert out.returncode == 1 and "BC081" in out.stdout and (keep / "model-last").exists()
    out = run("-m", "spacy_bertcat", "optimize", original[0], original[0] / "fast")
    assert out.returncode == 1 and "BC080" in out.stdout and not (original[0] / "fast").exists()


def test_optimize_right_after_training_checks_without_dropout(tiny_bert):
    """After nlp.update the model is in train mode; the export and its check run
    with dropout off (else torch's reference is noisy and the check fails), and the
    model's mode is left as it was. The int8 graph is run before it is kept."""
    nlp, _ = trained_nlp(tiny_bert, hidden_dropout=0.3, attention_dropout=0.3)
    shim = nlp.get_pipe("bertcat").model.shims[0]
    assert shim.model.training
    made = optimize_pipe(nlp.get_pipe("bertcat"), int8=True)
    assert made["fp32_check"] < 1e-3 and 0 <= made["int8_check"] < 1.0
