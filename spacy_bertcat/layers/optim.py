"""The optimizer step: spaCy's optimizer settings, applied the Hugging Face way.

thinc's PyTorchShim updates each tensor on its own: it copies every parameter and
gradient to a thinc array, clips each gradient by its own norm, decays biases and
LayerNorm weights, and (with mixed precision) unscales after every backward pass.
``OptimizerStep`` instead does, once per optimizer step:

1. divide the accumulated gradients (by the documents they came from, and by the
   fp16 loss scale);
2. compute the global gradient norm; if it is not finite, skip the step (reported,
   and the fp16 loss scale backs off); else clip by it, as HF's Trainer does;
3. step a torch AdamW/Adam (thinc's Adam) or RAdam (thinc's RAdam) whose learning
   rate, betas, eps, weight decay and clip are read from the thinc ``Optimizer`` at
   every step, so spaCy's schedules (warmup_linear, slanted_triangular, ...) drive
   it; per-group learning-rate scales implement discriminative and layer-wise
   rates; biases and norms get no decay;
4. with ``use_averages``, update an exponential moving average of the weights, kept
   in ``optimizer.averages`` for spaCy's evaluation and saves (see
   ``ParameterAverages``).

thinc's SGD (``beta1 = beta2 = 0``) is called per parameter through thinc, with the
same clipping, ``lr_scale`` and decay rules. A bare gradient collector in place of
the optimizer (what spaCy's ``nlp.rehearse`` passes its components) is handed each
parameter and its gradient, as thinc's PyTorchShim hands them; the optimizer it
stands for then updates the weights in place (thinc's own rules, no ``lr_scale``). (thinc 8.3's own RAdam ignores
``lr_scale``, which is why RAdam runs on torch's implementation; torch adds eps
after the bias correction of the second moment, thinc before it, a difference
that matters only while the second moment is near zero.)
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple, cast

import torch
from thinc.api import Optimizer, torch2xp, xp2torch

from .param_groups import ParamGroup


@dataclass
class StepResult:
    """grad_norm (float): The global norm before clipping. skipped (bool): Whether
    the step was skipped for a non-finite gradient."""

    grad_norm: float
    skipped: bool


class LossScale:
    """Dynamic loss scaling for float16: the gradient fed to backward is multiplied
    by ``value``; the step divides it out after all accumulated backward passes."""

    def __init__(self, enabled: bool, init: float = 2.0**16, interval: int = 2000) -> None:
        self.enabled = enabled
        self.value = init if enabled else 1.0
        self.interval = interval
        self._good_steps = 0

    def update(self, found_inf: bool) -> None:
        if not self.enabled:
            return
        if found_inf:
            self.value = max(self.value / 2.0, 1.0)
            self._good_steps = 0
        else:
            self._good_steps += 1
            if self._good_steps % self.interval == 0:
                self.value *= 2.0


def make_torch_optimizer(cls, specs, **kwargs) -> torch.optim.Optimizer:
    """The fused implementation (one pass over memory: 5x faster than foreach on the
    CPU), where the optimizer and the parameters' device and dtype support it."""
    try:
        return cls(specs, lr=0.0, weight_decay=0.0, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):
        return cls(specs, lr=0.0, weight_decay=0.0, foreach=True, **kwargs)


def is_adam(optimizer: Optimizer) -> bool:
    """Whether thinc would run Adam or RAdam (else plain SGD)."""
    return optimizer.use_radam or (optimizer.b1 > 0.0 and optimizer.b2 > 0.0)


def torch_optimizer_class(optimizer: Optimizer):
    """RETURNS: The torch optimizer class for a thinc optimizer's settings, and the
    keyword arguments that select its weight-decay mode."""
    if optimizer.use_radam:
        return torch.optim.RAdam, {"decoupled_weight_decay": bool(optimizer.L2_is_weight_decay)}
    return (torch.optim.AdamW if optimizer.L2_is_weight_decay else torch.optim.Adam), {}


def averages_key(owner_id: int) -> Tuple[str, int]:
    """RETURNS (Tuple[str, int]): The key of a model's ParameterAverages in a thinc
    optimizer's ``averages`` (a key no thinc parameter uses)."""
    return ("spacy-bertcat", owner_id)


class ParameterAverages:
    """An exponential moving average of the trainable weights, with thinc's decay
    schedule: after a parameter's t-th update, ``decay = min((1 + t) / (10 + t),
    0.9999)`` and ``average += (1 - decay) * (weights - average)``. (thinc starts the
    average at zero; here it starts at the weights after the first update, so early
    evaluations are not pulled towards zero.)

    spaCy evaluates and saves inside ``nlp.use_params(optimizer.averages)``; the
    shim's ``use_params`` finds this object there under its key and swaps the
    averages in.
    """

    def __init__(self) -> None:
        self.averages: Dict[str, torch.Tensor] = {}
        self.updates: Dict[str, int] = {}

    @torch.no_grad()
    def update(self, named_params: List[Tuple[str, torch.nn.Parameter]]) -> None:
        by_decay: Dict[float, Tuple[list, list]] = {}
        for name, param in named_params:
            t = self.updates.get(name, 0) + 1
            self.updates[name] = t
            if name not in self.averages or self.averages[name].shape != param.shape:  # new, or a resized head
                self.averages[name] = param.detach().clone()
                continue
            decay = min((1.0 + t) / (10.0 + t), 0.9999)
            averages, weights = by_decay.setdefault(decay, ([], []))
            averages.append(self.averages[name])
            weights.append(param.detach())
        for decay, (averages, weights) in by_decay.items():
            torch._foreach_lerp_(averages, weights, 1.0 - decay)


