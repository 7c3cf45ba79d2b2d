"""ONNX Runtime models: what a pipeline optimized by ``spacy-bertcat optimize`` runs.

``OnnxWindowClassifier`` is a WindowClassifier whose windows (padded wordpiece ids)
are classified by an ONNX graph on ONNX Runtime; the aggregation of window logits
stays in torch. The shim installs one when it loads a serving model
(layers/shim_io.py); serving/optimize.py makes one from a trained component
(export and quantization: serving/export.py, serving/quantize.py).

ONNX Runtime is an optional dependency (``pip install "spacy-bertcat[onnx]"``):
this module imports it only when a serving model is made (``import_onnxruntime``),
so the core never needs it; an optimized pipeline needs it to load.
"""

import os
import threading
import warnings
from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import nn

from ..errors import Errors, Warnings
from .aggregation import build_aggregation
from .torch_model import WindowClassifier

ENGINE = "onnxruntime"
_INHERITED: List[Any] = []  # sessions a forked process inherited (see session())


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
        self.hf_model = None  # type: ignore[assignment]
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
        given: Dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "token_type_ids": token_type_ids,
        }
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


def describe(runtime: Dict[str, Any]) -> str:
    """RETURNS (str): The serving runtime in words, e.g. "onnxruntime int8"."""
    return f"{runtime.get('engine')} {'int8' if runtime.get('int8') else 'float32'}"
