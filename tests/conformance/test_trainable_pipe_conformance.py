"""The generic trainable-pipe contract (spaCy's TrainablePipe and Language, as its
tests state it: spacy/tests/pipeline/test_pipe_methods.py, test_pipe_factories.py,
spacy/tests/training/test_rehearse.py, spaCy 3.8), run on bertcat and
bertcat_multilabel.

What became of spaCy's tests:

Adapted
  test_pipe_methods.py
    test_pipe_base_class_add_label, test_pipe_labels, test_pipe_label_data_exports_labels,
    test_update_with_annotates (a downstream component sees the classifier's doc.cats),
    test_disable_pipes_context / test_select_pipes_list_arg -> test_select_pipes,
    test_issue3880 (nlp.pipe with an empty string ending the batch) -> test_pipe_with_batch_size
  test_pipe_factories.py
    test_pipe_factory_meta_config_cleanup, test_language_factories_scores,
    test_pipe_factories_from_source
  test_rehearse.py
    test_rehearse -> test_rehearse (issue 24 fix) and test_rehearse_with_a_new_label
                     (spaCy's shape: labels added after training; issue 24 fix)

Not applicable (Language's own bookkeeping, tested with other components; nothing
of the component takes part): test_add_pipe_*, test_get_pipe, test_replace_pipe*,
test_rename_pipe, test_remove_pipe, test_disable_pipes_method, test_enable_pipes_method,
test_disable_enable_pipes, test_pipe_methods_frozen, test_pipe_methods_initialize,
test_add_lots_of_pipes, test_raise_for_invalid_components, test_multiple_predictions
(a dummy pipe), test_pipe_label_data_no_labels (senter, entity_linker),
test_issue1506/1654/5082/5458, test_enable_disable_conflict_with_config; the factory
tests of function and class components, language-specific factories, and
combine_score_weights.

The rest of the contract (the methods of TrainablePipe, spaCy's docs)
  test_update_returns_losses_keyed_by_name, test_update_with_empty_examples,
  test_predict_and_set_annotations_equal_call, test_pipe_with_batch_size,
  test_is_trainable, test_labels_and_label_data, test_initialize_and_resume_training,
  test_use_params, test_error_handler, test_factory_meta_matches_textcat
  test_drop_is_ignored: a deliberate difference (dropout rates are model settings)
"""

import pytest
import spacy
from spacy import ty
from spacy.lang.en import English
from spacy.language import Language
from spacy.pipeline import TextCategorizer, TrainablePipe
from spacy.training import Example
from spacy.util import get_arg_names
from thinc.api import Adam, Optimizer

from ..support import assert_same_cats, assert_same_weights, make_examples, tiny_config
from .shared import FACTORIES, LABELS, LEARN_RATE


def flipped(nlp, data):
    """Examples of the texts with the opposite labels (an update that moves the
    model away from what it learned)."""
    return make_examples(nlp, [(text, {k: 1.0 - v for k, v in cats.items()}) for text, cats in data])


@pytest.mark.parametrize("factory", FACTORIES)
def test_update_returns_losses_keyed_by_name(trained, factory):
    model = trained(factory)
    nlp = model.load()
    pipe = nlp.get_pipe(factory)
    examples = model.examples(nlp)
    losses = pipe.update(examples)
    assert set(losses) == {factory} and losses[factory] > 0
    again = pipe.update(examples, losses={factory: 1.0, "other": 2.0})
    assert again["other"] == 2.0
    assert again[factory] == pytest.approx(1.0 + losses[factory], rel=1e-5)
    assert set(nlp.update(examples, sgd=False)) == {factory}


@pytest.mark.parametrize("factory", FACTORIES)
def test_update_with_empty_examples(shared, factory):
    """No examples, or none with text: nothing to learn, no error."""
    nlp = shared(factory)
    pipe = nlp.get_pipe(factory)
    assert pipe.update([]) == {factory: 0.0}
    assert nlp.update([]) == {}
    cats = dict.fromkeys(LABELS[factory], 0.0)
    cats[LABELS[factory][0]] = 1.0
    empty = [Example.from_dict(nlp.make_doc(text), {"cats": cats}) for text in ["", " "]]
    assert pipe.update(empty) == {factory: 0.0}
    assert all(p.grad is None for p in pipe.model.shims[0].model.parameters())


