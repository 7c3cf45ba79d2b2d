"""The family matrix: every supported encoder family, as a tiny random model built
in-process, through the same checks. `make family-matrix` writes docs/guides/families.md's
table from these results under both transformers versions (the cross-version
loads are in test_version_drift.py)."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from thinc.api import Adam, fix_random_seed

from spacy_bertcat.layers.families import TESTED_FAMILIES

from ..support import SINGLE_DATA, assert_same_cats, make_examples, tiny_config
from ..support.families import FAMILIES, FRAMES, TF5, make_family_dir

# Depends on the transformers version: `make test-tf5` runs it under transformers 5 too.
pytestmark = pytest.mark.transformers

ROOT = Path(__file__).resolve().parents[2]
FAMILY_PARAMS = [pytest.param(f, id=f.model_type) for f in FAMILIES]
ONNX_REFUSED = {"longformer", "funnel"}  # see test_family_onnx
CHUNKINGS = {
    "head": {"@misc": "spacy-bertcat.head.v1"},
    "head_tail": {"@misc": "spacy-bertcat.head_tail.v1", "head": 8},
    "sliding_window": {
        "@misc": "spacy-bertcat.sliding_window.v1",
        "stride": 10,
        "aggregation": "attention",
        "max_windows": 3,
    },
}
LONG_TEXT = "the team won the match and the bank profit was good " * 30  # > 300 wordpieces
TEXTS = [text for text, _ in SINGLE_DATA] + [LONG_TEXT, ""]


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory):
    cache = {}

    def get(model_type):
        if model_type not in cache:
            cache[model_type] = make_family_dir(tmp_path_factory.mktemp(model_type), model_type)
        return cache[model_type]

    return get


def dropout_settings(family, value=0.0):
    return {
        s: (None if s in family.no_dropout else value)
        for s in ("hidden_dropout", "attention_dropout", "classifier_dropout")
    }


def make_family_nlp(family, model_dir, chunking="head", max_length=24, **settings):
    nlp = spacy.blank("en")
    config = tiny_config(model_dir, chunking=CHUNKINGS[chunking], max_length=max_length)
    config["model"].update(dropout_settings(family))
    config["model"].update(settings)
    nlp.add_pipe("bertcat", config=config)
    examples = make_examples(nlp, SINGLE_DATA + [(LONG_TEXT, {"POS": 1.0, "NEG": 0.0})])
    optimizer = nlp.initialize(lambda: examples)
    return nlp, examples, optimizer


def weights(nlp):
    return {n: p.detach().clone() for n, p in nlp.get_pipe("bertcat").model.shims[0].model.named_parameters()}


def base_prefix(nlp):
    shim = nlp.get_pipe("bertcat").model.shims[0]
    return "hf_model." + shim.hf_model.base_model_prefix + "."


def test_matrix_lists_the_tested_families():
    expected = set(TESTED_FAMILIES)
    assert {f.model_type for f in FAMILIES} == (
        expected if TF5 else {t for t in expected if t in {f.model_type for f in FAMILIES}}
    )
    assert len(FAMILIES) >= 21


@pytest.mark.parametrize("family", FAMILY_PARAMS)
@pytest.mark.parametrize("chunking", list(CHUNKINGS))
def test_family_trains(family, family_dirs, chunking):
    nlp, examples, optimizer = make_family_nlp(family, family_dirs(family.model_type), chunking)
    before = weights(nlp)
    for _ in range(2):
        losses = nlp.update(examples, sgd=optimizer)
        assert torch.isfinite(torch.tensor(losses["bertcat"]))
    after = weights(nlp)
    assert any(not torch.equal(before[n], after[n]) for n in before)
    for doc in nlp.pipe(TEXTS):
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_long_document(family, family_dirs):
    """A document far longer than the position table, with max_length above the
    model's limit: capped (with a warning) at the limit the model itself states,
    offset included, and predicted without error by every strategy."""
    for chunking in CHUNKINGS:
        with pytest.warns(UserWarning, match="BCW002"):
            nlp, _, _ = make_family_nlp(family, family_dirs(family.model_type), chunking, max_length=4096)
        pipe = nlp.get_pipe("bertcat")
        limit = pipe.encoder_map.position_limit
        assert limit == (66 if family.model_type == "jina_embeddings_v3" else 64)  # rotary: the config's length
        assert pipe.model.attrs["window"] + pipe.model.shims[0].tokenizer.n_special == limit
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            doc = nlp(LONG_TEXT * 3)
        assert sum(doc.cats.values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_framing(family, family_dirs):
    """Every window the model gets starts and ends with the family's own special
    tokens (and their token types: Funnel's <cls> has type 2)."""
    from transformers import AutoTokenizer

    model_dir = family_dirs(family.model_type)
    nlp, _, _ = make_family_nlp(family, model_dir, "sliding_window")
    hf_tokenizer = AutoTokenizer.from_pretrained(model_dir)
    frame = [t.split(":")[0] for t in FRAMES[family.frame][1].split() if not t.startswith("$")]
    prefix, suffix = hf_tokenizer.convert_tokens_to_ids(frame[:1]), hf_tokenizer.convert_tokens_to_ids(frame[1:])
    framed = hf_tokenizer("the team")["input_ids"]
    assert framed[:1] == prefix and framed[-1:] == suffix
    seen = []
    hf_model = nlp.get_pipe("bertcat").model.shims[0].hf_model
    hook = hf_model.register_forward_pre_hook(lambda m, a, kw: seen.append(kw), with_kwargs=True)
    try:
        nlp(LONG_TEXT)
    finally:
        hook.remove()
    (inputs,) = seen
    assert inputs["input_ids"].shape[0] > 1  # several windows
    for row, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()):
        n = sum(mask)
        assert row[:1] == prefix and row[n - 1 : n] == suffix
    types = inputs.get("token_type_ids")
    if family.frame == "funnel":
        assert types is not None and types[:, 0].tolist() == [2] * len(types) and not types[:, 1:].any()
    else:
        assert types is None


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_freezing(family, family_dirs):
    """freeze_layers=1 freezes exactly the layer the model applies first, and its
    weights do not move; more layers than the model has is an error; shared-layer
    models refuse per-layer options."""
    model_dir = family_dirs(family.model_type)
    if family.shares_layers:
        for settings in ({"freeze_layers": 1}, {"layer_lr_decay": 0.9}):
            with pytest.raises(ValueError, match="BC052"):
                make_family_nlp(family, model_dir, **settings)
        nlp, _, _ = make_family_nlp(family, model_dir)
        with pytest.raises(ValueError, match="BC052"):
            nlp.get_pipe("bertcat").set_trainable_top_layers(0)
        return
    with pytest.raises(ValueError, match="BC053"):
        make_family_nlp(family, model_dir, freeze_layers=3)
    nlp, examples, optimizer = make_family_nlp(family, model_dir, freeze_layers=1)
    layer0 = base_prefix(nlp) + family.bottom_layer
    params = dict(nlp.get_pipe("bertcat").model.shims[0].model.named_parameters())
    frozen = {n for n, p in params.items() if not p.requires_grad}
    assert frozen == {n for n in params if n.startswith(layer0)}
    before = weights(nlp)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    after = weights(nlp)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert frozen and not moved & frozen
    assert {"embeddings", "layer1", "head"} <= {kind_name(nlp, n) for n in moved}


