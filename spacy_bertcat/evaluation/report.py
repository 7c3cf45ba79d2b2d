"""Evaluation reports for text classifiers: metrics, confusion matrices,
precision-recall curves, the most confident errors, and per-label thresholds.

Everything here works on arrays (gold values, predicted scores, a mask of annotated
values), so the same code scores a spaCy pipeline, a scikit-learn baseline or any
other classifier. The metrics follow spaCy's ``Scorer.score_cats``: exclusive classes
are decided by the highest score, multi-label ones by ``score >= threshold``;
precision, recall and F1 per label; micro scores from the pooled counts; macro scores
as the mean of the per-label values. Differences: ROC AUC is averaged over the labels
where it is defined (both classes present) rather than counting the others as 0, and
documents with no gold annotation are left out. Pictures are drawn by plots.py,
markdown is written by markdown.py.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy
from spacy.tokens import Doc

from ..decisions.metrics import calibration_metrics, pr_curve, prf, roc_auc

ERROR_TEXT_CHARS = 300
MAX_CURVE_POINTS = 200


def gold_matrix(docs: Sequence[Doc], labels: Sequence[str]) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """The gold values of docs as arrays.

    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): Gold values (n_docs, n_labels),
        1.0 for positive labels, and the mask of annotated values (1.0 where
        doc.cats has the label).
    """
    gold = numpy.zeros((len(docs), len(labels)), dtype="f")
    mask = numpy.zeros((len(docs), len(labels)), dtype="f")
    for i, doc in enumerate(docs):
        for j, label in enumerate(labels):
            if label in doc.cats:
                gold[i, j] = float(doc.cats[label] >= 0.5)
                mask[i, j] = 1.0
    return gold, mask


def score_matrix(docs: Sequence[Doc], labels: Sequence[str]) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): Predicted doc.cats as (n_docs, n_labels) scores
    (0.0 where a label is absent)."""
    return numpy.asarray([[doc.cats.get(label, 0.0) for label in labels] for doc in docs], dtype="f").reshape(
        len(docs), len(labels)
    )


def _downsample(curve: Dict[str, Any], n: int = MAX_CURVE_POINTS) -> Dict[str, Any]:
    size = len(curve["precision"])
    if size <= n:
        return curve
    keep = numpy.unique(numpy.linspace(0, size - 1, n).round().astype(int))
    return {**curve, **{k: [curve[k][i] for i in keep] for k in ("precision", "recall", "thresholds")}}


