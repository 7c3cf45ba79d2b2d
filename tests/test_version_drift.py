"""A pipeline saved under one transformers major version loads under the other
(4.53 with spacy-transformers 1.4.0, and the newest 5.x). CI runs this in the
transformers-5 suite with BERTCAT_OTHER_PYTHON pointing at the transformers-4
environment's Python (see the Makefile's test-tf5)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import transformers

from .support import assert_same_cats
from .support.families import FAMILIES

OTHER_PYTHON = os.environ.get("BERTCAT_OTHER_PYTHON")
ROOT = Path(__file__).parent.parent
pytestmark = [
    pytest.mark.transformers,  # `make test-tf5` runs it under transformers 5 too
    pytest.mark.skipif(
        not OTHER_PYTHON or not Path(OTHER_PYTHON).exists(), reason="set BERTCAT_OTHER_PYTHON to another environment"
    ),
]


def worker(python: str, command: str, path: Path) -> str:
    out = subprocess.run(
        [python, "-m", "tests.drift_worker", command, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("direction", ["other_saves", "this_saves"])
def test_pipeline_loads_across_transformers_versions(tmp_path, direction):
    saver, loader = (OTHER_PYTHON, sys.executable) if direction == "other_saves" else (sys.executable, OTHER_PYTHON)
    saved_with = worker(saver, "save", tmp_path)
    loaded_with = worker(loader, "predict", tmp_path)
    assert saved_with != loaded_with  # really two versions
    assert transformers.__version__ in (saved_with, loaded_with)
    before = json.loads((tmp_path / f"cats-{saved_with}.json").read_text())
    after = json.loads((tmp_path / f"cats-{loaded_with}.json").read_text())
    assert_same_cats(after, before)


@pytest.fixture(scope="module")
def family_drift(tmp_path_factory):
    """Per direction, one pipeline per encoder family saved under one transformers
    major version and loaded under the other (run once, checked per family)."""
    results = {}

    def run(direction):
        if direction not in results:
            root = tmp_path_factory.mktemp(direction)
            saver, loader = (
                (OTHER_PYTHON, sys.executable) if direction == "other_saves" else (sys.executable, OTHER_PYTHON)
            )
            saved_with = worker(saver, "save-families", root)
            loaded_with = worker(loader, "predict-families", root)
            assert saved_with != loaded_with
            before = json.loads((root / f"predictions-{saved_with}.json").read_text())
            after = json.loads((root / f"predictions-{loaded_with}.json").read_text())
            results[direction] = (before, after)
        return results[direction]

    return run


@pytest.mark.parametrize("family", [pytest.param(f, id=f.model_type) for f in FAMILIES if not f.tf5_only])
@pytest.mark.parametrize("direction", ["other_saves", "this_saves"])
def test_family_loads_across_versions(family_drift, direction, family):
    before, after = family_drift(direction)
    result = after[family.model_type]
    assert "error" not in result, result.get("error")
    assert_same_cats(result["cats"], before[family.model_type]["cats"])
