"""Decision thresholds of multi-label components, tuned on held-out data.

Each label gets the threshold that maximizes its F1 on the data (metrics.py's
best_f1_threshold). A label with fewer than `min_support` positives there is too rare
for its own threshold to mean anything (with one positive, any cut just below its
score looks perfect): the rare labels share one *global* threshold instead, the
single value that maximizes micro-F1 over the rare labels pooled (their scores run
lower than frequent labels', so a value fitted to all labels would keep most of them
from ever firing); if the rare labels have fewer than `min_support` positives between
them, over all labels pooled. The result says which labels fell back.

A rare label's scores can also run lower than the other rare labels', so that the
pooled value keeps it from ever firing although it is common enough in the training
data to expect it. Given each label's prevalence in the training data, a rare label's
threshold is therefore at most the one at which it is predicted for as many
documents of the data as its prevalence makes expected (at least one): proportional
thresholding, "PCut" in Yang's study of thresholding strategies for text
categorization (SIGIR 2001), used here only as a cap on the pooled value.

`bertcat_multilabel` tunes its thresholds this way at each evaluation of
`spacy train` (its `tune_thresholds` setting), on the dev data, so `model-best`
carries thresholds that fit the data; `spacy-bertcat find-thresholds` does the same
on data the user names.
"""

from dataclasses import dataclass, field
from typing import Collection, Dict, List, Optional, Sequence

import numpy

from .metrics import best_f1_threshold

# How reports mark a threshold by its source (see threshold_source).
SOURCE_MARKERS = {"own": "", "global": " (global)", "prevalence": " (prevalence)"}


def threshold_source(label: str, fallback: Collection[str], by_prevalence: Collection[str]) -> str:
    """RETURNS (str): Where a label's tuned threshold comes from: "own" (its F1
    optimum), "global" (too rare: the pooled value) or "prevalence" (too rare, and
    lowered to its training prevalence's)."""
    return "prevalence" if label in by_prevalence else "global" if label in fallback else "own"


@dataclass
class TunedThresholds:
    """thresholds (Dict[str, float]): Every label's threshold. fallback (List[str]):
    The labels too rare to tune, which got `global_threshold`. global_threshold
    (Optional[float]): The threshold that maximizes pooled micro-F1 (None without
    any positive). support (Dict[str, int]): Positives per label in the data.
    by_prevalence (List[str]): The fallback labels whose threshold was lowered to
    their training prevalence's."""

    thresholds: Dict[str, float] = field(default_factory=dict)
    fallback: List[str] = field(default_factory=list)
    by_prevalence: List[str] = field(default_factory=list)
    global_threshold: Optional[float] = None
    support: Dict[str, int] = field(default_factory=dict)

    def source(self, label: str) -> str:
        """RETURNS (str): Where the label's threshold comes from (threshold_source)."""
        return threshold_source(label, self.fallback, self.by_prevalence)

    def describe(self, n_docs: int) -> str:
        """RETURNS (str): One line for the training log."""
        tuned = len(self.thresholds) - len(self.fallback)
        text = f"thresholds tuned on {n_docs} docs: {tuned} label(s) their own"
        if self.fallback:
            names = ", ".join(self.fallback[:8]) + (", ..." if len(self.fallback) > 8 else "")
            text += f", {len(self.fallback)} too rare to tune the global {self.global_threshold:.3f} ({names})"
        if self.by_prevalence:
            text += f", {len(self.by_prevalence)} of them lowered to fire as often as in training"
        return text


def tune_with_fallback(
    labels: Sequence[str],
    gold: numpy.ndarray,
    scores: numpy.ndarray,
    mask: numpy.ndarray,
    *,
    min_support: int,
    default: float,
    prevalence: Optional[Dict[str, float]] = None,
) -> TunedThresholds:
    """Per-label F1-optimal thresholds, the pooled micro-F1 one for rare labels.

    labels (Sequence[str]): The labels (columns).
    gold, scores, mask (numpy.ndarray): (docs, labels) truth, predicted scores and
        which gold values are known.
    min_support (int): Positives a label needs for its own threshold.
    default (float): The threshold when the data has no positive at all.
    prevalence (Optional[Dict[str, float]]): Each label's share of positives in the
        training data; caps the fallback labels' thresholds (see the module doc).
    RETURNS (TunedThresholds): The thresholds and where each comes from.
    """
    known = mask.astype(bool)
    result = TunedThresholds()
    for j, label in enumerate(labels):
        rows = known[:, j]
        support = int(gold[rows, j].sum())
        result.support[label] = support
        own = best_f1_threshold(scores[rows, j], gold[rows, j]) if support >= max(min_support, 1) else None
        if own is not None:
            result.thresholds[label] = own["threshold"]
        else:
            result.fallback.append(label)
    if result.fallback:
        rare = numpy.zeros_like(known)
        rare[:, [list(labels).index(label) for label in result.fallback]] = True
        pool = known & rare if gold[known & rare].sum() >= max(min_support, 1) else known
        pooled = best_f1_threshold(scores[pool], gold[pool])
        result.global_threshold = pooled["threshold"] if pooled is not None else None
        for label in result.fallback:
            result.thresholds[label] = result.global_threshold if result.global_threshold is not None else default
            j = list(labels).index(label)
            cap = _prevalence_threshold(scores[known[:, j], j], (prevalence or {}).get(label, 0.0))
            if cap is not None and cap < result.thresholds[label]:
                result.thresholds[label] = cap
                result.by_prevalence.append(label)
    return result


def _prevalence_threshold(scores: numpy.ndarray, prevalence: float) -> Optional[float]:
    """RETURNS (Optional[float]): The threshold that keeps the k highest scores,
    k = prevalence x documents (at least 1), midway to the next lower score; None
    without prevalence or scores, or where ties make k unreachable."""
    if prevalence <= 0 or not len(scores):
        return None
    k = min(max(int(round(prevalence * len(scores))), 1), len(scores))
    ordered = numpy.sort(scores.astype("f8"))[::-1]
    below = ordered[k] if k < len(ordered) else 0.0
    if below >= ordered[k - 1]:
        return None
    return float(numpy.clip((ordered[k - 1] + below) / 2.0, 1e-4, 1 - 1e-4))


def collapsed_labels(
    labels: Sequence[str], gold: numpy.ndarray, scores: numpy.ndarray, mask: numpy.ndarray, thresholds: Dict[str, float]
) -> Dict[str, int]:
    """RETURNS (Dict[str, int]): The labels that have gold positives in the data but
    are predicted for no document, with their gold counts (most frequent first)."""
    known = mask.astype(bool)
    out = {}
    for j, label in enumerate(labels):
        n_gold = int(gold[known[:, j], j].sum())
        n_predicted = int((scores[known[:, j], j] >= thresholds[label]).sum())
        if n_gold and not n_predicted:
            out[label] = n_gold
    return dict(sorted(out.items(), key=lambda item: -item[1]))
