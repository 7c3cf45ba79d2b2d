"""The optimizer step: exact gradient accumulation, global-norm clipping, no decay on
biases and norms, learning rates from the thinc optimizer and its schedule."""

import copy

import numpy
import pytest
import spacy
import torch
from thinc.api import SGD, Adam

from spacy_bertcat.layers.encoder_map import EncoderMap
from spacy_bertcat.layers.optim import OptimizerStep
from spacy_bertcat.layers.param_groups import no_decay_names, param_groups

from ..support import DATA, make_nlp


def grads(pipe):
    """The accumulated gradient of the mean loss (backward accumulates batch means
    weighted relative to the first batch; the step divides by the total weight)."""
    shim = pipe.model.shims[0]
    return {n: p.grad / shim._accumulated for n, p in shim.model.named_parameters() if p.grad is not None}


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


def flat_groups(module, head_lr_scale=1.0, layer_lr_decay=1.0):
    """Parameter groups of a plain module: every parameter counts as the head."""
    names = tuple(n for n, _ in module.named_parameters())
    encoder_map = EncoderMap("test", (), (), (), names, 0, None, 0)
    return param_groups(module, encoder_map, head_lr_scale, layer_lr_decay)


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
    step = OptimizerStep(flat_groups(module), key_id=0)
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
    step = OptimizerStep(flat_groups(module), key_id=0)
    step(Adam(0.1, L2=0.5, L2_is_weight_decay=True, use_averages=False), grad_divisor=1.0)
    for name, p in module.named_parameters():
        if name in ("0.weight", "2.weight"):
            torch.testing.assert_close(p.detach(), before[name] * (1 - 0.1 * 0.5))
        else:
            assert torch.equal(p.detach(), before[name])


def test_learning_rate_follows_the_thinc_schedule():
    module = make_module()
    step = OptimizerStep(flat_groups(module), key_id=0)
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
    result = OptimizerStep(flat_groups(module), key_id=0)(Adam(0.1, use_averages=False), grad_divisor=1.0)
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


def test_float16_loss_scale_multiplies_the_mean_loss(tiny_bert):
    """Backward gets the batch's mean-loss gradient times the loss scale: five copies
    of a document give the gradient one copy gives, not five times it (a sum over
    documents would overflow float16 n_docs times sooner)."""
    from spacy_bertcat.layers.optim import LossScale

    data = [("a great film", {"POS": 1.0, "NEG": 0.0})]
    nlp, examples, _ = make_nlp(tiny_bert, "bertcat", data)
    twin = spacy.blank("en")
    twin.add_pipe("bertcat", config={"model": nlp.config["components"]["bertcat"]["model"]})
    twin.from_bytes(nlp.to_bytes())
    results = []
    for pipeline, copies in ((nlp, 1), (twin, 5)):
        shim = pipeline.get_pipe("bertcat").model.shims[0]
        shim.loss_scale = LossScale(True, init=1024.0)
        pipeline.update(examples * copies, sgd=False)
        results.append({n: p.grad.clone() for n, p in shim.model.named_parameters() if p.grad is not None})
    one, five = results
    for name in one:
        torch.testing.assert_close(five[name], one[name], rtol=1e-4, atol=1e-5)
    plain, _, _ = make_nlp(tiny_bert, "bertcat", data)
    plain.from_bytes(nlp.to_bytes())
    plain.update(examples, sgd=False)
    for name, p in plain.get_pipe("bertcat").model.shims[0].model.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(one[name], 1024.0 * p.grad, rtol=1e-4, atol=1e-4)


def test_parameter_averages_for_evaluation_and_saving(tiny_bert, tmp_path):
    """With use_averages (Adam.v1's default), the step keeps thinc's moving average
    of the weights; `nlp.use_params(optimizer.averages)` (what spaCy evaluates and
    saves under) swaps it in and puts the trained weights back afterwards."""
    nlp, examples, _ = make_nlp(tiny_bert, "bertcat", DATA)
    pipe = nlp.get_pipe("bertcat")
    model = pipe.model.shims[0].model
    optimizer = Adam(1e-3, use_averages=True)
    history = []
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
        history.append({n: p.detach().clone() for n, p in model.named_parameters()})
    expected = dict(history[0])
    for t, state in enumerate(history[1:], start=2):
        decay = (1.0 + t) / (10.0 + t)
        expected = {n: expected[n] - (1 - decay) * (expected[n] - state[n]) for n in state}
    trained = {n: p.detach().clone() for n, p in model.named_parameters()}
    with nlp.use_params(optimizer.averages):
        averaged = {n: p.detach().clone() for n, p in model.named_parameters()}
        cats = nlp("a great film").cats
        nlp.to_disk(tmp_path / "p")
    for name in expected:
        torch.testing.assert_close(averaged[name], expected[name], rtol=1e-5, atol=1e-7)
    assert any(not torch.equal(averaged[n], trained[n]) for n in trained)
    assert all(torch.equal(p.detach(), trained[n]) for n, p in model.named_parameters())
    loaded = spacy.load(tmp_path / "p")
    assert loaded("a great film").cats == pytest.approx(cats, abs=1e-6)
