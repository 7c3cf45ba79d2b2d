"""spaCy's pipeline serialization tests (spacy/tests/serialize/test_serialize_pipeline.py,
spaCy 3.8) for a text classifier, adapted to bertcat and bertcat_multilabel.

What became of spaCy's tests:

Adapted
  test_serialize_textcat_empty (issue 1105)    -> test_serialize_empty
  test_serialize_parser_roundtrip_bytes,
  test_serialize_tagger_roundtrip_bytes        -> test_serialize_roundtrip_bytes
  test_serialize_parser_roundtrip_disk,
  test_serialize_tagger_roundtrip_disk         -> test_serialize_roundtrip_disk
  test_serialize_parser_strings,
  test_serialize_tagger_strings                -> test_serialize_strings
  test_serialize_pipe_exclude                  -> test_serialize_pipe_exclude (a component
                                                  whose cfg is left out needs its labels
                                                  first: see the test), test_to_disk_exclude
  test_serialize_pipeline_disable_enable       -> test_serialize_pipeline_disable_enable
  test_issue4042_bug2 (labels added after initialize are saved)
                                               -> test_labels_added_after_initialize_are_saved
                                                  (issue 24 fix)
  test_issue4725_1 (pickling keeps the cfg)    -> test_pickle
  the IO part of test_textcat.py's test_overfitting_IO -> test_spacy_load

Not applicable: test_to_from_bytes (the parser's transition system),
test_serialize_sentencerecognizer, test_issue_3526_* and test_issue4042 (entity
ruler), test_issue3456 (a tagger; an empty string in nlp.pipe is
test_pipe_with_batch_size of test_trainable_pipe_conformance.py),
test_serialize_custom_trainable_pipe (malformed custom pipes), test_load_without_strings
(the vocab only).
"""

import pickle

import pytest
import spacy
from spacy import util
from spacy.lang.en import English
from spacy.vocab import Vocab
from thinc.api import Adam

from ..support import assert_same_cats, assert_same_weights, tiny_config
from .shared import FACTORIES, LABELS


def blank_component(name, factory, nlp=None):
    nlp = English() if nlp is None else nlp
    return nlp.add_pipe(factory, config=tiny_config(name))


@pytest.mark.parametrize("factory", FACTORIES)
def test_serialize_empty(tiny_bert, factory):
    """An uninitialized component (no weights yet) saves and loads (spaCy's issue 1105)."""
    pipe = blank_component(tiny_bert, factory)
    pipe.add_label("A")
    pipe.add_label("B")
    data = pipe.to_bytes(exclude=["vocab"])
    loaded = blank_component(tiny_bert, factory).from_bytes(data)
    assert loaded.labels == ("A", "B")
    assert loaded.to_bytes(exclude=["vocab"]) == data


@pytest.mark.parametrize("factory", FACTORIES)
def test_serialize_roundtrip_bytes(trained, shared, tiny_bert, factory):
    nlp = shared(factory)
    pipe = nlp.get_pipe(factory)
    bytes_1 = pipe.to_bytes(exclude=["vocab"])
    new_pipe = blank_component(tiny_bert, factory).from_bytes(bytes_1)
    bytes_2 = new_pipe.to_bytes(exclude=["vocab"])
    assert len(bytes_2) == len(bytes_1)
    assert bytes_2 == bytes_1
    assert new_pipe.to_bytes() == new_pipe.from_bytes(new_pipe.to_bytes()).to_bytes()
    assert_same_weights(pipe, new_pipe)
    texts = trained(factory).texts
    assert_same_cats([new_pipe(nlp.make_doc(t)).cats for t in texts], [pipe(nlp.make_doc(t)).cats for t in texts])


@pytest.mark.parametrize("factory", FACTORIES)
def test_serialize_roundtrip_disk(shared, tiny_bert, tmp_path, factory):
    pipe = shared(factory).get_pipe(factory)
    pipe.to_disk(tmp_path / "pipe1")
    pipe.to_disk(tmp_path / "pipe2")
    pipe_1 = blank_component(tiny_bert, factory).from_disk(tmp_path / "pipe1")
    pipe_2 = blank_component(tiny_bert, factory).from_disk(tmp_path / "pipe2")
    assert pipe_1.to_bytes() == pipe_2.to_bytes()
    assert pipe_1.to_bytes(exclude=["vocab"]) == pipe.to_bytes(exclude=["vocab"])


@pytest.mark.parametrize("factory", FACTORIES)
def test_serialize_strings(tiny_bert, tmp_path, factory):
    """Custom labels are saved in the component's vocab and loaded into the vocab of
    another pipeline."""
    label = "SomeWeirdLabel"
    assert label not in English().vocab.strings
    pipe = blank_component(tiny_bert, factory)
    pipe.add_label(label)
    pipe.add_label("Other")
    assert label in pipe.vocab.strings
    pipe.to_disk(tmp_path / "pipe")
    other = English(vocab=Vocab())
    assert label not in other.vocab.strings
    loaded = blank_component(tiny_bert, factory, other).from_disk(tmp_path / "pipe")
    assert label in loaded.vocab.strings
    assert loaded.labels == (label, "Other")


