"""Gold labels to matrices, class weights, and the losses (on logits).

Both losses are means over the annotated documents of a batch and return their
gradient with respect to the logits (the shim turns these into exact whole-batch
gradients under gradient accumulation):

- exclusive classes: softmax cross-entropy, each document weighted by the weight of
  its gold class: ``sum_i w[y_i] * -log softmax(x_i)[y_i] / n``;
- multi-label: binary cross-entropy on sigmoid, positives of label j weighted by
  ``w[j]`` (torch's ``pos_weight``), missing labels masked:
  ``sum_ij mask_ij * bce_ij / (n * n_labels)``; with nothing missing and no weights
  this is torch's ``BCEWithLogitsLoss()``.
"""
from typing import AbstractSet, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.training import Example

from .errors import Errors, SettingError

ClassWeights = Union[None, str, Dict[str, float]]


def examples_to_truth(
    examples: Iterable[Example],
    labels: Sequence[str],
    *,
    exclusive: bool,
    name: str,
    ignore: AbstractSet[str] = frozenset(),
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Validate gold cats and build the truth matrix and its mask of observed values.

    A label missing from a doc's cats is unobserved (multi-label); a doc with no
    cats for `labels` is unannotated (all unobserved). Labels in `ignore` (those of
    other classifiers of the pipeline) are left out. Raises a ValueError for other
    labels not in `labels`, values other than 0/1, and exclusive docs without
    exactly one positive.
    RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): Truth and mask, (docs, labels).
    """
    examples = list(examples)
    index = {label: j for j, label in enumerate(labels)}
    truth = numpy.zeros((len(examples), len(labels)), dtype="f")
    mask = numpy.zeros((len(examples), len(labels)), dtype="f")
    for i, eg in enumerate(examples):
        cats = eg.reference.cats
        if ignore:
            cats = {label: value for label, value in cats.items() if label not in ignore}
        unknown = sorted(label for label in cats if label not in index)
        if unknown:
            raise ValueError(Errors.BC005.format(name=name, unknown=unknown, labels=list(labels)))
        for label, value in cats.items():
            if value not in (0.0, 1.0):
                doc = eg.reference.text[:60]
                raise ValueError(Errors.BC002.format(name=name, label=label, value=value, doc=doc))
            truth[i, index[label]] = value
            mask[i, index[label]] = 1.0
        if exclusive and cats:
            positive = [label for label, value in cats.items() if value == 1.0]
            doc = eg.reference.text[:60]
            if len(positive) > 1:
                raise ValueError(Errors.BC003.format(name=name, n=len(positive), positive=positive, doc=doc))
            if not positive:
                raise ValueError(Errors.BC004.format(name=name, cats=dict(cats), doc=doc))
            mask[i] = 1.0  # the other classes are implied 0
    return truth, mask


def resolve_class_weights(
    setting: ClassWeights,
    labels: Sequence[str],
    truth: numpy.ndarray,
    mask: numpy.ndarray,
    *,
    exclusive: bool,
    name: str,
) -> Optional[List[float]]:
    """Turn the class_weights setting into one weight per label.

    "balanced": for exclusive classes n / (n_labels * n_c), as scikit-learn; for
    multi-label n_negative / n_positive per label (positive-class weight). A label
    without examples gets 1.0.
    RETURNS (Optional[List[float]]): The weights, or None for unweighted.
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting != "balanced":
            raise SettingError(Errors.BC011.format(name=name, detail=f"unknown option {setting!r}"), "class_weights")
        positives = (truth * mask).sum(axis=0)
        if exclusive:
            n = mask.any(axis=1).sum()
            weights = numpy.where(positives > 0, n / (len(labels) * numpy.maximum(positives, 1)), 1.0)
        else:
            negatives = ((1 - truth) * mask).sum(axis=0)
            weights = numpy.where(positives > 0, negatives / numpy.maximum(positives, 1), 1.0)
        return [float(w) for w in weights]
    unknown = sorted(set(setting) - set(labels))
    if unknown:
        raise SettingError(Errors.BC011.format(name=name, detail=f"labels {unknown} are not in {list(labels)}"), "class_weights")
    bad = {k: v for k, v in setting.items() if not isinstance(v, (int, float)) or v <= 0}
    if bad:
        raise SettingError(Errors.BC011.format(name=name, detail=f"weights must be positive numbers, got {bad}"), "class_weights")
    return [float(setting.get(label, 1.0)) for label in labels]


def softmax_cross_entropy(xp, logits, truth, mask, weights: Optional[Sequence[float]]):
    """RETURNS (Tuple[float, array]): The weighted mean cross-entropy over annotated
    rows and its gradient with respect to the logits."""
    rows = mask.max(axis=1)
    n = max(float(rows.sum()), 1.0)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    row_weight = rows
    if weights is not None:
        row_weight = rows * (truth * xp.asarray(weights, dtype="f")).sum(axis=1)
    loss = -(row_weight * (truth * log_probs).sum(axis=1)).sum() / n
    d_logits = (xp.exp(log_probs) - truth) * (row_weight / n)[:, None]
    return float(loss), d_logits.astype("f")


def sigmoid_binary_cross_entropy(xp, logits, truth, mask, weights: Optional[Sequence[float]]):
    """RETURNS (Tuple[float, array]): The masked mean binary cross-entropy (positive
    terms weighted by `weights`) and its gradient with respect to the logits."""
    n = max(float(mask.max(axis=1).sum()), 1.0) * logits.shape[1]
    pos_weight = xp.asarray(weights, dtype="f") if weights is not None else 1.0
    # -[p y log s(x) + (1 - y) log(1 - s(x))], with log s(x) = -softplus(-x)
    softplus_neg = xp.logaddexp(0.0, -logits)
    per_value = pos_weight * truth * softplus_neg + (1 - truth) * (logits + softplus_neg)
    loss = (mask * per_value).sum() / n
    probs = xp.exp(-softplus_neg)
    d_logits = mask * (probs * (pos_weight * truth + 1 - truth) - pos_weight * truth) / n
    return float(loss), d_logits.astype("f")
