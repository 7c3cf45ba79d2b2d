import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two pytest workers on this 2-core machine: each (and each
    # process it starts) runs torch on one thread, since two processes spinning two
    # OpenMP threads each on two cores slow each other down many times over.
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, "1")


def pytest_addoption(parser):
    parser.addoption("--slow", action="store_true", help="include slow tests (real MiniLM training)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    from .support import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_bert):
    """Tiny BERT, DistilBERT and RoBERTa model directories."""
    from .support import make_model_dir

    models = {"bert": tiny_bert}
    for model_type in ("distilbert", "roberta"):
        models[model_type] = make_model_dir(tmp_path_factory.mktemp(f"tiny-{model_type}"), model_type)
    return models


@pytest.fixture(autouse=True)
def _seed():
    from thinc.api import fix_random_seed

    fix_random_seed(0)


# The family matrix (tests/test_families.py, test_version_drift.py): with
# BERTCAT_FAMILY_MATRIX=path, each family's check outcomes and encoder map are
# written there as JSON for scripts/family_matrix.py (`make family-matrix`).
_matrix = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    family = getattr(getattr(item, "callspec", None), "params", {}).get("family")
    if family is None or not os.environ.get("BERTCAT_FAMILY_MATRIX"):
        return
    entry = _matrix.setdefault(family.model_type, {"checks": {}})
    check = item.originalname
    if report.when == "call" or report.outcome != "passed":
        passed = report.outcome == "passed" and entry["checks"].get(check, True)
        entry["checks"][check] = "skipped" if report.skipped else passed
    for name, value in report.user_properties:
        entry[name] = value


def pytest_sessionfinish(session):
    path = os.environ.get("BERTCAT_FAMILY_MATRIX")
    if path and _matrix:
        import transformers

        with open(path, "w") as file:
            json.dump({"transformers": transformers.__version__, "families": _matrix}, file, indent=1, sort_keys=True)
