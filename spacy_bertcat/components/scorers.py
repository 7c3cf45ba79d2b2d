"""Scoring with spaCy's textcat metrics, plus per-label thresholds for multi-label.

``Scorer.score_cats`` takes one threshold. With per-label thresholds, each predicted
score is mapped by a monotone piecewise-linear function that sends the label's
threshold to 0.5 (and 0 to 0, 1 to 1, so gold values are unchanged); thresholding the
mapped scores at 0.5 equals thresholding each label at its own value, and ROC AUC is
unchanged. Every spaCy metric (``cats_micro_f``, ``cats_f_per_type``, ...) then
reflects the tuned thresholds.
"""

from typing import Any, Callable, Dict, Iterable, Optional

from spacy.scorer import Scorer
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from .decision_state import DecisionState


def rescale(score: float, threshold: float) -> float:
    """Map [0, threshold] onto [0, 0.5] and [threshold, 1] onto [0.5, 1]."""
    if score < threshold:
        return 0.5 * score / threshold
    return 0.5 + 0.5 * (score - threshold) / (1.0 - threshold) if threshold < 1.0 else 1.0


def thresholded_cats_getter(thresholds: Dict[str, float], default: float) -> Callable[[Doc, str], Dict[str, float]]:
    def getter(doc: Doc, attr: str) -> Dict[str, float]:
        return {k: rescale(v, thresholds.get(k, default)) for k, v in getattr(doc, attr).items()}

    return getter


def score_multilabel(
    examples: Iterable[Example],
    *,
    threshold: Optional[float] = None,
    thresholds: Optional[Dict[str, float]] = None,
    thresholds_tuned_at: Optional[float] = None,
    **kwargs: Any,
) -> Dict[str, Any]:
    """Score multi-label cats like `spacy.textcat_multilabel_scorer.v2`, using each
    label's threshold from `thresholds` (others use `threshold`), while `threshold`
    is the value they were tuned under."""
    threshold = 0.5 if threshold is None else threshold
    thresholds = DecisionState.from_dict(
        {"thresholds": thresholds, "thresholds_tuned_at": thresholds_tuned_at, "threshold": threshold}
    ).tuned
    if thresholds:
        kwargs["getter"] = thresholded_cats_getter(thresholds, threshold)
        threshold = 0.5
    kwargs.pop("multi_label", None)
    return Scorer.score_cats(examples, "cats", multi_label=True, threshold=threshold, **kwargs)


@registry.scorers("spacy-bertcat.multilabel_scorer.v1")
def make_multilabel_scorer_v1() -> Callable[..., Dict[str, Any]]:
    """The scorer of bertcat_multilabel: spaCy's multi-label cats metrics, with
    per-label thresholds (set by `python -m spacy_bertcat find-thresholds`)."""
    return score_multilabel