def _snippet(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_TEXT_CHARS else text[: ERROR_TEXT_CHARS - 1] + "…"


BOOTSTRAP = 200  # resamples of the ECE's bootstrap interval


def compute_report(
    labels: Sequence[str],
    gold: numpy.ndarray,
    scores: numpy.ndarray,
    *,
    exclusive: bool,
    mask: Optional[numpy.ndarray] = None,
    thresholds: Optional[Dict[str, float]] = None,
    texts: Optional[Sequence[str]] = None,
    ids: Optional[Sequence[Any]] = None,
    n_errors: int = 20,
    uncalibrated_scores: Optional[numpy.ndarray] = None,
) -> Dict[str, Any]:
    """Score predictions against gold labels.

    labels (Sequence[str]): The labels, in column order.
    gold (numpy.ndarray): Gold values (n_docs, n_labels): 1.0 positive, 0.0 negative.
    scores (numpy.ndarray): Predicted scores (n_docs, n_labels).
    exclusive (bool): Exclusive classes (the highest score wins) or multi-label.
    mask (Optional[numpy.ndarray]): 1.0 where a gold value is annotated; None for all.
    thresholds (Optional[Dict[str, float]]): Per-label decision thresholds
        (multi-label; default 0.5).
    texts (Optional[Sequence[str]]): The texts, for the error list.
    ids (Optional[Sequence[Any]]): Document ids for the error list (default: index).
    n_errors (int): How many of the most confident errors to list.
    uncalibrated_scores (Optional[numpy.ndarray]): The scores before calibration,
        where `scores` are calibrated ones: their calibration is reported too.
    RETURNS (Dict[str, Any]): "summary" (accuracy, micro/macro P/R/F, macro AUC,
        ECE, Brier score, log loss), "per_label", "confusion", "pr_curves",
        "errors", "calibration" ("scores": the metrics and reliability bins of the
        scores, "uncalibrated": of the uncalibrated ones or None; see
        calibration.calibration_metrics) and the settings used; JSON-serializable.
    """
    labels = list(labels)
    gold = numpy.asarray(gold, dtype="f")
    scores = numpy.asarray(scores, dtype="f")
    mask = numpy.ones_like(gold) if mask is None else numpy.asarray(mask, dtype="f")
    calibration: Dict[str, Any] = {
        "scores": calibration_metrics(gold, scores, exclusive=exclusive, mask=mask, bootstrap=BOOTSTRAP),
        "uncalibrated": None
        if uncalibrated_scores is None
        else calibration_metrics(
            gold, numpy.asarray(uncalibrated_scores, dtype="f"), exclusive=exclusive, mask=mask, bootstrap=BOOTSTRAP
        ),
    }
    thresholds = {label: (thresholds or {}).get(label, 0.5) for label in labels} if not exclusive else None
    if exclusive:
        # A doc counts if it has exactly one positive gold label.
        keep = (gold * mask).sum(axis=1) == 1
        gold, scores, mask = gold[keep], scores[keep], numpy.ones_like(gold[keep])
        doc_index = numpy.flatnonzero(keep)
        predicted = numpy.zeros_like(gold)
        if len(gold):
            predicted[numpy.arange(len(gold)), scores.argmax(axis=1)] = 1.0
    else:
        keep = mask.sum(axis=1) > 0
        gold, scores, mask = gold[keep], scores[keep], mask[keep]
        doc_index = numpy.flatnonzero(keep)
        cut = numpy.asarray([thresholds[label] for label in labels], dtype="f")  # type: ignore[index]
        predicted = (scores >= cut).astype("f")
    tp = (predicted * gold * mask).sum(axis=0)
    fp = (predicted * (1 - gold) * mask).sum(axis=0)
    fn = ((1 - predicted) * gold * mask).sum(axis=0)
    per_label: Dict[str, Dict[str, Any]] = {}
    curves: Dict[str, Dict[str, Any]] = {}
    for j, label in enumerate(labels):
        rows = mask[:, j] == 1
        p, r, f = prf(tp[j], fp[j], fn[j])
        curve = pr_curve(scores[rows, j], gold[rows, j])
        curves[label] = _downsample(curve)
        per_label[label] = {
            "p": p,
            "r": r,
            "f": f,
            "support": int(gold[rows, j].sum()),
            "n_predicted": int(tp[j] + fp[j]),
            "auc": roc_auc(scores[rows, j], gold[rows, j]),
            "average_precision": curve["average_precision"],
        }
        if thresholds is not None:
            per_label[label]["threshold"] = thresholds[label]
    micro = prf(tp.sum(), fp.sum(), fn.sum())
    n_labels = len(labels) or 1
    aucs = [v["auc"] for v in per_label.values() if v["auc"] is not None]
    complete = mask.sum(axis=1) == len(labels)
    exact = (predicted == gold).all(axis=1) & complete
    summary = {
        "n_docs": int(len(gold)),
        "accuracy": float(exact.sum() / max(complete.sum(), 1)),
        "micro_p": micro[0],
        "micro_r": micro[1],
        "micro_f": micro[2],
        "macro_p": sum(v["p"] for v in per_label.values()) / n_labels,
        "macro_r": sum(v["r"] for v in per_label.values()) / n_labels,
        "macro_f": sum(v["f"] for v in per_label.values()) / n_labels,
        "macro_auc": sum(aucs) / len(aucs) if aucs else None,
        **{key: calibration["scores"][key] for key in ("ece", "ece_adaptive", "brier", "log_loss")},
    }
    return {
        "labels": labels,
        "exclusive": exclusive,
        "thresholds": thresholds,
        "summary": summary,
        "per_label": per_label,
        "confusion": _confusion(labels, gold, predicted, mask, exclusive),
        "pr_curves": curves,
        "calibration": calibration,
        "errors": _confident_errors(
            labels, gold, scores, predicted, mask, doc_index, exclusive, thresholds, texts, ids, n_errors
        ),
    }


def _confusion(labels, gold, predicted, mask, exclusive: bool) -> Dict[str, Any]:
    if exclusive:
        matrix = numpy.zeros((len(labels), len(labels)), dtype=int)
        for g, p in zip(gold.argmax(axis=1), predicted.argmax(axis=1)):
            matrix[g, p] += 1
        return {"rows": "gold", "columns": "predicted", "labels": list(labels), "matrix": matrix.tolist()}
    counts = {}
    for j, label in enumerate(labels):
        m, g, p = mask[:, j] == 1, gold[:, j], predicted[:, j]
        counts[label] = {
            "tp": int((m & (g == 1) & (p == 1)).sum()),
            "fp": int((m & (g == 0) & (p == 1)).sum()),
            "fn": int((m & (g == 1) & (p == 0)).sum()),
            "tn": int((m & (g == 0) & (p == 0)).sum()),
        }
    return {"labels": list(labels), "per_label": counts}


def _confident_errors(
    labels, gold, scores, predicted, mask, doc_index, exclusive, thresholds, texts, ids, n_errors
) -> List[Dict[str, Any]]:
    """The errors the model was surest about: a wrong class with the highest
    score (exclusive), a false positive with a high score or a false negative
    with a low one (multi-label)."""
    errors = []
    for row, i in enumerate(doc_index):
        base = {"index": int(i), "id": ids[i] if ids is not None else int(i)}
        if texts is not None:
            base["text"] = _snippet(texts[i])
        gold_labels = [labels[j] for j in range(len(labels)) if gold[row, j] == 1]
        if exclusive:
            g, p = int(gold[row].argmax()), int(scores[row].argmax())
            if g != p:
                errors.append(
                    {
                        **base,
                        "gold": labels[g],
                        "predicted": labels[p],
                        "score": float(scores[row, p]),
                        "gold_score": float(scores[row, g]),
                        "confidence": float(scores[row, p]),
                    }
                )
            continue
        predicted_labels = [labels[j] for j in range(len(labels)) if predicted[row, j] == 1]
        for j, label in enumerate(labels):
            if mask[row, j] == 0 or predicted[row, j] == gold[row, j]:
                continue
            false_positive = predicted[row, j] == 1
            errors.append(
                {
                    **base,
                    "label": label,
                    "kind": "false positive" if false_positive else "false negative",
                    "score": float(scores[row, j]),
                    "threshold": thresholds[label],
                    "gold": gold_labels,
                    "predicted": predicted_labels,
                    "confidence": float(scores[row, j] if false_positive else 1.0 - scores[row, j]),
                }
            )
    errors.sort(key=lambda e: -e["confidence"])
    return errors[:n_errors]
