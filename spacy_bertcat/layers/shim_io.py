"""Serialization of the torch shim (layers/shim.py): the bytes of a component's model.

Three forms, all a msgpack map with ``format`` (FORMAT_VERSION):

- empty: ``{"format", "empty": True}``, a shim before initialize;
- a torch model: its Hugging Face config (JSON), aggregation, tokenizer, weights
  (safetensors) and the transformers version, and ``pooling`` where it is not
  "first" (a model with a mean-pooling head; absent: "first"); with a LoRA adapter saved alone
  (``adapter``: settings, targets, the base's fingerprint and, where the model's
  name was a local folder, that name and the folder's absolute path), the weights
  are the adapter's and the head's, and the base encoder is loaded by name (or
  from the stored folder, where the name given is the one saved and it is not a
  folder from the working directory of the load);
- a serving model (layers/onnx_runtime.py): ``runtime``, the config, aggregation,
  tokenizer, the aggregation's weights and the ONNX graph (``onnx``).

The byte format is what 0.1.0 wrote (tests/test_legacy_pipeline.py): change it only
with a new FORMAT_VERSION. thinc calls the shim's ``to_bytes`` / ``from_bytes``,
which delegate here.
"""

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, cast

import srsly
import torch
from thinc.api import get_torch_default_device

from ..errors import Errors
from .adapter import LoraAdapter, base_fingerprint, is_adapter_param, is_injected, merged_state
from .encoder_map import HEAD
from .hf_loading import (
    base_model_from_pretrained,
    is_known_model_type,
    is_local_dir,
    looks_like_path,
    model_from_config,
)
from .onnx_runtime import OnnxWindowClassifier
from .tokenizer import WordpieceTokenizer
from .torch_model import WindowClassifier

FORMAT_VERSION = 1

# `shim` below is a BertCatShim (layers/shim.py), which imports this module: it is
# not imported back, so it is typed Any.


def shim_to_bytes(shim: Any) -> bytes:
    """RETURNS (bytes): The shim's model, tokenizer and settings, serialized."""
    if shim.model is None:
        return srsly.msgpack_dumps({"format": FORMAT_VERSION, "empty": True})
    import safetensors.torch
    import transformers

    if shim.serving is not None:
        return _serving_to_bytes(shim)
    state, adapter = _state_to_save(shim)
    return srsly.msgpack_dumps(
        {
            "format": FORMAT_VERSION,
            "adapter": adapter,
            "hf_config": shim.hf_model.config.to_json_string(use_diff=False),
            "aggregation": shim.model.aggregation_name,
            "tokenizer": shim.tokenizer.to_bytes(),
            "weights": safetensors.torch.save(state),
            "transformers_version": transformers.__version__,
            # only where not the default: a default model's bytes stay 0.1.0's
            **({"pooling": shim.model.pooling} if shim.model.pooling != "first" else {}),
        }
    )


def _serving_to_bytes(shim: Any) -> bytes:
    import safetensors.torch

    model = shim.model
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return srsly.msgpack_dumps(
        {
            "format": FORMAT_VERSION,
            "runtime": model.runtime,
            "hf_config": json.dumps(model.config),
            "aggregation": model.aggregation_name,
            "tokenizer": shim.tokenizer.to_bytes(),
            "weights": safetensors.torch.save(state),
            "onnx": model.onnx_model,
        }
    )


def _state_to_save(shim: Any) -> Tuple[Dict[str, torch.Tensor], Optional[Dict[str, Any]]]:
    """RETURNS: The weights to store, and what a stored adapter needs to load
    (None where the weights are a plain model's: no adapter, or merged)."""
    model = shim.model
    if not is_injected(model):
        return {k: v.detach().contiguous() for k, v in model.state_dict().items()}, None
    if shim.adapter.save == "merged":
        return merged_state(model), None
    positions = shim.encoder_map.positions()
    state = {
        k: v.detach().contiguous()
        for k, v in model.state_dict().items()
        if is_adapter_param(k) or not k.startswith("hf_model.") or positions.get(k, ("",))[0] == HEAD
    }
    info = {"settings": shim.adapter.to_dict(), "targets": shim.adapter_targets, "base": shim.adapter_base}
    if shim.adapter_base_path is not None:
        info["base_name"], info["base_path"] = shim.adapter_base_path
    return state, info