def kind_name(nlp, name):
    kind, index = nlp.get_pipe("bertcat").encoder_map.positions()[name]
    return f"layer{index}" if kind == "layer" else kind


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_lr_scales_and_decay(family, family_dirs, record_property):
    """Adam's first step moves each weight by at most lr x its scale, and each kind
    reaches its scale: the head x4, the top layer x1, each layer below x0.5 of the
    one above, embeddings and shared tensors one step below the bottom layer. Every
    pretrained tensor is in embeddings, a layer or shared (the pooler aside), the
    family's tensors outside its layers are where the family table says, and
    weight decay spares exactly what Hugging Face's Trainer spares."""
    from transformers import Trainer

    decay = 1.0 if family.shares_layers else 0.5
    nlp, examples, _ = make_family_nlp(family, family_dirs(family.model_type), head_lr_scale=4.0, layer_lr_decay=decay)
    pipe = nlp.get_pipe("bertcat")
    encoder_map, shim = pipe.encoder_map, pipe.model.shims[0]
    positions = encoder_map.positions()
    prefix = base_prefix(nlp)
    top = [
        n[len(prefix) :]
        for n in encoder_map.layers[-1]
        if not n.startswith(prefix + family.bottom_layer.replace("0", str(encoder_map.n_layers - 1), 1))
    ]
    record_property(
        "map",
        {
            "layers": encoder_map.n_layers,
            "applications": encoder_map.applications,
            "shared": [n[len(prefix) :] for n in encoder_map.shared],
            "top": top,
            "head": sorted(
                {
                    (n[len(prefix) :] if n.startswith(prefix) else n.replace("hf_model.", "", 1)).split(".")[0]
                    for n in encoder_map.head
                }
            ),
            "position_offset": encoder_map.position_offset,
            "position_table": encoder_map.position_table,
        },
    )
    for name, (kind, _) in positions.items():
        pretrained = name.startswith(prefix) and not name[len(prefix) :].startswith("pooler")
        assert (kind != "head") == pretrained, name
    for rel, expected in family.kinds.items():
        kind, index = positions[prefix + rel]
        assert (kind if expected != "top" else index) == (
            expected if expected != "top" else encoder_map.n_layers - 1
        ), rel
    hf_decay = set(Trainer.get_decay_parameter_names(None, shim.hf_model))
    exempt = {n for n, _ in shim.hf_model.named_parameters()} - hf_decay
    from spacy_bertcat.layers.param_groups import no_decay_names

    assert {n[len("hf_model.") :] for n in no_decay_names(shim.model) if n.startswith("hf_model.")} == exempt

    n_layers = encoder_map.n_layers
    lr = 1e-3

    def expected_scale(kind, index):
        if kind == "head":
            return 4.0
        return decay ** (n_layers - 1 - index if kind == "layer" else n_layers)

    before = weights(nlp)
    nlp.update(examples, sgd=Adam(lr, L2=0.0, grad_clip=0.0, eps=1e-20, use_averages=False))
    after = weights(nlp)
    reached = {}
    for name, (kind, index) in positions.items():
        step = float((after[name] - before[name]).abs().max())
        size = lr * expected_scale(kind, index)
        assert step <= size * 1.03, (name, step, size)
        key = (kind, index)
        reached[key] = max(reached.get(key, 0.0), step / size)
    assert all(value > 0.97 for value in reached.values()), reached


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_dropout(family, family_dirs):
    """The dropout settings reach every dropout the family has: all at 0, training
    mode computes what prediction computes; at 0.5 it does not (dropout is on from
    the first update). A setting the family has no equivalent for is refused."""
    model_dir = family_dirs(family.model_type)
    nlp, examples, _ = make_family_nlp(family, model_dir)
    docs = [eg.predicted for eg in examples[:4]]
    model = nlp.get_pipe("bertcat").model
    predicted = model.predict(docs)
    trained, _ = model.begin_update(docs)
    torch.testing.assert_close(torch.as_tensor(trained), torch.as_tensor(predicted), rtol=1e-4, atol=1e-5)
    rates = {s: v for s, v in dropout_settings(family, 0.5).items() if v is not None}
    nlp, examples, _ = make_family_nlp(family, model_dir, **rates)
    model = nlp.get_pipe("bertcat").model
    first, _ = model.begin_update(docs)
    second, _ = model.begin_update(docs)
    assert not torch.allclose(torch.as_tensor(first), torch.as_tensor(second))
    for setting in family.no_dropout:
        with pytest.raises(ValueError, match="BC055"):
            make_family_nlp(family, model_dir, **{setting: 0.1})


