"""Tuning a multi-label component's per-label thresholds on held-out data (the
library behind `spacy-bertcat find-thresholds`); the tuning itself is
decisions/thresholds.py, the state it sets components/decision_state.py."""

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Optional

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from ..components.pipes import Classifier, classify_texts
from ..decisions.thresholds import tune_with_fallback
from ..errors import Errors
from .gold import read_gold
from .report import compute_report, score_matrix


def find_thresholds(
    nlp: Language,
    data_path: Path,
    *,
    component: Optional[str] = None,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    batch_size: Optional[int] = None,
    min_support: Optional[int] = None,
    progress: Optional[Callable[[Iterator[Doc], int], Iterable[Doc]]] = None,
) -> Dict[str, Any]:
    """Tune and set the per-label thresholds of a multi-label component (not saved).

    min_support (Optional[int]): Positives a label needs for a threshold of its own
        (default: the component's threshold_min_support, else 1).
    RETURNS (Dict[str, Any]): Per label the threshold before, the tuned one (None
        if the label had no positive example) with its F1 and source ("own",
        "global" or "prevalence"), its F1 before, and the micro/macro F1 on the
        data before and after.
    """
    classifier = Classifier(nlp, component)
    if classifier.exclusive:
        raise ValueError(Errors.BC034.format(name=classifier.name, factory=classifier.factory))
    if not hasattr(classifier.pipe, "use_tuned_thresholds"):
        detail = "it has no per-label thresholds (set_thresholds); use a bertcat_multilabel component"
        raise ValueError(Errors.BC042.format(setting="--component", value=classifier.name, detail=detail))
    docs, gold, mask = read_gold(
        nlp,
        classifier,
        data_path,
        task="tune",
        text_field=text_field,
        label_field=label_field,
        labels_sep=labels_sep,
    )
    wrap = (lambda stream: progress(stream, len(docs))) if progress is not None else None
    predicted = classify_texts(nlp, classifier.name, [doc.text for doc in docs], batch_size=batch_size, progress=wrap)
    scores = score_matrix(predicted, classifier.labels)
    before = compute_report(
        classifier.labels, gold, scores, exclusive=False, mask=mask, thresholds=classifier.thresholds
    )
    decisions = classifier.pipe.decisions
    min_support = min_support or classifier.pipe.cfg.get("threshold_min_support") or 1
    tuned = tune_with_fallback(
        classifier.labels,
        gold,
        scores,
        mask,
        min_support=min_support,
        default=decisions.threshold,
        prevalence=decisions.train_prevalence,
    )
    # Labels without positives keep their current threshold (a tuned one too).
    untuned = [label for label in classifier.labels if not tuned.support[label]]
    classifier.pipe.use_tuned_thresholds(tuned, keep=untuned)
    thresholds = dict(classifier.pipe.thresholds)
    after = compute_report(classifier.labels, gold, scores, exclusive=False, mask=mask, thresholds=thresholds)
    spacy_scores = classifier.pipe.score([Example(pred, gold_doc) for pred, gold_doc in zip(predicted, docs)])
    return {
        "spacy_scores": spacy_scores,
        "component": classifier.name,
        "thresholds": thresholds,
        "untuned": untuned,
        "min_support": min_support,
        "labels": {
            label: {
                "before": classifier.thresholds[label],
                "tuned": None
                if label in untuned
                else {
                    "threshold": thresholds[label],
                    "f": after["per_label"][label]["f"],
                    "source": tuned.source(label),
                },
                "f_before": before["per_label"][label]["f"],
                "support": before["per_label"][label]["support"],
            }
            for label in classifier.labels
        },
        "micro_f_before": before["summary"]["micro_f"],
        "micro_f_after": after["summary"]["micro_f"],
        "macro_f_before": before["summary"]["macro_f"],
        "macro_f_after": after["summary"]["macro_f"],
    }
