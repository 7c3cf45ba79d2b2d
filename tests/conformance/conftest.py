"""Fixtures of the conformance suite: each factory is trained once for the whole
suite (`trained`), and each test module shares one read-only copy per factory
(`shared`: tests that train, change settings or add labels load their own copy
with `trained(factory).load()`)."""

from typing import Callable, Dict

import pytest
from spacy.language import Language

from .shared import Trained, train


@pytest.fixture(scope="package")
def trained(tiny_bert) -> Callable[[str], Trained]:
    """RETURNS: factory -> Trained, trained on first use."""
    cache: Dict[str, Trained] = {}

    def get(factory: str) -> Trained:
        if factory not in cache:
            cache[factory] = train(tiny_bert, factory)
        return cache[factory]

    return get


@pytest.fixture(scope="module")
def shared(trained) -> Callable[[str], Language]:
    """RETURNS: factory -> the module's copy of the trained pipeline. Read only: no
    updates, settings or labels (a loaded pipeline has not been updated since it
    was scored, so nlp.evaluate leaves it as it is)."""
    cache: Dict[str, Language] = {}

    def get(factory: str) -> Language:
        if factory not in cache:
            cache[factory] = trained(factory).load()
        return cache[factory]

    return get
