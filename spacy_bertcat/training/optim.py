"""The optimizer step: spaCy's optimizer settings, applied the Hugging Face way.

thinc's PyTorchShim updates each tensor on its own: it copies every parameter and
gradient to a thinc array, clips each gradient by its own norm, decays biases and
LayerNorm weights, and (with mixed precision) unscales after every backward pass.
``OptimizerStep`` instead does, once per optimizer step:

1. divide the accumulated gradients (by the documents they came from, and by the
   fp16 loss scale);
2. compute the global gradient norm; if it is not finite, skip the step (reported,
   and the fp16 loss scale backs off); else clip by it, as HF's Trainer does;
3. step a torch AdamW/Adam whose learning rate, betas, eps, weight decay and clip
   are read from the thinc ``Optimizer`` at every step, so spaCy's schedules
   (warmup_linear, slanted_triangular, ...) drive it; per-group learning-rate scales
   implement discriminative and layer-wise rates; biases and norms get no decay.

Optimizers that are not Adam (thinc's SGD, RAdam) are called per parameter through
thinc, with the same clipping, ``lr_scale`` and decay rules.
"""
import math
from dataclasses import dataclass
from typing import List, Optional

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


def make_torch_optimizer(cls, specs) -> torch.optim.Optimizer:
    """The fused implementation (one pass over memory: 5x faster than foreach on the
    CPU), where the parameters' device and dtype support it."""
    try:
        return cls(specs, lr=0.0, weight_decay=0.0, fused=True)
    except (RuntimeError, ValueError):
        return cls(specs, lr=0.0, weight_decay=0.0, foreach=True)


def is_adam(optimizer: Optimizer) -> bool:
    return not optimizer.use_radam and optimizer.b1 > 0.0 and optimizer.b2 > 0.0


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
        grads = [p.grad for p in params]
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
        self.zero_grad()
        return StepResult(grad_norm, False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def _torch_step(self, optimizer: Optimizer) -> None:
        if self._torch is None or self._source is not optimizer:
            cls = torch.optim.AdamW if optimizer.L2_is_weight_decay else torch.optim.Adam
            specs = [
                {"params": g.params, "lr_scale": g.lr_scale, "decay": g.decay}
                for g in self.groups
            ]
            self._torch = make_torch_optimizer(cls, specs)
            self._source = optimizer
        for group in self._torch.param_groups:
            group["lr"] = optimizer.learn_rate * group["lr_scale"]
            group["betas"] = (optimizer.b1, optimizer.b2)
            group["eps"] = optimizer.eps
            group["weight_decay"] = optimizer.L2 if group["decay"] else 0.0
        self._torch.step()

    def _thinc_step(self, optimizer: Optimizer) -> None:
        L2 = optimizer.L2
        try:
            for group in self.groups:
                optimizer.L2 = L2 if group.decay else 0.0
                for name, param in zip(group.names, group.params):
                    if param.grad is None:
                        continue
                    weights, _ = optimizer(
                        (self.key_id, name),
                        torch2xp(param.data),
                        torch2xp(param.grad),
                        lr_scale=group.lr_scale,
                    )
                    param.data.copy_(xp2torch(weights, device=param.device))
        finally:
            optimizer.L2 = L2
