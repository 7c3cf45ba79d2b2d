"""The contrastive warm-up at initialize, on tiny random models: it trains the
encoder, starts the mean-pooling head, keeps the rest of the component working, and
refuses data it cannot pair."""

import warnings

import numpy
import pytest
import spacy
import torch
from thinc.api import ConfigValidationError

from ..support import MULTI_DATA, SINGLE_DATA, assert_same_cats, make_examples, tiny_config

WARMUP = {
    "@misc": "spacy-bertcat.contrastive_warmup.v1",
    "pairs_per_example": 4,
    "epochs": 2,
    "learn_rate": 0.01,
    "batch_size": 4,
    "seed": 0,
}
TEXTS = ["a great film", "i hate this awful movie", "the bank profit", ""]


def build(name, factory="bertcat", data=SINGLE_DATA, warmup=WARMUP, chunking=None, **settings):
    nlp = spacy.blank("en")
    config = tiny_config(name, chunking=chunking, **{"pooling": "mean", **settings})
    config["warmup"] = warmup
    pipe = nlp.add_pipe(factory, config=config)
    return nlp, pipe, make_examples(nlp, data)


def encoder_state(pipe):
    model = pipe.model.shims[0].model
    return {k: v.clone() for k, v in model.hf_model.base_model.state_dict().items()}


def test_warmup_trains_the_encoder_and_fits_the_head(tiny_bert):
    nlp, pipe, examples = build(tiny_bert, warmup=None)
    nlp.initialize(lambda: examples)
    before = encoder_state(pipe)
    cold = pipe.model.shims[0].model.mean_head.weight.clone()

    nlp, pipe, examples = build(tiny_bert)
    nlp.initialize(lambda: examples)
    after = encoder_state(pipe)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # same seed, warm-up moved it
    head = pipe.model.shims[0].model.mean_head.weight
    assert head.shape == cold.shape and not torch.equal(head, cold)
    # The logistic-regression head separates the training data from the first step.
    docs = [eg.reference for eg in examples]
    predicted = [max(doc.cats, key=doc.cats.get) for doc in nlp.pipe(d.text for d in docs)]
    assert predicted == [max(doc.cats, key=doc.cats.get) for doc in docs]
    # Seeded: the same settings give the same weights.
    nlp2, pipe2, examples2 = build(tiny_bert)
    nlp2.initialize(lambda: examples2)
    assert all(torch.equal(after[k], v) for k, v in encoder_state(pipe2).items())


@pytest.mark.parametrize("pooling", ["mean", "normalized_mean"])
def test_supervised_training_saving_and_loading_after_the_warmup(tiny_bert, tmp_path, pooling):
    nlp, pipe, examples = build(tiny_bert, pooling=pooling)
    optimizer = nlp.initialize(lambda: examples)
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    cats = [doc.cats for doc in nlp.pipe(TEXTS)]
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert loaded.get_pipe("bertcat").model.shims[0].model.pooling == pooling
    assert_same_cats(cats, [doc.cats for doc in loaded.pipe(TEXTS)])
    # a label added after training grows the mean-pooling head (the old rows kept)
    added = loaded.get_pipe("bertcat")
    old = added.model.shims[0].model.mean_head.weight.detach().clone()
    added.add_label("NEU")
    grown = added.model.shims[0].model.mean_head.weight
    assert grown.shape[0] == 3 and torch.equal(grown[:2], old)


def test_multilabel_warmup_and_class_weights(tiny_bert):
    data = MULTI_DATA + [
        ("the sport team and the goal", {"sport": 1.0, "business": 0.0, "tech": 0.0}),
        ("software on the internet", {"sport": 0.0, "business": 0.0, "tech": 1.0}),
    ]
    nlp, pipe, examples = build(tiny_bert, factory="bertcat_multilabel", data=data)
    before = pipe.model.shims[0]
    nlp.initialize(lambda: examples)
    assert pipe.cfg["label_weights"] is not None  # sqrt_balanced, applied to the head's fit
    scores = [doc.cats for doc in nlp.pipe(TEXTS)]
    assert all(set(c) == {"sport", "business", "tech"} for c in scores)
    assert before is pipe.model.shims[0]