@pytest.mark.parametrize("factory", FACTORIES)
def test_drop_is_ignored(trained, factory):
    """Deliberate difference (docs/reference/textcat-differences.md): spaCy's `drop`
    sets the dropout rate of a textcat's layers; a bertcat component's dropout
    rates are settings of its model (hidden_dropout, attention_dropout,
    classifier_dropout), and `drop` changes nothing (these tiny models have none)."""
    model = trained(factory)
    nlp = model.load()
    pipe = nlp.get_pipe(factory)
    examples = model.examples(nlp)
    assert pipe.update(examples, drop=0.9)[factory] == pytest.approx(pipe.update(examples, drop=0.0)[factory])


@pytest.mark.parametrize("factory", FACTORIES)
def test_predict_and_set_annotations_equal_call(trained, shared, factory):
    nlp = shared(factory)
    pipe = nlp.get_pipe(factory)
    texts = trained(factory).texts + ["", "a film about a bank"]
    docs = [nlp.make_doc(text) for text in texts]
    scores = pipe.predict(docs)
    assert all(doc.cats == {} for doc in docs)  # predict changes no doc
    pipe.set_annotations(docs, scores)
    called = [pipe(nlp.make_doc(text)) for text in texts]
    assert_same_cats([doc.cats for doc in docs], [doc.cats for doc in called])
    assert [doc._.bertcat_labels for doc in docs] == [doc._.bertcat_labels for doc in called]


@pytest.mark.parametrize("factory", FACTORIES)
def test_pipe_with_batch_size(trained, shared, factory):
    """pipe() gives every doc, in order, as __call__ does, whatever the batch size;
    an empty string may end a batch (spaCy's issue 3880)."""
    nlp = shared(factory)
    pipe = nlp.get_pipe(factory)
    texts = trained(factory).texts + ["", "a film about a bank", ""]
    expected = [pipe(nlp.make_doc(text)).cats for text in texts]
    for batch_size in (1, 2, 3, 100):
        docs = list(pipe.pipe((nlp.make_doc(text) for text in texts), batch_size=batch_size))
        assert [doc.text for doc in docs] == texts
        assert_same_cats([doc.cats for doc in docs], expected)
    assert_same_cats([doc.cats for doc in nlp.pipe(texts, batch_size=2)], expected)


@pytest.mark.parametrize("factory", FACTORIES)
def test_is_trainable(tiny_bert, factory):
    """What Language.update checks before it calls finish_update, and what `spacy
    train` checks to train a component."""
    pipe = English().add_pipe(factory, config=tiny_config(tiny_bert))
    assert isinstance(pipe, TrainablePipe)
    assert isinstance(pipe, ty.TrainableComponent)
    assert pipe.is_trainable
    # Deliberate difference: not a TextCategorizer (see test_textcat_conformance.py,
    # test_debug_data_...): spaCy's code that checks for that class skips it.
    assert not isinstance(pipe, TextCategorizer)


@pytest.mark.parametrize("factory", FACTORIES)
def test_pipe_base_class_add_label(tiny_bert, factory):
    nlp = Language()
    label = "TEST"
    pipe = nlp.create_pipe(factory, config=tiny_config(tiny_bert))
    assert pipe.add_label(label) == 1
    assert pipe.add_label(label) == 0
    assert pipe.labels == (label,)
    assert label in nlp.vocab.strings


@pytest.mark.parametrize("factory", FACTORIES)
def test_pipe_labels(tiny_bert, factory):
    nlp = Language()
    input_labels = {"ner": ["PERSON", "ORG", "GPE"], factory: ["POSITIVE", "NEGATIVE"]}
    for name, labels in input_labels.items():
        pipe = nlp.add_pipe(name, config=tiny_config(tiny_bert) if name == factory else {})
        for label in labels:
            pipe.add_label(label)
        assert len(pipe.labels) == len(labels)
    assert len(nlp.pipe_labels) == len(input_labels)
    for name, labels in nlp.pipe_labels.items():
        assert sorted(input_labels[name]) == sorted(labels)


@pytest.mark.parametrize("factory", FACTORIES)
def test_pipe_label_data_exports_labels(tiny_bert, factory):
    nlp = Language()
    pipe = nlp.add_pipe(factory, config=tiny_config(tiny_bert))
    # Make sure pipe has pipe labels
    assert getattr(pipe, "label_data", None) is not None
    # Make sure pipe can be initialized with labels
    initialize = getattr(pipe, "initialize", None)
    assert initialize is not None
    assert "labels" in get_arg_names(initialize)