@pytest.fixture(scope="module")
def saved_families(tmp_path_factory, family_dirs):
    """Every family trained a step with sliding windows and saved; then one fresh
    process loads each pipeline and predicts."""
    root = tmp_path_factory.mktemp("saved")
    expected = {}
    for family in FAMILIES:
        fix_random_seed(0)
        nlp, examples, optimizer = make_family_nlp(family, family_dirs(family.model_type), "sliding_window")
        nlp.update(examples, sgd=optimizer)
        nlp.to_disk(root / family.model_type)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected[family.model_type] = [doc.cats for doc in nlp.pipe(TEXTS)]
    out = subprocess.run(
        [sys.executable, "-m", "tests.drift_worker", "predict-families", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    loaded = json.loads((root / "predictions.json").read_text()) if out.returncode == 0 else {}
    return expected, loaded, out.stderr[-3000:]


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_round_trip(family, saved_families):
    expected, loaded, stderr = saved_families
    assert family.model_type in loaded, stderr
    result = loaded[family.model_type]
    assert "error" not in result, result.get("error")
    assert_same_cats(result["cats"], expected[family.model_type])


def _save_model(path, config, frame="bert"):
    from transformers import AutoModel

    from ..support.families import make_tokenizer

    AutoModel.from_config(config).save_pretrained(path)
    make_tokenizer(frame).save_pretrained(path)
    return str(path)


def _config(cls_name, **settings):
    import transformers

    from ..support.families import make_tokenizer

    return getattr(transformers, cls_name)(vocab_size=len(make_tokenizer()), **settings)


@pytest.mark.parametrize(
    "cls_name,settings,reason",
    [
        ("XLNetConfig", {"d_model": 32, "n_layer": 2, "n_head": 2, "d_inner": 37}, "not a bidirectional encoder"),
        ("GPT2Config", {"n_embd": 32, "n_layer": 2, "n_head": 2}, "not a bidirectional encoder"),
        (
            "BartConfig",
            {
                "d_model": 32,
                "encoder_layers": 1,
                "decoder_layers": 1,
                "encoder_attention_heads": 2,
                "decoder_attention_heads": 2,
                "encoder_ffn_dim": 37,
                "decoder_ffn_dim": 37,
            },
            "encoder-decoder",
        ),
        ("FNetConfig", {"hidden_size": 32, "num_hidden_layers": 2, "intermediate_size": 37}, "no attention mask"),
    ],
    ids=["xlnet", "gpt2", "bart", "fnet"],
)
def test_models_that_are_not_bert_family_encoders_are_refused(tmp_path, cls_name, settings, reason):
    """XLNet and decoders classify from the last token and pad on the left; BART is
    an encoder-decoder; FNet cannot mask padding. Each fails at initialize with the
    reason, before any training."""
    model_dir = _save_model(tmp_path, _config(cls_name, **settings))
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bertcat", config=tiny_config(model_dir, hidden_dropout=None, attention_dropout=None, classifier_dropout=None)
    )
    examples = make_examples(nlp, SINGLE_DATA)
    with pytest.raises(ValueError, match=f"BC051.*{reason}"):
        nlp.initialize(lambda: examples)


def test_an_untested_encoder_family_works_with_a_warning(tmp_path):
    config = _config("LayoutLMConfig", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    model_dir = _save_model(tmp_path, config)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(model_dir, classifier_dropout=None))
    examples = make_examples(nlp, SINGLE_DATA)
    with pytest.warns(UserWarning, match="BCW006.*layoutlm"):
        optimizer = nlp.initialize(lambda: examples)
    assert nlp.update(examples, sgd=optimizer)["bertcat"] > 0
    with pytest.raises(ValueError, match="BC055.*classifier_dropout"):  # its head has none of its own
        nlp = spacy.blank("en")
        nlp.add_pipe("bertcat", config=tiny_config(model_dir, classifier_dropout=0.1))
        nlp.initialize(lambda: make_examples(nlp, SINGLE_DATA))


def test_a_tokenizer_that_cannot_be_saved_fails_at_initialize(tiny_bert, monkeypatch):
    """RoFormer's tokenizer has a custom Python pre-tokenizer: training would die at
    the first save. bertcat says so at initialize."""
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    class Split:
        def pre_tokenize(self, pretok):
            pretok.split(lambda i, s: [s])

    load = AutoTokenizer.from_pretrained

    def custom(*args, **kwargs):
        tokenizer = load(*args, **kwargs)
        tokenizer.backend_tokenizer.pre_tokenizer = pre_tokenizers.PreTokenizer.custom(Split())
        return tokenizer

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", custom)
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(tiny_bert))
    with pytest.raises(ValueError, match="BC054"):
        nlp.initialize(lambda: make_examples(nlp, SINGLE_DATA))


