"""GPU checks (skipped without CUDA): mixed precision, loss scaling under gradient
accumulation, and `spacy train --gpu-id 0` end to end."""

import pytest
import spacy
import torch
from thinc.api import SGD

from .support import CONFIGS, DATA, SINGLE_DATA, make_nlp, write_corpus

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def gpu():
    spacy.require_gpu(0)
    yield
    spacy.require_cpu()


def unscaled_grads(pipe):
    """The gradient the optimizer step uses: accumulated, divided by documents and
    the loss scale."""
    shim = pipe.model.shims[0]
    divisor = shim._accumulated * shim.loss_scale.value
    return {n: p.grad.float() / divisor for n, p in shim.model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_accumulated_mixed_precision_gradients(gpu, tiny_bert, dtype):
    nlp, examples, _ = make_nlp(tiny_bert, "bertcat", DATA, mixed_precision=True, amp_dtype=dtype)
    shim = nlp.get_pipe("bertcat").model.shims[0]
    assert shim.amp_enabled and shim.loss_scale.enabled == (dtype == "float16")
    twin = spacy.blank("en")
    twin.add_pipe("bertcat", config={"model": nlp.config["components"]["bertcat"]["model"]})
    twin.from_bytes(nlp.to_bytes())
    nlp.update(examples, sgd=False)
    for sub in (examples[:2], examples[2:3], examples[3:]):  # three backward passes
        twin.update(sub, sgd=False)
    whole, accumulated = unscaled_grads(nlp.get_pipe("bertcat")), unscaled_grads(twin.get_pipe("bertcat"))
    assert whole.keys() == accumulated.keys()
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=2e-2, atol=1e-4)
    optimizer = SGD(0.1, grad_clip=1.0, L2=0.0, use_averages=False)
    for pipe in (nlp.get_pipe("bertcat"), twin.get_pipe("bertcat")):
        pipe.finish_update(optimizer)
    state = nlp.get_pipe("bertcat").model.shims[0].model.state_dict()
    twin_state = twin.get_pipe("bertcat").model.shims[0].model.state_dict()
    for name in state:
        torch.testing.assert_close(twin_state[name], state[name], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_mixed_precision_learns(gpu, tiny_bert, dtype):
    nlp, examples, optimizer = make_nlp(tiny_bert, mixed_precision=True, amp_dtype=dtype, learn_rate=3e-3)
    losses = [nlp.update(examples, sgd=optimizer)["bertcat"] for _ in range(40)]
    assert losses[-1] < losses[0] / 3
    assert nlp.get_pipe("bertcat").model.shims[0].n_skipped <= 2  # fp16 scale calibration only


def test_spacy_train_on_gpu_loads_on_cpu(tiny_bert, tmp_path):
    from spacy.cli.train import train

    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA)
    train(
        CONFIGS / "bertcat.cfg",
        tmp_path / "out",
        use_gpu=0,
        overrides={
            "paths.train": corpus,
            "paths.dev": corpus,
            "components.bertcat.model.name": tiny_bert,
            "components.bertcat.model.max_length": 32,
            "components.bertcat.model.mixed_precision": True,
            "training.max_steps": 10,
            "training.optimizer.learn_rate.total_steps": 10,
            "training.eval_frequency": 5,
            "training.batcher.size": 4,
        },
    )
    texts = [t for t, _ in SINGLE_DATA]
    spacy.require_gpu(0)
    try:
        on_gpu = [doc.cats for doc in spacy.load(tmp_path / "out" / "model-last").pipe(texts)]
    finally:
        spacy.require_cpu()
    on_cpu = [doc.cats for doc in spacy.load(tmp_path / "out" / "model-last").pipe(texts)]
    for gpu_cats, cpu_cats in zip(on_gpu, on_cpu):  # bf16 autocast on the GPU, float32 on the CPU
        assert gpu_cats.keys() == cpu_cats.keys()
        assert all(abs(gpu_cats[k] - cpu_cats[k]) < 0.02 for k in gpu_cats)
