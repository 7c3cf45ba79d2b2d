"""Learning-rate scales and weight decay per parameter, read from the encoder map.

Freezing (freezing.py) and the optimizer step (optim.py) both work on the map built
in layers/encoder_map.py: embeddings, layer i, shared encoder tensors, head.
"""

import re
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

from torch import nn

from .encoder_map import HEAD, LAYER, EncoderMap

# Hugging Face's Trainer exempts these names (lower-cased) and every nn.LayerNorm
# from weight decay (Trainer.get_decay_parameter_names).
_NO_DECAY_PATTERNS = [
    re.compile(p) for p in (r"bias", r"layernorm", r"rmsnorm", r"(?:^|\.)norm(?:$|\.)", r"_norm(?:$|\.)")
]


def lr_scale(kind: str, index: int, n_layers: int, head_lr_scale: float, layer_lr_decay: float) -> float:
    """The learning-rate multiplier of a parameter of a kind (see EncoderMap).

    The head learns `head_lr_scale` times the base rate; the top encoder layer learns
    at the base rate and each layer below at `layer_lr_decay` times the one above;
    the embeddings and the shared encoder tensors sit one step below the bottom layer.
    """
    if kind == HEAD:
        return head_lr_scale
    below_top = n_layers - 1 - index if kind == LAYER else n_layers
    return layer_lr_decay**below_top


def no_decay_names(module: nn.Module) -> set:
    """RETURNS (set): Names of the parameters exempt from weight decay, by Hugging
    Face's rule: inside an nn.LayerNorm, or a name that mentions a bias or a norm
    (DeBERTa's q_bias, MPNet's relative_attention_bias, RMSNorm weights, ...)."""
    names = set()
    for module_name, sub in module.named_modules():
        for param_name, _ in sub.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            local = full.split("hf_model.", 1)[-1].lower()
            if isinstance(sub, nn.LayerNorm) or any(p.search(local) for p in _NO_DECAY_PATTERNS):
                names.add(full)
    return names


@dataclass
class ParamGroup:
    """Parameters sharing a learning-rate scale and a weight-decay rule."""

    lr_scale: float
    decay: bool
    names: List[str] = field(default_factory=list)
    params: List[nn.Parameter] = field(default_factory=list)


def param_groups(
    module: nn.Module, encoder_map: EncoderMap, head_lr_scale: float, layer_lr_decay: float
) -> List[ParamGroup]:
    """Split all parameters (frozen ones too) into groups by lr scale and decay."""
    positions = encoder_map.positions()
    exempt = no_decay_names(module)
    groups: Dict[Tuple[float, bool], ParamGroup] = {}
    for name, param in module.named_parameters():
        kind, index = positions[name]
        scale = lr_scale(kind, index, encoder_map.n_layers, head_lr_scale, layer_lr_decay)
        key = (scale, name not in exempt)
        group = groups.setdefault(key, ParamGroup(*key))
        group.names.append(name)
        group.params.append(param)
    return list(groups.values())