@pytest.mark.parametrize("saved_with", ["eager", "sdpa", None])
def test_loading_does_not_depend_on_the_attention_implementation(family_dirs, tmp_path, saved_with):
    """A DeBERTa-v2 pipeline (no SDPA in transformers) saved under any attention
    setting loads under any other (transformers 5 wrote the failed 'sdpa' into the
    config object and the retry failed, reported as a corrupted file)."""
    family = next(f for f in FAMILIES if f.model_type == "deberta-v2")
    nlp, _, _ = make_family_nlp(family, family_dirs("deberta-v2"), attn_implementation=saved_with)
    nlp.to_disk(tmp_path / "p")
    expected = [doc.cats for doc in nlp.pipe(TEXTS[:3])]
    for loaded_with in ("sdpa", "eager", None):
        loaded = spacy.load(
            tmp_path / "p", config={"components": {"bertcat": {"model": {"attn_implementation": loaded_with}}}}
        )
        assert_same_cats([doc.cats for doc in loaded.pipe(TEXTS[:3])], expected)


def test_readme_matrix_lists_every_tested_family():
    """The families table (docs/guides/families.md, written by `make family-matrix`) covers exactly the
    families this test matrix checks."""
    text = (ROOT / "docs" / "guides" / "families.md").read_text()
    block = text.split("<!-- family-matrix:start -->")[1].split("<!-- family-matrix:end -->")[0]
    listed = {line.split("`")[1] for line in block.splitlines() if line.startswith("| `")}
    assert listed == set(TESTED_FAMILIES)
    assert "✗" not in block


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_lora(family, family_dirs, tmp_path):
    """LoRA's default targets (every linear projection of the encoder layers, from
    the encoder map) exist in every family; only the adapters and the head train;
    the merged save predicts what the adapted model predicts, with no adapter."""
    pytest.importorskip("peft")
    adapter = {"@misc": "spacy-bertcat.lora.v1", "r": 2, "alpha": 4.0, "dropout": 0.0}
    nlp, examples, optimizer = make_family_nlp(family, family_dirs(family.model_type), adapter=adapter)
    shim = nlp.get_pipe("bertcat").model.shims[0]
    assert shim.adapter_targets
    layers_with_adapters = {
        nlp.get_pipe("bertcat").encoder_map.positions()[n][1] for n in weights(nlp) if ".lora_" in n
    }
    assert layers_with_adapters == set(range(shim.encoder_map.n_layers))
    before = weights(nlp)
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    after = weights(nlp)
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved and all(".lora_" in n or kind_name(nlp, n) == "head" for n in moved)
    assert any(".lora_B" in n for n in moved)
    expected = [doc.cats for doc in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "merged")
    loaded = spacy.load(tmp_path / "merged")
    assert not any(".lora_" in n for n in weights(loaded))
    assert_same_cats([doc.cats for doc in loaded.pipe(TEXTS)], expected)


