"""Serving backends for trained pipelines: the encoder exported to ONNX (export.py),
optionally int8 (quantize.py), and run by ONNX Runtime inside the same spaCy
pipeline (optimize.py installs it; the runtime model itself is
layers/onnx_runtime.py), made by ``spacy-bertcat optimize`` (cli/optimize.py)."""

from ..layers.onnx_runtime import OnnxWindowClassifier
from .optimize import optimize_pipe

__all__ = ["OnnxWindowClassifier", "optimize_pipe"]
