"""Serving backends for trained pipelines: the encoder exported to ONNX (optionally
int8) and run by ONNX Runtime inside the same spaCy pipeline (onnx.py), made by
``spacy-bertcat optimize`` (cli/optimize.py)."""
from .onnx import OnnxWindowClassifier, optimize_pipe

__all__ = ["OnnxWindowClassifier", "optimize_pipe"]