@pytest.mark.parametrize("factory", FACTORIES)
def test_serialize_pipe_exclude(trained, tiny_bert, factory):
    """cfg is saved and loaded unless excluded. Adapted: a bertcat component's labels
    live in its cfg and must match its head, so the component that loads without
    the cfg has its labels already; one without labels refuses the weights (BC013)
    (deliberate difference: textcat loads them and has no labels)."""
    model = trained(factory)
    pipe = model.load().get_pipe(factory)
    pipe.cfg["foo"] = "bar"

    def get_new_pipe():
        new_pipe = blank_component(tiny_bert, factory)
        for label in pipe.labels:
            new_pipe.add_label(label)
        return new_pipe

    new_pipe = get_new_pipe().from_bytes(pipe.to_bytes(exclude=["vocab"]))
    assert new_pipe.cfg["foo"] == "bar"
    new_pipe = get_new_pipe().from_bytes(pipe.to_bytes(exclude=["vocab"]), exclude=["cfg"])
    assert "foo" not in new_pipe.cfg
    new_pipe = get_new_pipe().from_bytes(pipe.to_bytes(exclude=["cfg"]), exclude=["vocab"])
    assert "foo" not in new_pipe.cfg
    assert_same_weights(new_pipe, pipe)
    with pytest.raises(ValueError, match="BC013"):
        blank_component(tiny_bert, factory).from_bytes(pipe.to_bytes(), exclude=["cfg"])


@pytest.mark.parametrize("factory", FACTORIES)
def test_to_disk_exclude(shared, trained, tmp_path, factory):
    """to_disk and from_disk leave out what `exclude` names."""
    pipe = shared(factory).get_pipe(factory)
    pipe.to_disk(tmp_path / "pipe", exclude=["model"])
    assert not (tmp_path / "pipe" / "model").exists()
    assert (tmp_path / "pipe" / "cfg").exists()
    pipe.to_disk(tmp_path / "whole")
    model = trained(factory)
    other_nlp = model.load()
    other = other_nlp.get_pipe(factory)
    other_nlp.update(model.examples(other_nlp), sgd=Adam(0.01))  # weights of its own
    other.cfg["threshold"] = 0.3
    other.from_disk(tmp_path / "whole", exclude=["model"])
    assert other.cfg["threshold"] == pipe.cfg["threshold"] != 0.3
    with pytest.raises(AssertionError):
        assert_same_weights(other, pipe)
    other.cfg["threshold"] = 0.3
    other.from_disk(tmp_path / "whole", exclude=["cfg"])
    assert other.cfg["threshold"] == 0.3
    assert_same_weights(other, pipe)


@pytest.mark.parametrize("factory", FACTORIES)
def test_spacy_load(trained, shared, tmp_path, factory):
    """A saved pipeline predicts the same after util.load_model_from_path and
    spacy.load."""
    nlp = shared(factory)
    texts = trained(factory).texts
    expected = [doc.cats for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path)
    assert_same_cats([doc.cats for doc in util.load_model_from_path(tmp_path).pipe(texts)], expected)
    loaded = spacy.load(tmp_path)
    assert loaded.get_pipe(factory).labels == LABELS[factory]
    assert_same_cats([loaded(text).cats for text in texts], expected)


@pytest.mark.parametrize("factory", FACTORIES)
def test_serialize_pipeline_disable_enable(trained, tmp_path, factory):
    """A disabled component is saved disabled, loads disabled, can be enabled, and
    `exclude` leaves it out."""
    nlp = trained(factory).load()
    texts = trained(factory).texts
    expected = [doc.cats for doc in nlp.pipe(texts)]
    nlp.disable_pipe(factory)
    assert nlp.config["nlp"]["disabled"] == [factory]
    nlp.to_disk(tmp_path / "disabled")
    nlp2 = spacy.load(tmp_path / "disabled")
    assert nlp2.pipe_names == [] and nlp2.component_names == [factory] and nlp2.disabled == [factory]
    assert nlp2("a film").cats == {}
    nlp2.enable_pipe(factory)
    assert_same_cats([doc.cats for doc in nlp2.pipe(texts)], expected)
    nlp.enable_pipe(factory)
    nlp.to_disk(tmp_path / "enabled")
    nlp3 = spacy.load(tmp_path / "enabled", disable=[factory])
    assert nlp3.disabled == [factory]
    nlp4 = spacy.load(tmp_path / "enabled", exclude=[factory])
    assert nlp4.component_names == [] and nlp4("a film").cats == {}


@pytest.mark.parametrize("factory", FACTORIES)
def test_labels_added_after_initialize_are_saved(trained, tiny_bert, tmp_path, factory):
    """spaCy's issue 4042 (bug 2): a label added after initialize is saved with the
    component, and the component loads with it."""
    nlp = trained(factory).load()
    pipe = nlp.get_pipe(factory)
    pipe.add_label("MY_ORG")
    assert len(pipe.labels) == len(LABELS[factory]) + 1
    pipe.to_disk(tmp_path / "pipe")
    loaded = blank_component(tiny_bert, factory).from_disk(tmp_path / "pipe")
    assert loaded.labels == (*LABELS[factory], "MY_ORG")
    assert set(loaded(nlp.make_doc("a film")).cats) == set(loaded.labels)


@pytest.mark.parametrize("factory", FACTORIES)
def test_pickle(trained, shared, factory):
    """Pickling a pipeline keeps its components' cfg and predictions (spaCy's issue
    4725; what multiprocessing with the spawn start method needs)."""
    nlp = shared(factory)
    texts = trained(factory).texts
    copy = pickle.loads(pickle.dumps(nlp))
    assert copy.get_pipe(factory).cfg == nlp.get_pipe(factory).cfg
    assert_same_cats([doc.cats for doc in copy.pipe(texts)], [doc.cats for doc in nlp.pipe(texts)])