@pytest.mark.parametrize("family", FAMILY_PARAMS)
def test_family_onnx(family, family_dirs):
    """`spacy-bertcat optimize` exports every family but two: ONNX Runtime in
    float32 predicts what torch does (sliding windows, attention aggregation), int8
    gives probabilities. Longformer and Funnel trace shape-dependent code (padding
    to the attention window, pooling) that the traced graph cannot run on other
    window lengths: refused with BC064, the pipeline left as it was."""
    pytest.importorskip("onnxruntime")
    from spacy_bertcat.serving import optimize_pipe

    if family.model_type in ONNX_REFUSED:
        nlp, _, _ = make_family_nlp(family, family_dirs(family.model_type), "sliding_window")
        expected = [doc.cats for doc in nlp.pipe(TEXTS)]
        with pytest.raises(ValueError, match="BC064"):
            optimize_pipe(nlp.get_pipe("bertcat"))
        assert_same_cats([doc.cats for doc in nlp.pipe(TEXTS)], expected)
        return
    for int8 in (False, True):
        nlp, examples, optimizer = make_family_nlp(family, family_dirs(family.model_type), "sliding_window")
        nlp.update(examples, sgd=optimizer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = [doc.cats for doc in nlp.pipe(TEXTS)]
            optimize_pipe(nlp.get_pipe("bertcat"), int8=int8)
            got = [doc.cats for doc in nlp.pipe(TEXTS)]
        if not int8:
            numpy.testing.assert_allclose(
                [list(c.values()) for c in got], [list(c.values()) for c in expected], atol=1e-4
            )
        for cats in got:
            assert sum(cats.values()) == pytest.approx(1.0, abs=1e-5)
