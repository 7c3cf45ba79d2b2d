"""Choosing a calibration of exclusive classes by cross-validation within the
held-out data (`spacy-bertcat calibrate`'s default, ``--method auto``).

The held-out documents are split into k folds stratified by class; each
candidate map is fitted on k - 1 folds and scored on the fold left out (ECE over
15 equal-width and 15 equal-mass bins of the top-label confidence, log loss,
Brier score, and on how many documents the top class changed), and "none" (the
model's own scores) is scored on the same folds.

The rule, made so the choice is not worse than no calibration on new data: a
map is *eligible* if, fold by fold against "none", its ECE is lower on average
by more than the standard error of that difference across the folds (the fold
spread), and its log loss is not higher on average by more than its own
standard error. Of the eligible maps, those whose ECE is within the fold spread
of the lowest are as good as it (differences of that size are noise), and the
one of them with the lowest log loss wins; without an eligible map, "none"
stays. Maps that can change the top class (vector scaling,
Dirichlet) are candidates only where the caller allows decision changes.
"""

import math
from typing import Any, Callable, Dict, List, Sequence

import numpy

from . import calibrators

# name: fit(logits, gold_index) -> the parameters of the map
FITTERS: Dict[str, Callable[[numpy.ndarray, numpy.ndarray], Dict[str, Any]]] = {
    "temperature": lambda z, y: {"temperature": calibrators.fit_temperature_fast(z, y)},
    "isotonic": lambda z, y: fit_top_label("isotonic", z, y),
    "histogram": lambda z, y: fit_top_label("histogram", z, y),
    "vector": calibrators.fit_vector,
    "dirichlet": calibrators.fit_dirichlet,
}
KEEPS_DECISIONS = ("none", "temperature", "isotonic", "histogram")
CHANGES_DECISIONS = ("vector", "dirichlet")
N_BINS = 15


def fit_top_label(method: str, logits: numpy.ndarray, gold_index: numpy.ndarray) -> Dict[str, Any]:
    """A top-label map after temperature scaling (see calibrators.py).

    RETURNS (Dict[str, Any]): "temperature", "knots", "values".
    """
    temperature = calibrators.fit_temperature_fast(logits, gold_index)
    fitter = calibrators.fit_isotonic if method == "isotonic" else calibrators.fit_histogram
    return {"temperature": temperature, **fitter(numpy.asarray(logits, dtype="f8") / temperature, gold_index)}


