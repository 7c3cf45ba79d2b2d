"""The spacy-bertcat command line (typer): ``python -m spacy_bertcat COMMAND`` or
``spacy-bertcat COMMAND``.

Commands: ``convert`` (JSONL/CSV into .spacy, with a seeded stratified split),
``evaluate`` (a report: metrics, confusion matrix, precision-recall curves, the most
confident errors), ``predict`` (JSONL with doc.cats) and ``find-thresholds``
(per-label thresholds for multi-label pipelines) and ``calibrate`` (calibrated
scores and conformal prediction sets, fitted on held-out data) and ``optimize``
(a pipeline for CPU serving on ONNX Runtime, int8 by default) and ``train``
(`spacy train`, data-parallel on several workers with --workers or torchrun)
and ``tune`` (hyperparameter search over a training config on Ray Tune)
and ``explain`` (token attributions of a classifier's decisions, as an HTML page).
"""

from . import (  # noqa: F401  (registers the commands)
    calibrate,
    convert,
    evaluate,
    explain,
    find_thresholds,
    optimize,
    predict,
    train,
    tune,  # noqa: F401  (registers the `tune` command)
)
from ._util import app, plain_in_new_printers


def main() -> None:
    """Run the CLI (the `spacy-bertcat` console script)."""
    plain_in_new_printers()
    app()


__all__ = ["app", "main"]