@pytest.mark.parametrize("factory", FACTORIES)
def test_labels_and_label_data(trained, shared, tiny_bert, factory):
    """label_data (what `spacy init labels` writes) initializes a component with the
    same labels, in the same order, without data that has them."""
    source = shared(factory).get_pipe(factory)
    assert source.labels == LABELS[factory]
    assert list(source.label_data) == list(source.labels)
    nlp = English()
    pipe = nlp.add_pipe(factory, config=tiny_config(tiny_bert))
    nlp.config["initialize"]["components"][factory] = {"labels": source.label_data}
    nlp.initialize()
    assert pipe.labels == source.labels
    assert set(nlp("a film").cats) == set(source.labels)


@pytest.mark.parametrize("factory", FACTORIES)
def test_pipe_factory_meta_config_cleanup(tiny_bert, factory):
    """Component meta and config entries are kept and cleaned up when pipes are
    renamed, removed or replaced."""
    nlp = Language()
    nlp.add_pipe(factory, config=tiny_config(tiny_bert))
    assert nlp.get_factory_meta(factory)
    assert nlp.get_pipe_meta(factory)
    assert nlp.get_pipe_config(factory)["model"]["name"] == tiny_bert
    nlp.rename_pipe(factory, "tc")
    assert nlp.get_pipe_meta("tc").factory == factory
    assert nlp.get_pipe_config("tc")
    with pytest.raises(ValueError):
        nlp.replace_pipe(factory, "textcat")
    nlp.replace_pipe("tc", "textcat")
    assert nlp.get_pipe_meta("tc").factory == "textcat"
    nlp.remove_pipe("tc")
    assert "tc" not in nlp._pipe_meta
    assert "tc" not in nlp._pipe_configs


@pytest.mark.parametrize("factory,textcat", [("bertcat", "textcat"), ("bertcat_multilabel", "textcat_multilabel")])
def test_factory_meta_matches_textcat(factory, textcat):
    """What spaCy reads from a factory: the same as for its own text classifier
    (what it assigns, the score weights `spacy train` picks the best model by, the
    default threshold)."""
    meta, theirs = Language.get_factory_meta(factory), Language.get_factory_meta(textcat)
    assert meta.assigns == theirs.assigns == ["doc.cats"]
    assert meta.default_score_weights == theirs.default_score_weights
    assert meta.default_config["threshold"] == theirs.default_config["threshold"]


def test_language_factories_scores(tiny_bert):
    """A pipeline's score weights combine the factories' defaults as they do for
    textcat and textcat_multilabel."""
    weights = []
    for factories in (("bertcat", "bertcat_multilabel"), ("textcat", "textcat_multilabel")):
        nlp = Language()
        for i, factory in enumerate(factories):
            config = tiny_config(tiny_bert) if factory.startswith("bertcat") else {}
            nlp.add_pipe(factory, name=f"classifier{i}", config=config)
        weights.append(nlp.config["training"]["score_weights"])
    assert weights[0] == weights[1]


@pytest.mark.parametrize("factory", FACTORIES)
def test_pipe_factories_from_source(trained, factory):
    source_nlp = trained(factory).load()  # spaCy hands over the component itself (renamed)
    nlp = English()
    nlp.add_pipe(factory, name="sourced", source=source_nlp)
    assert "sourced" in nlp.pipe_names
    texts = trained(factory).texts
    assert_same_cats([doc.cats for doc in nlp.pipe(texts)], [doc.cats for doc in source_nlp.pipe(texts)])
    with pytest.raises(KeyError):
        nlp.add_pipe("custom", source=source_nlp)


@pytest.mark.parametrize("factory", FACTORIES)
def test_initialize_and_resume_training(trained, tiny_bert, factory):
    """nlp.initialize returns an optimizer; a trained pipeline resumes training with
    nlp.resume_training's (the weights change, the loss is reported)."""
    model = trained(factory)
    nlp = English()
    nlp.add_pipe(factory, config=model.config)
    assert isinstance(nlp.initialize(lambda: model.examples(nlp)), Optimizer)
    loaded = model.load()
    before = model.load()
    optimizer = loaded.resume_training()
    assert isinstance(optimizer, Optimizer)
    losses = loaded.update(flipped(loaded, model.data), sgd=optimizer)
    assert losses[factory] > 0
    with pytest.raises(AssertionError):
        assert_same_weights(loaded.get_pipe(factory), before.get_pipe(factory))