def calibrated_probs(method: str, params: Dict[str, Any], logits: numpy.ndarray) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): softmax of the map `method` with `params` applied
    to `logits` (float64)."""
    z = numpy.asarray(logits, dtype="f8")
    if method == "none":
        out = z
    elif method == "temperature":
        out = z / params["temperature"]
    elif method == "vector":
        out = calibrators.apply_vector(numpy, z, params["slopes"], params["intercepts"])
    elif method == "dirichlet":
        out = calibrators.apply_dirichlet(numpy, z, params["weights"], params["intercepts"])
    else:
        out = calibrators.apply_top_label(
            numpy, z, method, params["knots"], params["values"], params.get("temperature", 1.0)
        )
    return numpy.exp(calibrators.log_softmax(numpy, out))


def top_label_ece(probs: numpy.ndarray, gold_index: numpy.ndarray, equal_mass: bool = False) -> float:
    """ECE of the top-label confidence over N_BINS bins (as metrics.calibration_metrics)."""
    top = probs.argmax(axis=1)
    conf = probs[numpy.arange(len(probs)), top]
    correct = (top == gold_index).astype("f8")
    if equal_mass:
        edges = numpy.quantile(conf, numpy.linspace(0.0, 1.0, N_BINS + 1))
        edges[0], edges[-1] = 0.0, 1.0
        edges = numpy.unique(edges)
    else:
        edges = numpy.linspace(0.0, 1.0, N_BINS + 1)
    index = numpy.clip(numpy.searchsorted(edges, conf, side="left") - 1, 0, len(edges) - 2)
    gap = numpy.bincount(index, weights=conf - correct, minlength=len(edges) - 1)
    return float(numpy.abs(gap).sum() / max(len(conf), 1))


def _se(values: numpy.ndarray) -> float:
    """The standard error of the mean of paired per-fold differences."""
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.inf


def fold_scores(probs: numpy.ndarray, gold_index: numpy.ndarray, raw_top: numpy.ndarray) -> Dict[str, float]:
    rows = numpy.arange(len(probs))
    onehot = numpy.eye(probs.shape[1])[gold_index]
    return {
        "ece": top_label_ece(probs, gold_index),
        "ece_adaptive": top_label_ece(probs, gold_index, equal_mass=True),
        "log_loss": float(-numpy.log(numpy.clip(probs[rows, gold_index], 1e-15, 1.0)).mean()),
        "brier": float(((probs - onehot) ** 2).sum(axis=1).mean()),
        "accuracy": float((probs.argmax(axis=1) == gold_index).mean()),
        "changed": int((probs.argmax(axis=1) != raw_top).sum()),
    }


def cross_validate(
    logits: numpy.ndarray,
    gold_index: numpy.ndarray,
    methods: Sequence[str],
    *,
    k: int = 5,
    seed: int = 0,
) -> Dict[str, Any]:
    """Score each method (and "none") by k-fold cross-validation and choose one
    (see the module doc).

    logits (numpy.ndarray): (docs, classes) held-out logits (or log scores).
    gold_index (numpy.ndarray): Each document's gold class.
    methods (Sequence[str]): The candidate maps (names of FITTERS).
    RETURNS (Dict[str, Any]): "chosen" (a method or "none"), "k", "rule" (a
        sentence), "rows": per method (first "none") its mean over the folds of
        "ece", "ece_adaptive", "log_loss", "brier", "accuracy", "changed"
        (documents whose top class changed, summed over the folds), the fold
        spread "ece_gain" / "ece_gain_se" (mean ECE gain over "none" and its
        standard error), "log_loss_se", "changes_decisions" and "eligible".
    """
    logits = numpy.asarray(logits, dtype="f8")
    gold_index = numpy.asarray(gold_index, dtype="i8")
    k = max(2, min(k, len(gold_index) // 2))
    folds = calibrators.fold_indices(gold_index, k, seed)
    folds = [f for f in folds if len(f)]
    raw_top = logits.argmax(axis=1)
    names = ["none"] + [m for m in methods if m != "none"]
    per_fold: Dict[str, List[Dict[str, float]]] = {name: [] for name in names}
    for j, test in enumerate(folds):
        train = numpy.concatenate([f for i, f in enumerate(folds) if i != j])
        for name in names:
            if name == "none":
                probs = calibrated_probs("none", {}, logits[test])
            else:
                params = FITTERS[name](logits[train], gold_index[train])
                probs = calibrated_probs(name, params, logits[test])
            per_fold[name].append(fold_scores(probs, gold_index[test], raw_top[test]))
    rows = []
    base = per_fold["none"]
    for name in names:
        scores = per_fold[name]
        gain = numpy.asarray([b["ece"] - s["ece"] for b, s in zip(base, scores)])
        extra_loss = numpy.asarray([s["log_loss"] - b["log_loss"] for b, s in zip(base, scores)])
        row: Dict[str, Any] = {"method": name}
        for key in ("ece", "ece_adaptive", "log_loss", "brier", "accuracy"):
            row[key] = float(numpy.mean([s[key] for s in scores]))
        row["changed"] = int(sum(s["changed"] for s in scores))
        row["ece_gain"] = float(gain.mean())
        row["ece_gain_se"] = _se(gain) if name != "none" else 0.0
        row["log_loss_se"] = _se(extra_loss) if name != "none" else 0.0
        row["changes_decisions"] = name in CHANGES_DECISIONS
        row["eligible"] = bool(
            name != "none" and row["ece_gain"] > row["ece_gain_se"] and float(extra_loss.mean()) <= row["log_loss_se"]
        )
        rows.append(row)
    eligible = [row for row in rows if row["eligible"]]
    chosen = "none"
    if eligible:
        # The lowest ECE; a method whose ECE is within the fold spread of it
        # (one standard error of the paired difference) is as good: of those,
        # the lowest log loss.
        best = min(eligible, key=lambda r: r["ece"])
        ties = []
        for row in eligible:
            diff = numpy.asarray(
                [s["ece"] - b["ece"] for s, b in zip(per_fold[row["method"]], per_fold[best["method"]])]
            )
            if diff.mean() <= _se(diff) or row is best:
                ties.append(row)
        chosen = min(ties, key=lambda r: r["log_loss"])["method"]
    return {
        "chosen": chosen,
        "k": len(folds),
        "n": int(len(gold_index)),
        "rule": (
            f"{len(folds)}-fold cross-validation on the held-out data: a method is eligible if its ECE is lower than "
            "no calibration's by more than the fold spread (one standard error of the paired difference) and its log "
            "loss is not higher by more than its standard error; of the eligible methods, those within the fold spread of the lowest ECE "
            "are as good, and the one of them with the lowest log loss is chosen; without an eligible method, none"
        ),
        "rows": rows,
    }
