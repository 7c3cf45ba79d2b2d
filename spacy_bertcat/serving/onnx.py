"""ONNX Runtime serving: a trained classifier's windows-to-logits graph in ONNX.

``optimize_pipe`` exports the component's Hugging Face classifier (the part that maps
padded windows to window logits, and to first-token hidden states where the
aggregation needs them) with torch's ONNX exporter, checks that ONNX Runtime
reproduces it, and optionally quantizes its weights to int8 (ONNX Runtime's dynamic
quantization: int8 weights per output channel, activations quantized on the fly).
Everything around it stays as it was: the tokenizer, chunking, window batching,
aggregation (in torch, a few weights), thresholds and calibration. So an optimized
pipeline is a normal pipeline: ``spacy.load``, ``nlp.pipe`` (also with
``n_process``), ``spacy package`` and the CLI work, and it is saved as ONNX bytes
(protobuf, no pickle) in the component's model file.

It predicts; it does not train (the fp32 weights are not kept, which is what makes
it smaller: two thirds of the size with int8 linear layers, a quarter with int8
embeddings too): train the original pipeline and optimize it again.

ONNX Runtime is an optional dependency (``pip install "spacy-bertcat[onnx]"``): the
core never imports it, an optimized pipeline needs it to load.
"""
import contextlib
import os
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..errors import Errors, Warnings
from ..layers.aggregation import build_aggregation
from ..layers.batching import WindowBatch, make_batches
from ..layers.torch_model import WindowClassifier

ENGINE = "onnxruntime"
_INHERITED: List[Any] = []  # sessions a forked process inherited (see session())
OPSET = 17
# fp32 ONNX Runtime must reproduce the torch model's logits to this (absolute);
# float reassociation gives ~1e-5, a wrong graph gives whole units.
EXPORT_TOLERANCE = 1e-3
SAMPLE_TEXTS = [
    "Stocks rallied on Friday after the central bank held interest rates steady.",
    "A short one.",
]


def import_onnxruntime() -> Any:
    """RETURNS: The onnxruntime module, or raises BC063 if it is not installed."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ValueError(Errors.BC063) from e
    return onnxruntime


class OnnxWindowClassifier(WindowClassifier):
    """A WindowClassifier whose windows are classified by ONNX Runtime.

    onnx_model (bytes): The serialized ONNX graph: inputs input_ids,
        attention_mask (and token_type_ids where the family's frame has types),
        outputs logits (and hidden, the first-token states, for aggregation
        "attention").
    config (Dict[str, Any]): The Hugging Face config (as a dict) the graph was
        exported from.
    aggregation (str): The aggregation of window logits (its weights are loaded
        into ``self.aggregation`` like any module's).
    runtime (Dict[str, Any]): What was made: engine, int8, versions, and the
        model's hidden_size and num_labels.

    One ONNX Runtime session per process, made at the first call (a forked
    `n_process` worker makes its own: a session's thread pool does not survive a
    fork), with as many threads as torch uses in that process.
    """

    def __init__(self, onnx_model: bytes, config: Dict[str, Any], aggregation: str, runtime: Dict[str, Any]) -> None:
        nn.Module.__init__(self)
        self.hf_model = None
        self.config = dict(config)
        self.onnx_model = onnx_model
        self.runtime = dict(runtime)
        self.aggregation_name = aggregation
        self.aggregation = build_aggregation(aggregation, int(runtime["hidden_size"]))
        self._session: Any = None
        self._session_pid: Optional[int] = None
        self._input_names: List[str] = []
        self._lock = threading.Lock()
        self._warned_device = False
        import_onnxruntime()

    @property
    def num_labels(self) -> int:
        return int(self.runtime["num_labels"])

    def session(self) -> Any:
        if self._session is not None and self._session_pid == os.getpid():
            return self._session
        with self._lock:
            if self._session is None or self._session_pid != os.getpid():
                if self._session is not None:
                    # A session inherited through fork: its thread pool's threads do
                    # not exist here, so it is never used, and never destroyed either
                    # (its destructor would wait on them).
                    _INHERITED.append(self._session)
                session = make_session(self.onnx_model)
                self._input_names = [i.name for i in session.get_inputs()]
                self._session_pid = os.getpid()
                self._session = session  # published last: other threads see it complete
        return self._session

    def __getstate__(self) -> Dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def classify_windows(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        session = self.session()
        device = input_ids.device
        if device.type != "cpu" and not self._warned_device:
            self._warned_device = True
            warnings.warn(Warnings.BCW015.format(device=device))
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feeds = {name: given[name].detach().cpu().numpy() for name in self._input_names}
        outputs = session.run(None, feeds)
        logits = torch.from_numpy(outputs[0]).to(device)
        hidden = torch.from_numpy(outputs[1]).to(device) if self.aggregation.needs_hidden else None
        return logits, hidden


def make_session(onnx_model: bytes) -> Any:
    """RETURNS: A CPU ONNX Runtime session on the graph, with torch's thread count."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # Memory patterns plan buffers for one input shape; window batches vary in
    # shape, so the plans only pile up (BBC News, batch 32: peak 1,450 MB with them,
    # 994 MB without, at the same speed). The arena itself is kept: without it, the
    # allocations at every call halve the speed.
    options.enable_mem_pattern = False
    return ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])


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
                _Windows(model), args, buffer, dynamo=False, input_names=names,
                output_names=outputs, dynamic_axes=axes, opset_version=OPSET, do_constant_folding=True,
            )
    except Exception as e:  # the exporter raises many kinds
        raise ValueError(Errors.BC064.format(model_type=_model_type(model), reason=f"the ONNX export failed ({e!r:.300})")) from e
    finally:
        model.train(was_training)  # the exporter leaves modules in train mode
    return buffer.getvalue()