class OptimizerStep:
    """Step a torch model's parameters with the settings of a thinc Optimizer.

    groups (List[ParamGroup]): All parameters, by lr scale and decay rule.
    key_id (int): Id used in the parameter keys of thinc's per-parameter path.
    """

    def __init__(self, groups: List[ParamGroup], key_id: int) -> None:
        self.groups = groups
        self.key_id = key_id
        self._torch: Optional[torch.optim.Optimizer] = None
        self._source: Optional[Optimizer] = None

    @property
    def params(self) -> List[torch.nn.Parameter]:
        return [p for group in self.groups for p in group.params]

    def __call__(self, optimizer: Optimizer, grad_divisor: float) -> StepResult:
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return StepResult(0.0, False)
        if not isinstance(optimizer, Optimizer):
            return self._hand_over(optimizer, grad_divisor)
        grads = cast(List[torch.Tensor], [p.grad for p in params])
        # One pass to measure, one to scale: the divisor and the clip coefficient
        # are applied together.
        grad_norm = float(torch.nn.utils.get_total_norm(grads, foreach=True)) / grad_divisor
        if not math.isfinite(grad_norm):
            self.zero_grad()
            return StepResult(grad_norm, True)
        scale = 1.0 / grad_divisor
        if optimizer.grad_clip and grad_norm > optimizer.grad_clip:
            scale *= optimizer.grad_clip / (grad_norm + 1e-6)
        if scale != 1.0:
            torch._foreach_mul_(grads, scale)
        if is_adam(optimizer):
            self._torch_step(optimizer)
        else:
            self._thinc_step(optimizer)
        if optimizer.averages is not None:
            averages = cast(Dict[Any, ParameterAverages], optimizer.averages).setdefault(
                averages_key(self.key_id), ParameterAverages()
            )
            averages.update([(n, p) for g in self.groups for n, p in zip(g.names, g.params) if p.grad is not None])
        self.zero_grad()
        return StepResult(grad_norm, False)

    def _hand_over(self, collect: Any, grad_divisor: float) -> StepResult:
        """Give a gradient collector each parameter and its gradient (divided),
        as thinc arrays on the parameter's memory, so that the optimizer the
        collector stands for updates the parameter in place."""
        grads = [p.grad for p in self.params if p.grad is not None]
        grad_norm = float(torch.nn.utils.get_total_norm(grads, foreach=True)) / grad_divisor
        if not math.isfinite(grad_norm):
            self.zero_grad()
            return StepResult(grad_norm, True)
        torch._foreach_mul_(grads, 1.0 / grad_divisor)
        for group in self.groups:
            for name, param in zip(group.names, group.params):
                if param.grad is not None:
                    collect((self.key_id, name), torch2xp(param.data), torch2xp(param.grad))
        self.zero_grad()
        return StepResult(grad_norm, False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _torch_step(self, optimizer: Optimizer) -> None:
        if self._torch is None or self._source is not optimizer:
            cls, kwargs = torch_optimizer_class(optimizer)
            specs = [{"params": g.params, "lr_scale": g.lr_scale, "decay": g.decay} for g in self.groups]
            self._torch = make_torch_optimizer(cls, specs, **kwargs)
            self._source = optimizer
        for group in self._torch.param_groups:
            group["lr"] = optimizer.learn_rate * group["lr_scale"]
            group["betas"] = (optimizer.b1, optimizer.b2)
            group["eps"] = optimizer.eps
            group["weight_decay"] = optimizer.L2 if group["decay"] else 0.0
        self._torch.step()

    def _thinc_step(self, optimizer: Optimizer) -> None:
        L2, averages = optimizer.L2, optimizer.averages
        optimizer.averages = None  # ParameterAverages keeps them, see __call__
        try:
            for group in self.groups:
                optimizer.L2 = L2 if group.decay else 0.0
                for name, param in zip(group.names, group.params):
                    if param.grad is None:
                        continue
                    weights, _ = optimizer(
                        (self.key_id, name),
                        torch2xp(param.data),  # type: ignore[arg-type]
                        torch2xp(param.grad),  # type: ignore[arg-type]
                        lr_scale=group.lr_scale,
                    )
                    param.data.copy_(xp2torch(weights, device=param.device))
        finally:
            optimizer.L2, optimizer.averages = L2, averages
