"""Metrics on arrays of gold values and scores, shared by threshold tuning,
calibration and the evaluation report: precision / recall / F1, ROC AUC, the
precision-recall curve, the F1-optimal threshold of a label, and calibration error
(ECE over equal-width and equal-mass bins, its noise floor, Brier score, log loss).
"""

from typing import Any, Dict, List, Optional, Tuple

import numpy


def prf(tp: float, fp: float, fn: float) -> Tuple[float, float, float]:
    # spaCy's PRFScore: 0.0 (not NaN) where a denominator is 0.
    tp, fp, fn = float(tp), float(fp), float(fn)
    p = tp / (tp + fp + 1e-100)
    r = tp / (tp + fn + 1e-100)
    return p, r, 2 * p * r / (p + r + 1e-100)


def roc_auc(scores: numpy.ndarray, gold: numpy.ndarray) -> Optional[float]:
    """ROC AUC of one label (ties count half), or None without both classes.

    scores (numpy.ndarray): Predicted scores, 1d.
    gold (numpy.ndarray): Gold values (1.0 positive, 0.0 negative), 1d.
    RETURNS (Optional[float]): The area under the ROC curve.
    """
    n_pos = int(gold.sum())
    n_neg = len(gold) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = numpy.argsort(scores, kind="mergesort")
    ranks = numpy.empty(len(scores), dtype="f8")
    sorted_scores = scores[order]
    # Average ranks over ties (Mann-Whitney U).
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[gold == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def pr_curve(scores: numpy.ndarray, gold: numpy.ndarray) -> Dict[str, Any]:
    """Precision and recall of one label at every distinct score threshold.

    RETURNS (Dict[str, Any]): "precision", "recall", "thresholds" (lists, by
        decreasing threshold) and "average_precision" (None without positives).
    """
    n_pos = float(gold.sum())
    if n_pos == 0 or len(scores) == 0:
        return {"precision": [], "recall": [], "thresholds": [], "average_precision": None}
    order = numpy.argsort(-scores, kind="mergesort")
    s, g = scores[order], gold[order]
    last = numpy.r_[numpy.nonzero(numpy.diff(s))[0], len(s) - 1]  # end of each tie run
    tp = numpy.cumsum(g)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    ap = float(numpy.sum(numpy.diff(numpy.r_[0.0, recall]) * precision))
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "thresholds": s[last].tolist(),
        "average_precision": ap,
    }


def best_f1_threshold(scores: numpy.ndarray, gold: numpy.ndarray) -> Optional[Dict[str, float]]:
    """The threshold that maximizes one label's F1 (predicting score >= threshold).

    The threshold lies midway between the lowest score kept and the next lower
    one; among equally good cuts, the one nearest 0.5 wins.

    RETURNS (Optional[Dict[str, float]]): "threshold", "f", "p", "r", or None if
        the label has no positive example.
    """
    n_pos = float(gold.sum())
    if n_pos == 0:
        return None
    order = numpy.argsort(-scores, kind="mergesort")
    s, g = scores[order].astype("f8"), gold[order]
    last = numpy.r_[numpy.nonzero(numpy.diff(s))[0], len(s) - 1]
    tp = numpy.cumsum(g)[last]
    n_predicted = last + 1
    f = 2 * tp / (n_predicted + n_pos)
    below = numpy.r_[s[last[:-1] + 1], 0.0]  # the next lower score (0 after the last)
    thresholds = numpy.clip((s[last] + below) / 2.0, 1e-4, 1 - 1e-4)
    best = numpy.flatnonzero(f >= f.max() - 1e-12)
    k = best[numpy.argmin(numpy.abs(thresholds[best] - 0.5))]
    p, r, f1 = prf(tp[k], n_predicted[k] - tp[k], n_pos - tp[k])
    return {"threshold": float(thresholds[k]), "f": f1, "p": p, "r": r}


N_BINS = 15