# int8 for the linear layers (MatMul) only by default: int8 embedding tables
# (Gather) cut the size on disk to a quarter instead of two thirds, but ONNX
# Runtime dequantizes the whole table at each call, which costs 10-20% of the
# speed on short texts and measured 0.1-0.3 points of accuracy (bench/serving.py).
INT8_OPS = ("MatMul",)
INT8_OPS_SMALLEST = ("MatMul", "Gather")


def quantize_int8(onnx_model: bytes, ops: Sequence[str] = INT8_OPS) -> bytes:
    """RETURNS (bytes): The graph with int8 weights (per output channel) for its
    `ops` nodes (MatMul: the linear layers; Gather: the embedding tables),
    activations quantized dynamically."""
    import_onnxruntime()
    import logging

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(onnx_model)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # "consider pre-processing": a hint for conv nets
        try:
            quantize_dynamic(
                source, target, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=list(ops),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.setLevel(level)
        return target.read_bytes()


def _model_type(model: WindowClassifier) -> str:
    return getattr(getattr(model.hf_model, "config", None), "model_type", "?")


def sample_batches(thinc_model: Any, texts: List[str]) -> Tuple[List[WindowBatch], List[int]]:
    """The window batches the component makes for `texts` (prediction's chunking)."""
    shim = thinc_model.shims[0]
    doc_ids = shim.tokenizer.encode(texts)
    plans = thinc_model.attrs["chunking"]([len(ids) for ids in doc_ids], thinc_model.attrs["window"], is_train=False)
    # min_padding=0: rows of different lengths form batches of different shapes
    return make_batches(doc_ids, plans, shim.tokenizer, thinc_model.attrs["max_batch_wordpieces"], torch.device("cpu"),
                        min_padding=0)


def plain_model(shim: Any) -> WindowClassifier:
    """RETURNS (WindowClassifier): The shim's model on the CPU in float32, LoRA
    adapters merged into their weights (a copy where anything changes)."""
    from ..layers.adapter import is_injected, merged_state
    from ..layers.hf_loading import model_from_config

    model = shim.model
    if is_injected(model):
        config = json_config(model.hf_model.config)
        plain = WindowClassifier(model_from_config(config, shim.cfg["attn_implementation"]), model.aggregation_name)
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


def optimize_pipe(
    pipe: Any, *, int8: bool = True, check_texts: Optional[List[str]] = None, int8_ops: Sequence[str] = INT8_OPS
) -> Dict[str, Any]:
    """Replace a bertcat component's torch classifier by ONNX Runtime, in place.

    pipe (BertCat): A trained (initialized) bertcat or bertcat_multilabel component.
    int8 (bool): Quantize the weights to int8 (else the graph stays float32).
    check_texts (Optional[List[str]]): Texts on which fp32 ONNX Runtime must
        reproduce the torch model (default: built-in samples, one longer than a window).
    int8_ops (Sequence[str]): The ONNX ops whose weights int8 quantizes.
    RETURNS (Dict[str, Any]): What was made: engine, int8, versions, the fp32
        check's largest logit difference and the sizes of the graphs in bytes.
    """
    import transformers

    from ..layers.classifier import get_shim

    ort = import_onnxruntime()
    shim = get_shim(pipe.model)
    if shim.model is None:
        raise ValueError(Errors.BC017.format(name=pipe.name))
    if isinstance(shim.model, OnnxWindowClassifier):
        raise ValueError(Errors.BC066.format(name=pipe.name, runtime=describe(shim.model.runtime)))
    model = plain_model(shim)
    window = pipe.model.attrs["window"]
    texts = list(check_texts or SAMPLE_TEXTS) + [" ".join(SAMPLE_TEXTS) * (1 + window // 8)]
    batches, counts = sample_batches(pipe.model, texts)
    export_batch = max(batches, key=lambda b: b.input_ids.shape[0])
    model_type = model.hf_model.config.model_type
    with eval_mode(model):
        fp32 = export_onnx(model, export_batch)
        with torch.inference_mode():
            expected = model(batches, counts)
    runtime = {"engine": ENGINE, "int8": False, "onnxruntime_version": ort.__version__,
               "torch_version": torch.__version__, "transformers_version": transformers.__version__,
               "opset": OPSET, "hidden_size": int(model.hf_model.config.hidden_size),
               "num_labels": int(model.hf_model.config.num_labels)}
    config = json_config(model.hf_model.config)
    difference = _check(fp32, config, model, runtime, batches, counts, expected)
    if not difference <= EXPORT_TOLERANCE:
        reason = f"ONNX Runtime's logits differ from torch's by up to {difference:.3g}"
        raise ValueError(Errors.BC064.format(model_type=model_type, reason=reason))
    runtime["fp32_check"] = difference
    graph = fp32
    if int8:
        try:
            graph = quantize_int8(fp32, int8_ops)
        except Exception as e:  # onnx / onnxruntime.quantization raise their own
            reason = f"the int8 quantization failed ({str(e)[:300]}); `--fp32` keeps float32"
            raise ValueError(Errors.BC064.format(model_type=model_type, reason=reason)) from e
        runtime["int8"] = True
        runtime["int8_ops"] = list(int8_ops)
        # The int8 graph runs here before it is saved: the largest logit change is
        # recorded, and a graph ONNX Runtime cannot run never reaches a pipeline.
        runtime["int8_check"] = _check(graph, config, model, runtime, batches, counts, expected)
    served = OnnxWindowClassifier(graph, config, model.aggregation_name, runtime)
    served.aggregation.load_state_dict(model.aggregation.state_dict())
    shim.set_serving_model(served)
    return {**runtime, "fp32_bytes": len(fp32), "bytes": len(graph)}


def _check(graph: bytes, config: Dict[str, Any], model: WindowClassifier, runtime: Dict[str, Any],
           batches: List[WindowBatch], counts: List[int], expected: torch.Tensor) -> float:
    """RETURNS (float): The largest difference between the graph's document logits
    (on ONNX Runtime) and torch's, or raises BC064 if ONNX Runtime cannot run it."""
    candidate = OnnxWindowClassifier(graph, config, model.aggregation_name, runtime)
    candidate.aggregation.load_state_dict(model.aggregation.state_dict())
    try:
        with torch.inference_mode():
            found = candidate(batches, counts)
    except Exception as e:  # onnxruntime's own error types
        reason = f"ONNX Runtime cannot run the exported graph on windows of other shapes ({str(e)[:300]})"
        raise ValueError(Errors.BC064.format(model_type=config.get("model_type"), reason=reason)) from e
    return float((expected - found).abs().max())


def describe(runtime: Dict[str, Any]) -> str:
    return f"{runtime.get('engine')} {'int8' if runtime.get('int8') else 'float32'}"
