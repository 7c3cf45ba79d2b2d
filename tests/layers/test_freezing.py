"""Freezing, gradual unfreezing, discriminative / layer-wise learning rates, dropout."""

import numpy
import pytest
import spacy
import torch
from spacy.cli.train import train
from spacy.util import registry
from thinc.api import SGD, Adam, RAdam, fix_random_seed

from spacy_bertcat.layers.param_groups import lr_scale
from spacy_bertcat.training.unfreezing import unfrozen_layers

from ..support import CONFIGS, SINGLE_DATA, make_nlp, write_corpus


def state(pipe):
    return {n: p.detach().clone() for n, p in pipe.model.shims[0].model.named_parameters()}


def changed(before, after):
    return {n for n in before if not torch.equal(before[n], after[n])}


@pytest.mark.parametrize(
    "settings,frozen_prefixes",
    [
        ({"freeze_embeddings": True}, ["hf_model.bert.embeddings."]),
        ({"freeze_layers": 1}, ["hf_model.bert.encoder.layer.0."]),
        (
            {"freeze_embeddings": True, "freeze_layers": 2},
            ["hf_model.bert.embeddings.", "hf_model.bert.encoder.layer."],
        ),
    ],
)
def test_frozen_parameters_do_not_change(tiny_bert, tmp_path, settings, frozen_prefixes):
    nlp, examples, optimizer = make_nlp(tiny_bert, **settings)
    pipe = nlp.get_pipe("bertcat")
    before = state(pipe)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    moved = changed(before, state(pipe))
    frozen = {n for n in before if any(n.startswith(p) for p in frozen_prefixes)}
    assert frozen and not (moved & frozen)  # bit-identical, weight decay included
    assert moved >= {"hf_model.classifier.weight", "hf_model.bert.pooler.dense.weight"}
    assert moved >= {n for n in before if n.startswith("hf_model.bert.encoder.layer.1.")} - frozen
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    for name, param in loaded.get_pipe("bertcat").model.shims[0].model.named_parameters():
        assert param.requires_grad == (name not in frozen), name


def positions(nlp):
    return nlp.get_pipe("bertcat").encoder_map.positions()


def test_param_positions_across_families(tiny_models):
    expected = {
        "bert": (
            "hf_model.bert.embeddings.word_embeddings.weight",
            "hf_model.bert.encoder.layer.1.output.dense.weight",
            "hf_model.classifier.weight",
        ),
        "distilbert": (
            "hf_model.distilbert.embeddings.word_embeddings.weight",
            "hf_model.distilbert.transformer.layer.1.ffn.lin1.weight",
            "hf_model.pre_classifier.weight",
        ),
        "roberta": (
            "hf_model.roberta.embeddings.word_embeddings.weight",
            "hf_model.roberta.encoder.layer.1.output.dense.weight",
            "hf_model.classifier.out_proj.weight",
        ),
    }
    for model_type, name in tiny_models.items():
        nlp, _, _ = make_nlp(name)
        embeddings, layer, head = expected[model_type]
        where = positions(nlp)
        assert where[embeddings] == ("embeddings", -1)
        assert where[layer] == ("layer", 1)
        assert where[head] == ("head", -1)


def test_lr_scale_values():
    assert lr_scale("head", -1, 6, 5.0, 0.9) == 5.0
    assert lr_scale("layer", 5, 6, 5.0, 0.9) == 1.0
    assert lr_scale("layer", 0, 6, 5.0, 0.9) == pytest.approx(0.9**5)
    assert lr_scale("embeddings", -1, 6, 5.0, 0.9) == pytest.approx(0.9**6)
    assert lr_scale("shared", -1, 6, 5.0, 0.9) == pytest.approx(0.9**6)


def test_learning_rate_scales_reach_each_parameter(tiny_bert):
    """Adam's first step moves a weight by lr x scale x |g| / (|g| + eps): at most, and
    for all but tiny gradients about, lr x its scale."""
    nlp, examples, _ = make_nlp(tiny_bert, head_lr_scale=4.0, layer_lr_decay=0.5)
    pipe = nlp.get_pipe("bertcat")
    before = state(pipe)
    nlp.update(examples, sgd=Adam(1e-4, L2=0.0, grad_clip=0.0, use_averages=False))
    after = state(pipe)

    def step_size(name):
        return float((after[name] - before[name]).abs().max())

    expected = {
        "hf_model.classifier.weight": 4e-4,
        "hf_model.bert.encoder.layer.1.attention.self.query.weight": 1e-4,
        "hf_model.bert.encoder.layer.0.attention.self.query.weight": 0.5e-4,
        "hf_model.bert.embeddings.word_embeddings.weight": 0.25e-4,
    }
    for name, size in expected.items():
        assert step_size(name) == pytest.approx(size, rel=0.03), name


@pytest.mark.parametrize("optimizer", [Adam, RAdam, SGD])
def test_scales_are_exact_ratios_for_every_optimizer(tiny_bert, optimizer):
    """Each optimizer's first step is linear in the learning rate, so from the same
    start on the same data every weight moves by its scale times its unscaled step
    (thinc 8.3's own RAdam ignores lr_scale: bertcat steps torch's RAdam)."""
    steps = []
    for scales in ({}, {"head_lr_scale": 4.0, "layer_lr_decay": 0.5}):
        fix_random_seed(0)
        nlp, examples, _ = make_nlp(tiny_bert, **scales)
        before = state(nlp.get_pipe("bertcat"))
        nlp.update(examples, sgd=optimizer(1e-2, L2=0.0, grad_clip=0.0, use_averages=False))
        after = state(nlp.get_pipe("bertcat"))
        steps.append({n: after[n] - before[n] for n in before})
    plain, scaled = steps
    expected = {
        "hf_model.classifier.weight": 4.0,
        "hf_model.bert.encoder.layer.1.attention.self.query.weight": 1.0,
        "hf_model.bert.encoder.layer.0.attention.self.query.weight": 0.5,
        "hf_model.bert.embeddings.word_embeddings.weight": 0.25,
    }
    for name, scale in expected.items():
        assert plain[name].abs().max() > 0, name
        torch.testing.assert_close(scaled[name], scale * plain[name], rtol=1e-3, atol=1e-7)