def calibration_metrics(
    gold: numpy.ndarray,
    scores: numpy.ndarray,
    *,
    exclusive: bool,
    mask: Optional[numpy.ndarray] = None,
    n_bins: int = N_BINS,
    bootstrap: int = 0,
) -> Dict[str, Any]:
    """How well scores are calibrated.

    gold, scores (numpy.ndarray): (docs, labels) gold values and scores.
    exclusive (bool): Exclusive classes (top-class confidence; docs with exactly
        one gold class) or multi-label (every annotated score).
    mask (Optional[numpy.ndarray]): 1 where a gold value is annotated.
    bootstrap (int): Resamples for 95% bootstrap intervals of the two ECEs (0:
        none).
    RETURNS (Dict[str, Any]): "ece", "ece_adaptive", "brier", "log_loss", "n"
        (predictions scored), "ece_floor" and "ece_adaptive_floor" (see
        ece_floor; equal-width and equal-mass bins), with `bootstrap`
        "ece_interval" and "ece_adaptive_interval" ([low, high]), "bins"
        (equal-width: "lower", "upper", "count", "confidence", "accuracy"),
        "adaptive_bins" (the same, equal-mass).
    """
    gold = numpy.asarray(gold, dtype="f8")
    scores = numpy.asarray(scores, dtype="f8")
    mask = numpy.ones_like(gold) if mask is None else numpy.asarray(mask, dtype="f8")
    if exclusive:
        keep = (gold * mask).sum(axis=1) == 1
        gold, scores = gold[keep], scores[keep]
        top = scores.argmax(axis=1) if len(scores) else numpy.zeros(0, dtype=int)
        confidence = scores[numpy.arange(len(scores)), top]
        correct = gold[numpy.arange(len(gold)), top]
        brier = float(((scores - gold) ** 2).sum(axis=1).mean()) if len(gold) else None
        p_gold = (scores * gold).sum(axis=1)
        log_loss = float(-numpy.log(numpy.clip(p_gold, 1e-15, 1.0)).mean()) if len(gold) else None
    else:
        known = mask.astype(bool)
        confidence, correct = scores[known], gold[known]
        brier = float(((confidence - correct) ** 2).mean()) if len(correct) else None
        p = numpy.clip(confidence, 1e-15, 1 - 1e-15)
        log_loss = float(-(correct * numpy.log(p) + (1 - correct) * numpy.log1p(-p)).mean()) if len(correct) else None
    bins = _bins(confidence, correct, numpy.linspace(0.0, 1.0, n_bins + 1))
    mass_edges = _equal_mass_edges(confidence, n_bins)
    adaptive = _bins(confidence, correct, mass_edges)
    out: Dict[str, Any] = {
        "n": int(len(confidence)),
        "ece": _ece(bins, len(confidence)),
        "ece_adaptive": _ece(adaptive, len(confidence)),
        "ece_floor": ece_floor(confidence, numpy.linspace(0.0, 1.0, n_bins + 1)),
        "ece_adaptive_floor": ece_floor(confidence, mass_edges),
        "brier": brier,
        "log_loss": log_loss,
        "bins": bins,
        "adaptive_bins": adaptive,
    }
    if bootstrap:
        out["ece_interval"], out["ece_adaptive_interval"] = ece_intervals(confidence, correct, n_bins, bootstrap)
    return out


