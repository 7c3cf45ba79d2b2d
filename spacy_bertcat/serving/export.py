"""Export to ONNX: a trained classifier's windows-to-logits graph.

The exported function is the component's Hugging Face classifier: padded windows
to window logits, and to first-token hidden states where the aggregation needs
them. Everything around it (tokenizer, chunking, window batching, aggregation)
stays in the pipeline. serving/optimize.py checks and installs the graph.
"""

import contextlib
import warnings
from typing import Any, Dict, List, Tuple, cast

import torch
from torch import nn

from ..errors import Errors
from ..layers.adapter import is_injected, merged_state
from ..layers.batching import WindowBatch
from ..layers.classifier import plan_batches
from ..layers.hf_loading import model_from_config
from ..layers.torch_model import WindowClassifier

OPSET = 17
SAMPLE_TEXTS = [
    "Stocks rallied on Friday after the central bank held interest rates steady.",
    "A short one.",
]


class _Windows(nn.Module):
    """The exported function: padded windows -> (logits[, first-token hidden])."""

    def __init__(self, model: WindowClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *types: torch.Tensor):
        logits, hidden = self.model.classify_windows(input_ids, attention_mask, types[0] if types else None)
        return (logits, hidden) if hidden is not None else logits


def export_onnx(model: WindowClassifier, sample: WindowBatch) -> bytes:
    """Export the model's window classifier to ONNX (float32, CPU).

    Uses torch's TorchScript-based exporter (``dynamo=False``): it traces the Hugging
    Face encoders of every family we support and needs no further package; the
    graph has dynamic batch and length axes.
    """
    import io

    with_types = sample.token_type_ids is not None
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])
    outputs = ["logits"] + (["hidden"] if model.aggregation.needs_hidden else [])
    args = tuple(t.cpu() for t in (sample.input_ids, sample.attention_mask, sample.token_type_ids) if t is not None)
    axes = {name: {0: "windows", 1: "length"} for name in names}
    axes.update({name: {0: "windows"} for name in outputs})
    buffer = io.BytesIO()
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Windows(model),
                args,
                cast(Any, buffer),
                dynamo=False,
                input_names=names,
                output_names=outputs,
                dynamic_axes=axes,
                opset_version=OPSET,
                do_constant_folding=True,
            )
    except Exception as e:  # the exporter raises many kinds
        raise ValueError(
            Errors.BC064.format(model_type=_model_type(model), reason=f"the ONNX export failed ({e!r:.300})")
        ) from e
    finally:
        model.train(was_training)  # the exporter leaves modules in train mode
    return buffer.getvalue()


def _model_type(model: WindowClassifier) -> str:
    return getattr(getattr(model.hf_model, "config", None), "model_type", "?")


def sample_batches(thinc_model: Any, texts: List[str]) -> Tuple[List[WindowBatch], List[int]]:
    """The window batches the component makes for `texts` (prediction's chunking),
    on the CPU."""
    # min_padding=0: rows of different lengths form batches of different shapes
    batches, counts, _ = plan_batches(thinc_model, texts, is_train=False, device=torch.device("cpu"), min_padding=0)
    return batches, counts


def plain_model(shim: Any) -> WindowClassifier:
    """RETURNS (WindowClassifier): The shim's model on the CPU in float32, LoRA
    adapters merged into their weights (a copy where anything changes)."""
    model = shim.model
    if is_injected(model):
        config = json_config(model.hf_model.config)
        hf_model = model_from_config(config, shim.cfg["attn_implementation"])
        plain = WindowClassifier(hf_model, model.aggregation_name, model.pooling)
        plain.load_state_dict({k: v.cpu().float() for k, v in merged_state(model).items()}, strict=True)
        return plain.eval()
    if next(model.parameters()).device.type != "cpu" or next(model.parameters()).dtype != torch.float32:
        import copy

        model = copy.deepcopy(model).to("cpu", torch.float32)
    return model


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Dropout off for the export and its check, the mode restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def json_config(config: Any) -> Dict[str, Any]:
    import json

    return json.loads(config.to_json_string(use_diff=False))
