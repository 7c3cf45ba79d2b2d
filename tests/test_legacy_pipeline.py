"""A pipeline saved by spacy-bertcat 0.1.0 before the package was reorganised loads and
predicts identically, in a fresh process, offline (tests/fixtures/legacy-0.1.0, made by
tests/fixtures/make_legacy_pipeline.py at the last commit of the old layout)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# Depends on the transformers version: `make test-tf5` runs it under transformers 5 too.
pytestmark = pytest.mark.transformers

FIXTURE = Path(__file__).parent / "fixtures" / "legacy-0.1.0"
SCRIPT = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import spacy
nlp = spacy.load(sys.argv[1])
texts = json.loads(sys.argv[2])
out = []
for doc in nlp.pipe(texts):
    out.append({"cats": doc.cats, "bertcat_cats": doc._.bertcat_cats, "bertcat_labels": doc._.bertcat_labels,
                "bertcat_sets": doc._.bertcat_sets, "bertcat_uncalibrated_cats": doc._.bertcat_uncalibrated_cats})
thresholds = {name: dict(nlp.get_pipe(name).thresholds) for name in nlp.pipe_names}
print(json.dumps({"docs": out, "thresholds": thresholds}))
"""


def _predict(folder: Path, texts, tmp_path) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "no-cache"))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(folder), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _assert_close(found, expected, path="", tol=1e-5):
    if isinstance(expected, dict):
        assert isinstance(found, dict) and sorted(found) == sorted(expected), path
        for key in expected:
            _assert_close(found[key], expected[key], f"{path}.{key}", tol)
    elif isinstance(expected, list):
        assert isinstance(found, list) and len(found) == len(expected), path
        for i, (f, e) in enumerate(zip(found, expected)):
            _assert_close(f, e, f"{path}[{i}]", tol)
    elif isinstance(expected, float):
        assert found == pytest.approx(expected, abs=tol), path
    else:
        assert found == expected, path


def test_legacy_pipeline_predicts_identically(tmp_path):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    found = _predict(FIXTURE / "pipeline", expected["texts"], tmp_path)
    # Scores, decisions, prediction sets and uncalibrated scores of both factories.
    _assert_close(found["docs"], [{k: v for k, v in d.items() if k != "text"} for d in expected["docs"]])
    _assert_close(found["thresholds"], expected["thresholds"])


def test_legacy_optimized_pipeline_predicts_identically(tmp_path):
    pytest.importorskip("onnxruntime")
    expected = json.loads((FIXTURE / "expected_optimized.json").read_text())
    found = _predict(FIXTURE / "optimized", expected["texts"], tmp_path)
    for doc, want in zip(found["docs"], expected["docs"]):
        _assert_close(doc["cats"], want["cats"])
        assert doc["bertcat_labels"] == want["bertcat_labels"]
