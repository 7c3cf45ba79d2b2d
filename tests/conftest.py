import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    from .util import make_model_dir

    return make_model_dir(tmp_path_factory.mktemp("tiny-bert"), "bert")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory, tiny_bert):
    """Tiny BERT, DistilBERT and RoBERTa model directories."""
    from .util import make_model_dir

    models = {"bert": tiny_bert}
    for model_type in ("distilbert", "roberta"):
        models[model_type] = make_model_dir(tmp_path_factory.mktemp(f"tiny-{model_type}"), model_type)
    return models


@pytest.fixture(autouse=True)
def _seed():
    from thinc.api import fix_random_seed

    fix_random_seed(0)