def test_dropout_is_on_from_the_first_update(tiny_bert):
    """After initialize, training updates use dropout at once (the Hugging Face model
    comes back from from_pretrained in eval mode)."""
    nlp, examples, _ = make_nlp(tiny_bert, hidden_dropout=0.3)
    docs = [eg.predicted for eg in examples]
    model = nlp.get_pipe("bertcat").model
    first, _ = model.begin_update(docs)
    second, _ = model.begin_update(docs)
    assert not numpy.allclose(first, second)
    assert model.shims[0].hf_model.training
    nlp("a film")  # prediction switches to eval mode and back again for training
    third, _ = model.begin_update(docs)
    assert not numpy.allclose(third, first) and model.shims[0].hf_model.training


def test_unfreezing_schedule():
    steps = [unfrozen_layers(s, head_steps=10, unfreeze_every=5, layers_per_stage=2) for s in (0, 9, 10, 14, 15, 20)]
    assert steps == [0, 0, 2, 2, 4, 6]


def test_gradual_unfreezing_callback(tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert, freeze_embeddings=False)
    callback = registry.callbacks.get("spacy-bertcat.gradual_unfreezing.v1")(
        head_steps=2, unfreeze_every=2, layers_per_stage=1
    )
    shim = nlp.get_pipe("bertcat").model.shims[0]

    where = positions(nlp)

    def kind(name):
        kind, index = where[name]
        return f"layer{index}" if kind == "layer" else kind

    def trainable():
        return {kind(name) for name, param in shim.model.named_parameters() if param.requires_grad}

    seen = []
    for step in range(7):
        callback(nlp, {"step": step, "epoch": 0})
        seen.append(trainable())
        before = state(nlp.get_pipe("bertcat"))
        nlp.update(examples, sgd=optimizer)
        moved = changed(before, state(nlp.get_pipe("bertcat")))
        assert all(kind(n) in seen[-1] for n in moved)
    assert seen[0] == seen[1] == {"head"}
    assert seen[2] == seen[3] == {"head", "layer1"}
    assert seen[4] == seen[5] == {"head", "layer1", "layer0", "embeddings"}


def test_gradual_unfreezing_respects_static_freezing(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert, freeze_layers=1, freeze_embeddings=True)
    nlp.get_pipe("bertcat").set_trainable_top_layers(10)
    where = positions(nlp)
    for name, param in nlp.get_pipe("bertcat").model.shims[0].model.named_parameters():
        kind, index = where[name]
        assert param.requires_grad == (kind == "head" or (kind == "layer" and index >= 1)), name


def test_bad_unfreezing_settings():
    with pytest.raises(ValueError, match="BC022"):
        registry.callbacks.get("spacy-bertcat.gradual_unfreezing.v1")(unfreeze_every=0)


def test_dropout_settings_reach_the_model_config(tiny_models):
    settings = {"hidden_dropout": 0.25, "attention_dropout": 0.05, "classifier_dropout": 0.4}
    fields = {
        "bert": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"),
        "distilbert": ("dropout", "attention_dropout", "seq_classif_dropout"),
        "roberta": ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout"),
    }
    for model_type, name in tiny_models.items():
        nlp, _, _ = make_nlp(name, **settings)
        config = nlp.get_pipe("bertcat").model.shims[0].hf_model.config
        assert [getattr(config, f) for f in fields[model_type]] == [0.25, 0.05, 0.4], model_type


def test_every_option_from_a_config_file(tiny_bert, tmp_path):
    """A fresh `spacy train` with all fine-tuning controls, then spacy.load."""
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA)
    out = tmp_path / "out"
    train(
        CONFIGS / "bertcat.cfg",
        out,
        overrides={
            "paths.train": corpus,
            "paths.dev": corpus,
            "components.bertcat.model.name": tiny_bert,
            "components.bertcat.model.max_length": 32,
            "components.bertcat.model.freeze_embeddings": True,
            "components.bertcat.model.freeze_layers": 1,
            "components.bertcat.model.head_lr_scale": 5.0,
            "components.bertcat.model.layer_lr_decay": 0.9,
            "components.bertcat.model.hidden_dropout": 0.2,
            "components.bertcat.model.attention_dropout": 0.0,
            "components.bertcat.model.classifier_dropout": 0.3,
            "training.before_update": {
                "@callbacks": "spacy-bertcat.gradual_unfreezing.v1",
                "head_steps": 2,
                "unfreeze_every": 2,
                "layers_per_stage": 1,
                "components": ["bertcat"],
            },
            "training.max_steps": 6,
            "training.optimizer.learn_rate.total_steps": 6,
            "training.eval_frequency": 3,
            "training.batcher.size": 4,
        },
    )
    nlp = spacy.load(out / "model-last")
    pipe = nlp.get_pipe("bertcat")
    config = pipe.model.shims[0].hf_model.config
    assert (config.hidden_dropout_prob, config.classifier_dropout) == (0.2, 0.3)
    assert pipe.model.shims[0].cfg["head_lr_scale"] == 5.0
    frozen = {n for n, p in pipe.model.shims[0].model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("hf_model.bert.embeddings.", "hf_model.bert.encoder.layer.0.")) for n in frozen)