def test_long_documents_pair_over_documents(tiny_bert):
    long = " ".join(["the team won the match"] * 30)
    data = SINGLE_DATA + [(long, {"POS": 1.0, "NEG": 0.0})]
    chunking = {"@misc": "spacy-bertcat.sliding_window.v1", "stride": 16, "aggregation": "mean", "max_windows": 4}
    nlp, pipe, examples = build(tiny_bert, data=data, chunking=chunking)
    nlp.initialize(lambda: examples)
    assert pipe.model.attrs["truncation"].train_docs == 0  # the warm-up is no training batch
    assert set(nlp(long).cats) == {"POS", "NEG"}


def test_a_class_with_one_example_is_a_config_error(tiny_bert):
    nlp, pipe, examples = build(tiny_bert, data=SINGLE_DATA[:3])
    with pytest.raises(ConfigValidationError, match=r"BC140.*'NEG' has 1") as info:
        nlp.initialize(lambda: examples)
    assert info.value.errors[0]["loc"] == ["components", "bertcat", "warmup"]


def test_bad_warmup_setting_is_a_config_error(tiny_bert):
    with pytest.raises(ConfigValidationError, match="BC141.*pairs_per_example"):
        build(tiny_bert, warmup={**WARMUP, "pairs_per_example": 1})


def test_first_token_head_warns_that_it_does_not_read_the_warmed_up_embedding(tiny_bert):
    nlp, pipe, examples = build(tiny_bert, pooling="first")
    with pytest.warns(UserWarning, match="BCW045"):
        nlp.initialize(lambda: examples)
    assert not hasattr(pipe.model.shims[0].model, "mean_head")


def test_warmup_with_lora_trains_the_adapter_only(tiny_bert):
    pytest.importorskip("peft")
    adapter = {"@misc": "spacy-bertcat.lora.v1", "r": 2, "alpha": 4.0, "dropout": 0.0, "target_modules": None}
    nlp, pipe, examples = build(tiny_bert, adapter=adapter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nlp.initialize(lambda: examples)
    model = pipe.model.shims[0].model
    lora = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora and any(p.abs().sum() > 0 for p in lora)  # LoRA's B starts at 0: the warm-up moved it
    assert numpy.isfinite(nlp("a great film").cats["POS"])


@pytest.mark.parametrize("pooling", ["mean", "normalized_mean"])
def test_calibration_and_optimize_keep_the_mean_pooling_head(tiny_bert, pooling):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from spacy_bertcat.evaluation.calibrate import calibrate_pipe
    from spacy_bertcat.evaluation.report import gold_matrix
    from spacy_bertcat.serving import optimize_pipe

    nlp, pipe, examples = build(tiny_bert, pooling=pooling)
    nlp.initialize(lambda: examples)
    words = ("indeed", "so", "then", "now", "too", "again")
    held_out = make_examples(nlp, [(f"{text} {word}", cats) for text, cats in SINGLE_DATA for word in words])
    docs = [eg.reference for eg in held_out]
    gold, mask = gold_matrix(docs, pipe.labels)
    calibrate_pipe(pipe, docs, gold, mask)
    assert pipe.calibration is not None
    expected = [doc.cats for doc in nlp.pipe(TEXTS)]
    optimize_pipe(pipe, int8=False)
    assert_same_cats([doc.cats for doc in nlp.pipe(TEXTS)], expected)


def test_normalized_mean_head_reads_the_unit_length_embedding(tiny_bert):
    """pooling = "normalized_mean": the head reads the mean-pooled embedding scaled to
    unit length, and the warm-up's logistic regression is fitted on that same input."""
    nlp, pipe, examples = build(tiny_bert, pooling="normalized_mean")
    nlp.initialize(lambda: examples)
    model = pipe.model.shims[0].model
    model.eval()
    ids = torch.tensor([[2, 5, 6, 7, 3], [2, 8, 9, 3, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]])
    with torch.no_grad():
        embedding = model.embed_windows(ids, mask)
        logits, _ = model.classify_windows(ids, mask)
        unit = embedding / embedding.norm(dim=-1, keepdim=True)
        assert torch.allclose(logits, model.mean_head(unit), atol=1e-5)
        assert not torch.allclose(logits, model.mean_head(embedding), atol=1e-3)
    # fitted on the same input it reads: the training data is separated from the start
    docs = [eg.reference for eg in examples]
    predicted = [max(doc.cats, key=doc.cats.get) for doc in nlp.pipe(d.text for d in docs)]
    assert predicted == [max(doc.cats, key=doc.cats.get) for doc in docs]
