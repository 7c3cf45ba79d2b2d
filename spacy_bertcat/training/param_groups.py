"""Which part of the encoder each parameter belongs to, and what follows from it.

Parameters fall into three kinds, by name, for any BERT-family model:
- "embeddings": anything under an ``embeddings`` module;
- "layer": encoder layer i (``...layer.<i>...`` / ``...layers.<i>...``);
- "head": everything else: the classifier, DistilBERT's pre_classifier, BERT's
  pooler and the window aggregation.
Freezing (freezing.py) and learning-rate scales (optim.py) both work on this split.
"""
from dataclasses import dataclass, field
from typing import List, Tuple

from torch import nn

EMBEDDINGS, LAYER, HEAD = "embeddings", "layer", "head"


def param_position(name: str) -> Tuple[str, int]:
    """RETURNS (Tuple[str, int]): The kind of a parameter and its layer index
    (-1 unless the kind is "layer")."""
    parts = name.split(".")
    for i, part in enumerate(parts[:-1]):
        if part in ("layer", "layers") and parts[i + 1].isdigit():
            return LAYER, int(parts[i + 1])
    if any(part.startswith("embeddings") for part in parts):
        return EMBEDDINGS, -1
    return HEAD, -1


def num_layers(module: nn.Module) -> int:
    """RETURNS (int): The number of encoder layers, from the parameter names."""
    indices = [param_position(n)[1] for n, _ in module.named_parameters()]
    return max(indices) + 1 if indices else 0


def lr_scale(name: str, n_layers: int, head_lr_scale: float, layer_lr_decay: float) -> float:
    """The learning-rate multiplier of a parameter.

    The head learns `head_lr_scale` times the base rate; the top encoder layer learns
    at the base rate and each layer below at `layer_lr_decay` times the one above;
    the embeddings sit one step below the bottom layer.
    """
    kind, index = param_position(name)
    if kind == HEAD:
        return head_lr_scale
    below_top = n_layers - 1 - index if kind == LAYER else n_layers
    return layer_lr_decay**below_top


def no_decay_names(module: nn.Module) -> set:
    """RETURNS (set): Names of biases and normalization weights, exempt from weight
    decay as in Hugging Face's Trainer."""
    names = set()
    for module_name, sub in module.named_modules():
        is_norm = isinstance(sub, nn.LayerNorm) or "norm" in type(sub).__name__.lower()
        for param_name, _ in sub.named_parameters(recurse=False):
            if is_norm or param_name == "bias":
                names.add(f"{module_name}.{param_name}" if module_name else param_name)
    return names


@dataclass
class ParamGroup:
    """Parameters sharing a learning-rate scale and a weight-decay rule."""

    lr_scale: float
    decay: bool
    names: List[str] = field(default_factory=list)
    params: List[nn.Parameter] = field(default_factory=list)


def param_groups(module: nn.Module, head_lr_scale: float, layer_lr_decay: float) -> List[ParamGroup]:
    """Split all parameters (frozen ones too) into groups by lr scale and decay."""
    n_layers = num_layers(module)
    exempt = no_decay_names(module)
    groups = {}
    for name, param in module.named_parameters():
        key = (lr_scale(name, n_layers, head_lr_scale, layer_lr_decay), name not in exempt)
        group = groups.setdefault(key, ParamGroup(*key))
        group.names.append(name)
        group.params.append(param)
    return list(groups.values())
