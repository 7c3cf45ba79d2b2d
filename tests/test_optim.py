"""The optimizer step: exact gradient accumulation, global-norm clipping, no decay on
biases and norms, learning rates from the thinc optimizer and its schedule."""
import copy

import numpy
import pytest
import spacy
import torch
from thinc.api import SGD, Adam

from spacy_bertcat.training.optim import OptimizerStep
from spacy_bertcat.training.param_groups import no_decay_names, param_groups

from .test_pipeline import make_nlp

DATA = [
    ("a great film", {"POS": 1.0, "NEG": 0.0}),
    ("excellent and fun, i love it", {"POS": 1.0, "NEG": 0.0}),
    ("a terrible movie", {"POS": 0.0, "NEG": 1.0}),
    ("boring and bad and awful", {"POS": 0.0, "NEG": 1.0}),
    ("great", {"POS": 1.0, "NEG": 0.0}),
]


def grads(pipe):
    return {n: p.grad.clone() for n, p in pipe.model.shims[0].model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("factory", ["bertcat", "bertcat_multilabel"])
def test_accumulated_gradient_equals_whole_batch(tiny_bert, factory):
    """Sub-batches of unequal size (as spaCy's subdivide_batch makes) sum exactly to
    the whole batch's gradient, and the steps are the same."""
    nlp, examples, _ = make_nlp(tiny_bert, factory, DATA)
    twin = spacy.blank("en")
    twin.add_pipe(factory, config={"model": nlp.config["components"][factory]["model"]})
    twin.from_bytes(nlp.to_bytes())
    nlp.update(examples, sgd=False)
    for sub in (examples[:2], examples[2:3], examples[3:]):
        twin.update(sub, sgd=False)
    whole, accumulated = grads(nlp.get_pipe(factory)), grads(twin.get_pipe(factory))
    assert whole.keys() == accumulated.keys() and whole
    for name in whole:
        torch.testing.assert_close(accumulated[name], whole[name], rtol=1e-4, atol=1e-6)
    optimizer = Adam(1e-3, grad_clip=1.0, L2=0.01, use_averages=False)
    nlp.get_pipe(factory).finish_update(optimizer)
    twin.get_pipe(factory).finish_update(copy.deepcopy(optimizer))
    state, twin_state = (p.model.shims[0].model.state_dict() for p in (nlp.get_pipe(factory), twin.get_pipe(factory)))
    for name in state:
        torch.testing.assert_close(twin_state[name], state[name], rtol=1e-4, atol=1e-6)


def make_module():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))


def set_grads(module, seed=1):
    generator = torch.Generator().manual_seed(seed)
    for p in module.parameters():
        p.grad = torch.randn(p.shape, generator=generator) * 10


def test_clipping_uses_the_global_norm():
    module = make_module()
    set_grads(module)
    expected = {n: p.grad.clone() for n, p in module.named_parameters()}
    norm = torch.sqrt(sum((g**2).sum() for g in expected.values()))
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    step = OptimizerStep(param_groups(module, 1.0, 1.0), key_id=0)
    result = step(SGD(0.1, grad_clip=1.0, L2=0.0, use_averages=False), grad_divisor=1.0)
    assert result.grad_norm == pytest.approx(float(norm), rel=1e-5)
    for name, p in module.named_parameters():  # w -= lr * g * clip / ||g||_global
        torch.testing.assert_close(before[name] - p.detach(), 0.1 * expected[name] / norm, rtol=1e-4, atol=1e-6)
        assert p.grad is None


def test_no_weight_decay_on_biases_and_norms():
    module = make_module()
    assert no_decay_names(module) == {"0.bias", "1.weight", "1.bias", "2.bias"}
    for p in module.parameters():
        p.grad = torch.zeros_like(p)
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    step = OptimizerStep(param_groups(module, 1.0, 1.0), key_id=0)
    step(Adam(0.1, L2=0.5, L2_is_weight_decay=True, use_averages=False), grad_divisor=1.0)
    for name, p in module.named_parameters():
        if name in ("0.weight", "2.weight"):
            torch.testing.assert_close(p.detach(), before[name] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(p.detach(), before[name])


def test_learning_rate_follows_the_thinc_schedule():
    module = make_module()
    step = OptimizerStep(param_groups(module, head_lr_scale=1.0, layer_lr_decay=1.0), key_id=0)
    schedule = iter([1e-3, 5e-4, 2e-4])
    optimizer = Adam(schedule, use_averages=False)
    seen = []
    for _ in range(3):
        set_grads(module)
        step(optimizer, grad_divisor=1.0)
        seen.append({g["lr"] for g in step._torch.param_groups})
        optimizer.step_schedules()
    assert seen == [{1e-3}, {5e-4}, {2e-4}]


def test_non_finite_gradient_skips_the_step():
    module = make_module()
    set_grads(module)
    next(module.parameters()).grad[0, 0] = float("nan")
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    result = OptimizerStep(param_groups(module, 1.0, 1.0), key_id=0)(Adam(0.1, use_averages=False), grad_divisor=1.0)
    assert result.skipped and not numpy.isfinite(result.grad_norm)
    assert all(torch.equal(p.detach(), before[n]) for n, p in module.named_parameters())
    assert all(p.grad is None for p in module.parameters())


def test_nan_loss_in_training_is_skipped_and_reported(tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert)
    pipe = nlp.get_pipe("bertcat")
    shim = pipe.model.shims[0]
    before = {k: v.clone() for k, v in shim.model.state_dict().items()}
    nlp.update(examples, sgd=False)
    next(shim.model.parameters()).grad.fill_(float("inf"))
    with pytest.warns(UserWarning, match="BCW003"):
        pipe.finish_update(optimizer)
    assert all(torch.equal(v, before[k]) for k, v in shim.model.state_dict().items())
    assert shim.n_skipped == 1
    losses = nlp.update(examples, sgd=optimizer)  # training goes on
    assert numpy.isfinite(losses["bertcat"])
    assert any(not torch.equal(v, before[k]) for k, v in shim.model.state_dict().items())
