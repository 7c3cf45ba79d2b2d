"""int8 quantization of an exported ONNX graph (ONNX Runtime's dynamic quantization:
int8 weights per output channel, activations quantized on the fly)."""

import tempfile
from pathlib import Path
from typing import Sequence

from ..layers.onnx_runtime import import_onnxruntime

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
                source,
                target,
                weight_type=QuantType.QInt8,
                per_channel=True,
                op_types_to_quantize=list(ops),
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        finally:
            root.setLevel(level)
        return target.read_bytes()
