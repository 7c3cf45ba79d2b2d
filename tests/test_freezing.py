"""Freezing, gradual unfreezing, discriminative / layer-wise learning rates, dropout."""
import pytest
import spacy
import torch
from spacy.cli.train import train
from spacy.util import registry
from thinc.api import Adam

from spacy_bertcat.training.freezing import unfrozen_layers
from spacy_bertcat.training.param_groups import lr_scale, param_position

from .test_pipeline import make_nlp
from .test_training import CONFIGS, write_corpus
from .util import SINGLE_DATA


def state(pipe):
    return {n: p.detach().clone() for n, p in pipe.model.shims[0].model.named_parameters()}


def changed(before, after):
    return {n for n in before if not torch.equal(before[n], after[n])}


@pytest.mark.parametrize(
    "settings,frozen_prefixes",
    [
        ({"freeze_embeddings": True}, ["hf_model.bert.embeddings."]),
        ({"freeze_layers": 1}, ["hf_model.bert.encoder.layer.0."]),
        ({"freeze_embeddings": True, "freeze_layers": 2}, ["hf_model.bert.embeddings.", "hf_model.bert.encoder.layer."]),
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


def test_param_positions_across_families(tiny_models):
    expected = {
        "bert": ("hf_model.bert.embeddings.word_embeddings.weight", "hf_model.bert.encoder.layer.1.output.dense.weight", "hf_model.classifier.weight"),
        "distilbert": ("hf_model.distilbert.embeddings.word_embeddings.weight", "hf_model.distilbert.transformer.layer.1.ffn.lin1.weight", "hf_model.pre_classifier.weight"),
        "roberta": ("hf_model.roberta.embeddings.word_embeddings.weight", "hf_model.roberta.encoder.layer.1.output.dense.weight", "hf_model.classifier.out_proj.weight"),
    }
    for model_type, name in tiny_models.items():
        nlp, _, _ = make_nlp(name)
        names = dict(nlp.get_pipe("bertcat").model.shims[0].model.named_parameters())
        embeddings, layer, head = expected[model_type]
        assert {embeddings, layer, head} <= set(names), model_type
        assert param_position(embeddings) == ("embeddings", -1)
        assert param_position(layer) == ("layer", 1)
        assert param_position(head) == ("head", -1)


def test_lr_scale_values():
    assert lr_scale("hf_model.classifier.weight", 6, 5.0, 0.9) == 5.0
    assert lr_scale("hf_model.bert.encoder.layer.5.x.weight", 6, 5.0, 0.9) == 1.0
    assert lr_scale("hf_model.bert.encoder.layer.0.x.weight", 6, 5.0, 0.9) == pytest.approx(0.9**5)
    assert lr_scale("hf_model.bert.embeddings.x.weight", 6, 5.0, 0.9) == pytest.approx(0.9**6)


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


def test_unfreezing_schedule():
    steps = [unfrozen_layers(s, head_steps=10, unfreeze_every=5, layers_per_stage=2) for s in (0, 9, 10, 14, 15, 20)]
    assert steps == [0, 0, 2, 2, 4, 6]


def test_gradual_unfreezing_callback(tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert, freeze_embeddings=False)
    callback = registry.callbacks.get("spacy-bertcat.gradual_unfreezing.v1")(head_steps=2, unfreeze_every=2, layers_per_stage=1)
    shim = nlp.get_pipe("bertcat").model.shims[0]

    def trainable():
        kinds = set()
        for name, param in shim.model.named_parameters():
            kind, index = param_position(name)
            if param.requires_grad:
                kinds.add(f"layer{index}" if kind == "layer" else kind)
        return kinds

    seen = []
    for step in range(7):
        callback(nlp, {"step": step, "epoch": 0})
        seen.append(trainable())
        before = state(nlp.get_pipe("bertcat"))
        nlp.update(examples, sgd=optimizer)
        moved = changed(before, state(nlp.get_pipe("bertcat")))
        assert all(param_position(n)[0] == "head" or f"layer{param_position(n)[1]}" in seen[-1] or "embeddings" in seen[-1] for n in moved)
    assert seen[0] == seen[1] == {"head"}
    assert seen[2] == seen[3] == {"head", "layer1"}
    assert seen[4] == seen[5] == {"head", "layer1", "layer0", "embeddings"}


def test_gradual_unfreezing_respects_static_freezing(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert, freeze_layers=1, freeze_embeddings=True)
    nlp.get_pipe("bertcat").set_trainable_top_layers(10)
    for name, param in nlp.get_pipe("bertcat").model.shims[0].model.named_parameters():
        kind, index = param_position(name)
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