def ece_intervals(
    confidence: numpy.ndarray, correct: numpy.ndarray, n_bins: int = N_BINS, n_draws: int = 200, seed: int = 0
) -> Tuple[Optional[List[float]], Optional[List[float]]]:
    """95% bootstrap intervals of the equal-width and the equal-mass ECE
    (documents resampled with replacement; the equal-mass edges are taken again
    on each resample). The binned ECE is biased upwards, and more so on a
    resample (its duplicates add noise), so the percentiles of the resampled
    ECEs lie above the estimate: the interval is the basic (reverse-percentile)
    bootstrap's, [2 ECE - q97.5, 2 ECE - q2.5], which corrects that shift
    (clipped at 0). It shows how much the ECE would move on another sample of
    this size; with the noise floor, whether a gap is real.

    RETURNS: ([low, high] equal-width, [low, high] equal-mass), None without
        predictions.
    """
    n = len(confidence)
    if not n:
        return None, None
    rng = numpy.random.default_rng(seed)
    width_edges = numpy.linspace(0.0, 1.0, n_bins + 1)
    width, mass = [], []
    for _ in range(n_draws):
        pick = rng.integers(0, n, n)
        conf, hit = confidence[pick], correct[pick]
        width.append(_fast_ece(conf, hit, width_edges))
        mass.append(_fast_ece(conf, hit, _equal_mass_edges(conf, n_bins)))
    estimates = (
        _fast_ece(confidence, correct, width_edges),
        _fast_ece(confidence, correct, _equal_mass_edges(confidence, n_bins)),
    )
    out = []
    for estimate, draws in zip(estimates, (width, mass)):
        q_low, q_high = numpy.percentile(draws, [2.5, 97.5])
        out.append([float(max(0.0, 2 * estimate - q_high)), float(max(0.0, 2 * estimate - q_low))])
    return out[0], out[1]


def _fast_ece(confidence: numpy.ndarray, correct: numpy.ndarray, edges: numpy.ndarray) -> float:
    index = numpy.clip(numpy.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)
    gap = numpy.bincount(index, weights=confidence - correct, minlength=len(edges) - 1)
    return float(numpy.abs(gap).sum() / len(confidence))


def ece_floor(confidence: numpy.ndarray, edges: numpy.ndarray, n_draws: int = 100, seed: int = 0) -> Optional[float]:
    """The ECE that perfectly calibrated scores with these confidences would show
    on this many predictions: each prediction is drawn right with probability equal
    to its confidence (mean over `n_draws` seeded draws). An ECE near it is as
    good as this much data can show; differences below it are noise.

    RETURNS (Optional[float]): The expected ECE of calibrated scores (None without
        predictions).
    """
    n = len(confidence)
    if not n:
        return None
    index = numpy.clip(numpy.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)
    onehot = numpy.zeros((n, len(edges) - 1))
    onehot[numpy.arange(n), index] = 1.0
    conf_sums = confidence @ onehot
    rng = numpy.random.default_rng(seed)
    total = 0.0
    for start in range(0, n_draws, 10):
        draws = (rng.random((min(10, n_draws - start), n)) < confidence).astype("f8")
        total += float(numpy.abs(draws @ onehot - conf_sums).sum()) / n
    return total / n_draws


def _equal_mass_edges(confidence: numpy.ndarray, n_bins: int) -> numpy.ndarray:
    if not len(confidence):
        return numpy.linspace(0.0, 1.0, n_bins + 1)
    edges = numpy.quantile(confidence, numpy.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    return numpy.unique(edges)


def _bins(confidence: numpy.ndarray, correct: numpy.ndarray, edges: numpy.ndarray) -> Dict[str, List]:
    """Bins (lower, upper]: the first one includes 0."""
    index = numpy.clip(numpy.searchsorted(edges, confidence, side="left") - 1, 0, len(edges) - 2)
    count = numpy.bincount(index, minlength=len(edges) - 1)
    with numpy.errstate(invalid="ignore", divide="ignore"):
        conf = numpy.bincount(index, weights=confidence, minlength=len(edges) - 1) / count
        acc = numpy.bincount(index, weights=correct, minlength=len(edges) - 1) / count
    return {
        "lower": edges[:-1].tolist(),
        "upper": edges[1:].tolist(),
        "count": count.tolist(),
        "confidence": [None if c == 0 else float(v) for c, v in zip(count, conf)],
        "accuracy": [None if c == 0 else float(v) for c, v in zip(count, acc)],
    }


def _ece(bins: Dict[str, List], n: int) -> Optional[float]:
    if not n:
        return None
    return float(sum(c * abs(a - p) for c, a, p in zip(bins["count"], bins["accuracy"], bins["confidence"]) if c) / n)
