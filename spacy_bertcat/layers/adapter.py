"""LoRA adapters (through ``peft``): train low-rank updates of the encoder's
projections instead of the encoder itself.

``[components.NAME.model.adapter]`` with ``@misc = "spacy-bertcat.lora.v1"`` adds, to
every target projection W of the encoder layers, a trainable update B A (rank r,
scaled by alpha / r; B starts at zero, so training starts from the pretrained model);
the encoder's own weights stay fixed and the head trains fully. The targets default
to every linear projection inside the encoder's layers (attention query, key, value
and output, and the feed-forward in and out), found on the same structural map of the
encoder (layers/encoder_map.py) that freezing and learning-rate scales use, so the
default works for every supported family; ``target_modules`` narrows them by the
projections' names (``["query", "value"]`` for BERT, ``["q_lin", "v_lin"]`` for
DistilBERT; a name matches a module whose path ends with it).

The layers are injected with ``peft.inject_adapter_in_model``: the Hugging Face model
stays what it was (no PeftModel wrapper), so the encoder map, the window aggregation
and the optimizer step work on it as on any other model.

Saving (``save``):

- ``"merged"`` (default): the pipeline stores the encoder's weights with the update
  added (W + B A alpha / r): a plain Hugging Face classifier, as fast as one at
  prediction, loadable without peft. Training a loaded merged pipeline further starts
  a fresh adapter on the merged weights.
- ``"adapter"``: the pipeline stores only the adapter and the head (a few MB) and
  loads the base encoder from the model's ``name`` (a local directory, or the
  Hugging Face cache) at ``spacy.load``, checking that it is the base the adapter was
  trained on. Point it at the base with ``spacy.load(path, config={"components.NAME.
  model.name": "/models/base"})``. Needs peft at load time.
"""

import hashlib
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, cast

import torch
from spacy.util import registry
from torch import nn

from ..errors import Errors, SettingError, invalid_setting
from .encoder_map import LAYER, EncoderMap

SAVE_MODES = ("merged", "adapter")
ADAPTER_NAME = "default"


@dataclass
class LoraAdapter:
    """The LoRA settings (see spacy-bertcat.lora.v1)."""

    r: int
    alpha: float
    dropout: float
    target_modules: Optional[List[str]]
    save: str

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def targets(self, model: nn.Module, encoder_map: EncoderMap) -> List[str]:
        """The paths (relative to the Hugging Face model) of the linear modules of
        the encoder layers to adapt.

        RETURNS (List[str]): Module paths; a SettingError names the available
            projections if a target_modules entry matches none.
        """
        positions = encoder_map.positions()
        found = []
        for path, module in cast(nn.Module, model.hf_model).named_modules():
            if isinstance(module, nn.Linear) and positions.get(f"hf_model.{path}.weight", ("",))[0] == LAYER:
                found.append(path)
        if not self.target_modules:
            return found
        names = sorted({path.rsplit(".", 1)[-1] for path in found})
        unknown = [t for t in self.target_modules if not any(p == t or p.endswith("." + t) for p in found)]
        if unknown:
            detail = (
                f"{unknown} match no linear projection of the {encoder_map.model_type} encoder's layers; "
                f"its projections are {names}"
            )
            raise SettingError(Errors.BC060.format(detail=detail), "model.adapter.target_modules")
        return [p for p in found if any(p == t or p.endswith("." + t) for t in self.target_modules)]

    def inject(self, hf_model: nn.Module, targets: List[str]) -> None:
        """Add LoRA layers (peft) to the target modules of the model, in place."""
        peft = _import_peft()
        config = peft.LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, target_modules=targets, bias="none"
        )
        peft.inject_adapter_in_model(config, hf_model, adapter_name=ADAPTER_NAME)


def is_adapter_param(name: str) -> bool:
    """Whether a parameter belongs to an injected adapter."""
    return ".lora_" in name


def is_injected(model: nn.Module) -> bool:
    return any(is_adapter_param(name) for name, _ in model.named_parameters())


def adapted_modules(model: nn.Module) -> Dict[str, nn.Module]:
    """RETURNS (Dict[str, nn.Module]): The LoRA layers of a model, by path."""
    return {path: m for path, m in model.named_modules() if hasattr(m, "base_layer") and hasattr(m, "get_delta_weight")}


def merged_state(model: nn.Module) -> Dict[str, torch.Tensor]:
    """The model's state dict with every LoRA update added to its base weight and
    the adapter's own tensors dropped: the state of the plain model (original
    names). The model itself is not changed."""
    state = {k: v.detach() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for path, module in adapted_modules(model).items():
            weight = state.pop(f"{path}.base_layer.weight")
            state[f"{path}.weight"] = weight + cast(Any, module).get_delta_weight(ADAPTER_NAME).to(weight.dtype)
            if f"{path}.base_layer.bias" in state:
                state[f"{path}.bias"] = state.pop(f"{path}.base_layer.bias")
    return {k: v.contiguous() for k, v in state.items() if not is_adapter_param(k)}


def base_fingerprint(model: nn.Module, encoder_map: EncoderMap) -> str:
    """RETURNS (str): A hash of the encoder's pretrained weights (not the head, not
    the adapter): which base an adapter was trained on."""
    from .encoder_map import HEAD

    positions = encoder_map.positions()
    digest = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if positions[name][0] == HEAD or is_adapter_param(name):
            continue
        digest.update(name.replace(".base_layer.", ".").encode())
        digest.update(param.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return digest.hexdigest()[:32]


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as e:
        raise SettingError(Errors.BC061, "model.adapter") from e
    return peft


@registry.misc("spacy-bertcat.lora.v1")
def configure_lora_v1(
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    target_modules: Optional[List[str]] = None,
    save: str = "merged",
) -> LoraAdapter:
    """LoRA adapters on the encoder's projections (peft), the rest of the encoder
    fixed.

    r (int): The rank of each update.
    alpha (float): Its scale: the update is B A alpha / r.
    dropout (float): Dropout on the adapter's input (peft's default, 0, keeps no
        copy of each adapted projection's input for the backward pass).
    target_modules (Optional[List[str]]): Names of the projections to adapt (a
        module matches if its path ends with a name); null for every linear
        projection of the encoder layers.
    save (str): "merged" (the weights with the update added: a plain model, no peft
        at load) or "adapter" (only adapter and head; the base is loaded from the
        model's name).
    """

    def invalid(setting: str, value: Any, detail: str) -> ValueError:
        return invalid_setting(setting, value, detail, "model", "adapter")

    if r < 1:
        raise invalid("r", r, "the rank must be at least 1")
    if alpha <= 0:
        raise invalid("alpha", alpha, "it must be positive")
    if not 0.0 <= dropout < 1.0:
        raise invalid("dropout", dropout, "a dropout rate must be at least 0 and below 1")
    if save not in SAVE_MODES:
        raise invalid("save", save, f"use one of {list(SAVE_MODES)}")
    if target_modules is not None and not target_modules:
        raise invalid("target_modules", target_modules, "name at least one projection, or null for all")
    return LoraAdapter(
        r=r,
        alpha=float(alpha),
        dropout=float(dropout),
        target_modules=list(target_modules) if target_modules else None,
        save=save,
    )