@pytest.mark.parametrize("factory", FACTORIES)
def test_rehearse(trained, factory):
    """After nlp.resume_training, nlp.rehearse reports the component's loss: none
    while the model predicts what it did, some once an update moved it."""
    model = trained(factory)
    nlp = model.load()
    examples = model.examples(nlp)
    optimizer = nlp.resume_training()
    optimizer.learn_rate = LEARN_RATE[factory]
    losses = nlp.rehearse(examples, sgd=optimizer)
    assert losses[factory] == pytest.approx(0.0, abs=1e-6)
    nlp.update(flipped(nlp, model.data), sgd=optimizer)
    assert nlp.rehearse(examples, sgd=optimizer)[factory] > 0


@pytest.mark.parametrize("factory", FACTORIES)
def test_rehearse_with_a_new_label(trained, factory):
    """spaCy's test_rehearse: train, then add labels and rehearse on other data."""
    model = trained(factory)
    nlp = model.load()
    pipe = nlp.get_pipe(factory)
    pipe.add_label("statement")
    optimizer = nlp.resume_training()
    for _ in range(2):
        for text in ["Who is Kofi Annan?", "The film was good."]:
            nlp.rehearse([Example.from_dict(nlp.make_doc(text), {})], sgd=optimizer)
    assert set(nlp("a film").cats) == {*LABELS[factory], "statement"}


@Language.component("conformance_cats_recorder")
def cats_recorder(doc):
    cats_recorder.seen.append(dict(doc.cats))
    return doc


cats_recorder.seen = []


@pytest.mark.parametrize("factory", FACTORIES)
def test_update_with_annotates(trained, factory):
    """nlp.update(annotates=[...]) runs the named components on the predicted docs
    during the update: a component after the classifier sees its doc.cats."""
    model = trained(factory)
    nlp = model.load()
    nlp.add_pipe("conformance_cats_recorder")
    cats_recorder.seen.clear()
    nlp.update(model.examples(nlp), sgd=False, annotates=[factory, "conformance_cats_recorder"])
    assert len(cats_recorder.seen) == len(model.data)
    assert all(set(cats) == set(LABELS[factory]) for cats in cats_recorder.seen)
    cats_recorder.seen.clear()
    nlp.update(model.examples(nlp), sgd=False, annotates=["conformance_cats_recorder"])
    assert cats_recorder.seen == [{}] * len(model.data)


@pytest.mark.parametrize("factory", FACTORIES)
def test_select_pipes(shared, factory):
    nlp = shared(factory)
    with nlp.select_pipes(disable=[factory]):
        assert nlp.pipe_names == []
        assert nlp("a film").cats == {}
    with nlp.select_pipes(enable=[factory]):
        assert set(nlp("a film").cats) == set(LABELS[factory])
    assert nlp.pipe_names == [factory]


@pytest.mark.parametrize("factory", FACTORIES)
def test_use_params(trained, factory):
    """`spacy train` evaluates with nlp.use_params(optimizer.averages): the averaged
    weights inside the context, the trained ones again after it."""
    model = trained(factory)
    nlp = model.load()
    optimizer = Adam(LEARN_RATE[factory], use_averages=True)
    for _ in range(2):
        nlp.update(flipped(nlp, model.data), sgd=optimizer)
    texts = model.texts
    trained_cats = [doc.cats for doc in nlp.pipe(texts)]
    with nlp.use_params(optimizer.averages):
        averaged = [doc.cats for doc in nlp.pipe(texts)]
    with pytest.raises(AssertionError):
        assert_same_cats(averaged, trained_cats)
    assert_same_cats([doc.cats for doc in nlp.pipe(texts)], trained_cats)


@pytest.mark.parametrize("factory", FACTORIES)
def test_error_handler(tiny_bert, factory):
    """nlp.set_error_handler reaches the component: a failing batch (here: a
    component without weights, BC017) goes to the handler."""
    nlp = English()
    pipe = nlp.add_pipe(factory, config=tiny_config(tiny_bert))
    pipe.add_label("A")
    pipe.add_label("B")
    errors = []
    nlp.set_error_handler(lambda name, component, docs, e: errors.append((name, len(docs), str(e))))
    docs = list(nlp.pipe(["one", "two", "three"], batch_size=2))
    assert docs == [] and [(name, n) for name, n, _ in errors] == [(factory, 2), (factory, 1)]
    assert all("BC017" in message for _, _, message in errors)
    with pytest.raises(ValueError, match="BC017"):
        spacy.blank("en").add_pipe(factory, config=tiny_config(tiny_bert)).predict([nlp.make_doc("x")])