def shim_from_bytes(shim: Any, data: bytes) -> Any:
    """Install the model and tokenizer serialized in `data` (shim_to_bytes) into
    the shim. RETURNS: The shim."""
    import safetensors.torch

    try:
        msg = srsly.msgpack_loads(data)
        if msg.get("empty"):
            return shim
        hf_config = json.loads(msg["hf_config"])
        tokenizer = WordpieceTokenizer.from_bytes(msg["tokenizer"])
        weights = safetensors.torch.load(msg["weights"])
    except Exception as e:  # msgpack, JSON and safetensors all raise their own
        raise ValueError(Errors.BC012.format(where="", reason=repr(e))) from e
    if not msg.get("runtime") and not is_known_model_type(hf_config.get("model_type")):
        import transformers

        saved = msg.get("transformers_version") or "an unrecorded version"
        raise ValueError(
            Errors.BC101.format(model_type=hf_config.get("model_type"), saved=saved, installed=transformers.__version__)
        )
    if msg.get("runtime"):
        model: WindowClassifier = OnnxWindowClassifier(msg["onnx"], hf_config, msg["aggregation"], msg["runtime"])
        model.load_state_dict(weights, strict=True)
        shim.tokenizer = tokenizer
        shim.set_serving_model(model.to(get_torch_default_device()))
        return shim
    if msg.get("adapter"):
        return _load_with_adapter(shim, msg, hf_config, tokenizer, weights)
    hf_model = model_from_config(hf_config, shim.cfg["attn_implementation"])
    model = WindowClassifier(hf_model, msg["aggregation"], msg.get("pooling", "first"))
    model.load_state_dict(weights, strict=True)
    shim.set_model(model, tokenizer, inject_adapter=False)
    return shim


def base_location(name: Optional[str], info: Dict[str, Any]) -> Optional[str]:
    """RETURNS (Optional[str]): Where an adapter saved alone loads its base encoder
    from: the model's name, except where that is the name it was saved with, it
    was a local folder then (a relative name, say) and it is no folder from this
    working directory: then the folder's absolute path stored at the save."""
    stored_name, stored_path = info.get("base_name"), info.get("base_path")
    if stored_path and name == stored_name and not is_local_dir(name) and is_local_dir(stored_path):
        return stored_path
    return name


def _missing_base(name: Optional[str], info: Dict[str, Any]) -> Optional[str]:
    """RETURNS (Optional[str]): Why there is no base encoder to load where the name
    can only be a folder (a path, or a folder when the pipeline was saved) and is
    none from here; None where transformers should try the name."""
    if is_local_dir(name):
        return None
    here = f"it is not a folder from the working directory {os.getcwd()}"
    if info.get("base_path") and name == info.get("base_name"):
        return f"the base '{name}' cannot be loaded: {here}, nor is {info['base_path']}, where it was when the pipeline was saved"
    if name is None or looks_like_path(name):
        return f"the base '{name}' cannot be loaded: {here}"
    return None


def _base_not_loaded(name: str, error: Exception) -> str:
    """RETURNS (str): Why transformers could not load the base, in words: its
    message where it is one for people (OSError, ValueError), not an internal
    error (looking for a Hub model offline can end in an AttributeError)."""
    text = str(error).strip()
    if isinstance(error, (OSError, ValueError)) and text:
        reason = text.splitlines()[0]
    elif is_local_dir(name):
        reason = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"
    else:
        reason = "it is neither a folder here nor a Hugging Face Hub model in the cache or on the Hub"
    return f"the base '{name}' cannot be loaded ({reason})"


def _load_with_adapter(
    shim: Any,
    msg: Dict[str, Any],
    hf_config: Dict[str, Any],
    tokenizer: WordpieceTokenizer,
    weights: Dict[str, torch.Tensor],
) -> Any:
    """Load the base encoder from the model's name, check it is the base the
    adapter was trained on, inject the adapter and load its weights and the
    head's."""
    info = msg["adapter"]
    name = cast(str, base_location(shim.cfg.get("name"), info))
    absent = _missing_base(name, info)
    if absent is not None:
        raise ValueError(Errors.BC062.format(detail=absent))
    try:
        hf_model = base_model_from_pretrained(name, hf_config, shim.cfg["attn_implementation"])
    except (OSError, ValueError) as e:
        raise ValueError(Errors.BC062.format(detail=_base_not_loaded(name, e))) from e
    except Exception as e:  # transformers' internals: the message says it all
        raise ValueError(Errors.BC062.format(detail=_base_not_loaded(name, e))) from None
    shim.adapter = LoraAdapter(**info["settings"])
    pooling = msg.get("pooling", "first")
    shim.set_model(WindowClassifier(hf_model, msg["aggregation"], pooling), tokenizer, inject_adapter=False)
    found = base_fingerprint(shim.model, shim.encoder_map)
    if found != info["base"]:
        detail = f"the encoder weights in '{name}' are not the ones it was trained on"
        raise ValueError(Errors.BC062.format(detail=detail))
    shim.inject_adapter(info["targets"], base=found)
    if is_local_dir(name):
        shim.adapter_base_path = (shim.cfg.get("name"), str(Path(name).expanduser().resolve()))
    missing, unexpected = shim.model.load_state_dict(weights, strict=False)
    missing = [
        k
        for k in missing
        if k in weights
        or is_adapter_param(k)
        or not k.startswith("hf_model.")
        or shim.encoder_map.positions().get(k, ("",))[0] == HEAD
    ]
    if missing or unexpected:
        raise ValueError(
            Errors.BC012.format(where="", reason=f"adapter weights: missing {missing[:5]}, unexpected {unexpected[:5]}")
        )
    return shim
