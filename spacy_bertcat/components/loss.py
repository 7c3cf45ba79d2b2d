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

import functools
from typing import AbstractSet, Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy
from spacy.training import Example
from spacy.util import registry

from ..errors import Errors, SettingError, invalid_setting


class BalancedWeights:
    """Class weights from the label counts of the training data: the balanced
    weight (see resolve_class_weights) raised to `power` and capped at
    `max_weight`. power = 1 is "balanced"; 0.5, the square root, keeps the order of
    the labels with a far smaller range (1 positive in 7,000: 84 instead of 7,000).

    A label without positives, or (multi-label) without negatives, gets 1: its
    balanced weight would be undefined or 0, and a weight of 0 would keep a label
    that has only positives from ever training (the component warns, BCW030).

    power (float): Exponent of the balanced weight.
    max_weight (Optional[float]): Largest weight; None for no cap.
    """

    def __init__(self, power: float = 1.0, max_weight: Optional[float] = None) -> None:
        self.power = power
        self.max_weight = max_weight

    def to_dict(self) -> Dict[str, Any]:
        """RETURNS (Dict[str, Any]): The settings, for the component's saved cfg."""
        return {"balanced_class_weights": {"power": self.power, "max_weight": self.max_weight}}

    def __call__(self, truth: numpy.ndarray, mask: numpy.ndarray, *, exclusive: bool) -> List[float]:
        positives = (truth * mask).sum(axis=0)
        if exclusive:
            n = mask.any(axis=1).sum()
            weights = numpy.where(positives > 0, n / (truth.shape[1] * numpy.maximum(positives, 1)), 1.0)
        else:
            negatives = ((1 - truth) * mask).sum(axis=0)
            weights = numpy.where((positives > 0) & (negatives > 0), negatives / numpy.maximum(positives, 1), 1.0)
        weights = weights**self.power
        if self.max_weight is not None:
            weights = numpy.minimum(weights, self.max_weight)
        return [float(w) for w in weights]


ClassWeights = Union[None, str, Dict[str, float], BalancedWeights]

# The class_weights settings given by name: "balanced", and its square root (the
# multi-label default: a string, so that a block of label = weight lines given
# in its place is not merged with a default block by spaCy).
NAMED_WEIGHTS = {"balanced": (1.0, None), "sqrt_balanced": (0.5, None)}


def examples_to_truth(
    examples: Iterable[Example],
    labels: Sequence[str],
    *,
    exclusive: bool,
    name: str,
    ignore: AbstractSet[str] = frozenset(),
    skipped: Optional[List[int]] = None,
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Validate gold cats and build the truth matrix and its mask of observed values.

    A label missing from a doc's cats is unobserved (multi-label); a doc with no
    cats for `labels` is unannotated (all unobserved). Labels in `ignore` (those of
    other classifiers of the pipeline) are left out. Raises a ValueError for other
    labels not in `labels`, values other than 0/1, and exclusive docs without
    exactly one positive, except an exclusive doc whose positive label is one of
    `ignore`: it is another classifier's document, left unobserved, and its index
    is appended to `skipped` (where given).
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
            if not positive and any(v == 1.0 for label, v in eg.reference.cats.items() if label in ignore):
                truth[i], mask[i] = 0.0, 0.0
                if skipped is not None:
                    skipped.append(i)
                continue
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

    "balanced" (or spacy-bertcat.balanced_class_weights.v1 with its defaults): for
    exclusive classes n / (n_labels * n_c), as scikit-learn; for multi-label
    n_negative / n_positive per label (positive-class weight). A label without
    examples gets 1.0. A registered function (BalancedWeights) may soften them;
    "sqrt_balanced" is their square root.
    RETURNS (Optional[List[float]]): The weights, or None for unweighted.
    """
    if setting is None:
        return None
    if isinstance(setting, str):
        if setting not in NAMED_WEIGHTS:
            detail = f"unknown option {setting!r} (the named ones are {list(NAMED_WEIGHTS)})"
            raise SettingError(Errors.BC011.format(name=name, detail=detail), "class_weights")
        setting = BalancedWeights(*NAMED_WEIGHTS[setting])
    if isinstance(setting, BalancedWeights):
        return setting(truth, mask, exclusive=exclusive)
    unknown = sorted(set(setting) - set(labels))
    if unknown:
        raise SettingError(
            Errors.BC011.format(name=name, detail=f"labels {unknown} are not in {list(labels)}"), "class_weights"
        )
    bad = {k: v for k, v in setting.items() if not isinstance(v, (int, float)) or v <= 0}
    if bad:
        raise SettingError(
            Errors.BC011.format(name=name, detail=f"weights must be positive numbers, got {bad}"), "class_weights"
        )
    return [float(setting.get(label, 1.0)) for label in labels]


@registry.misc("spacy-bertcat.balanced_class_weights.v1")
def configure_balanced_class_weights_v1(power: float = 1.0, max_weight: Optional[float] = None) -> BalancedWeights:
    """Class weights from the training data's label counts (class_weights setting):
    the balanced weights raised to `power`, capped at `max_weight`.

    power (float): 1 for "balanced"; 0.5 for their square root.
    max_weight (Optional[float]): The largest weight, or null for no cap.
    """
    if power <= 0:
        raise invalid_setting("power", power, "it must be positive", "class_weights")
    if max_weight is not None and max_weight <= 0:
        detail = "it must be positive (or null)"
        raise invalid_setting("max_weight", max_weight, detail, "class_weights")
    return BalancedWeights(power, max_weight)


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


def asymmetric_loss(
    xp, logits, truth, mask, weights: Optional[Sequence[float]], *, gamma_neg: float, gamma_pos: float, clip: float
):
    """The asymmetric loss of Ridnik et al. (ICCV 2021) for multi-label data with
    many negatives, normalized like sigmoid_binary_cross_entropy (a mean over the
    annotated values):

        positives: -w (1 - p)^gamma_pos log p
        negatives: -p_m^gamma_neg log(1 - p_m), with p_m = max(p - clip, 0)

    gamma_neg > 0 down-weights easy negatives (focal weighting), `clip` ignores
    negatives the model already scores below it. With gamma_neg = gamma_pos = clip = 0
    this is the binary cross-entropy; with gamma_neg = gamma_pos and clip = 0, the
    focal loss.
    RETURNS (Tuple[float, array]): The loss and its gradient with respect to the logits.
    """
    n = max(float(mask.max(axis=1).sum()), 1.0) * logits.shape[1]
    pos_weight = xp.asarray(weights, dtype="f") if weights is not None else 1.0
    log_p = -xp.logaddexp(0.0, -logits)  # log sigmoid(x)
    p = xp.exp(log_p)
    q = xp.exp(-xp.logaddexp(0.0, logits))  # 1 - p, without cancellation
    focal_pos = q**gamma_pos if gamma_pos else 1.0
    loss_pos = -focal_pos * log_p
    d_pos = focal_pos * (gamma_pos * p * log_p - q)
    if clip > 0:
        p_m = xp.maximum(p - clip, 0.0)
        log_1m = xp.log1p(-p_m)  # 1 - p_m >= clip
    else:
        p_m, log_1m = p, -xp.logaddexp(0.0, logits)
    if gamma_neg:
        focal_neg = p_m**gamma_neg
        # d/dp_m [-p_m^g log(1 - p_m)] = p_m^g / (1 - p_m) - g p_m^(g-1) log(1 - p_m)
        safe = xp.where(p_m > 0, p_m, 1.0)
        d_focal = xp.where(p_m > 0, gamma_neg * safe ** (gamma_neg - 1.0), 0.0)
        d_neg_pm = focal_neg / (1.0 - p_m) - d_focal * log_1m
    else:
        focal_neg = 1.0
        d_neg_pm = 1.0 / (1.0 - p_m)
    loss_neg = -focal_neg * log_1m
    d_neg = xp.where(p_m > 0, d_neg_pm * p * q, 0.0) if clip > 0 else d_neg_pm * p * q
    per_value = pos_weight * truth * loss_pos + (1 - truth) * loss_neg
    loss = (mask * per_value).sum() / n
    d_logits = mask * (pos_weight * truth * d_pos + (1 - truth) * d_neg) / n
    return float(loss), d_logits.astype("f")


def rehearsal_loss(xp, logits, target_logits, *, exclusive: bool):
    """The loss of a rehearsal update (spaCy's `nlp.rehearse`): the cross-entropy of
    the current predictions against the initial model's, as soft targets, less
    the targets' entropy (the Kullback-Leibler divergence, 0 where the
    predictions agree). Exclusive classes: softmax, a mean over documents;
    multi-label: sigmoid, a mean over the (document, label) values, as the losses
    above.
    RETURNS (Tuple[float, array]): The loss and its gradient with respect to the
        logits (p - q, scaled like the loss).
    """
    if exclusive:
        n = max(logits.shape[0], 1)
        log_p = logits - logits.max(axis=1, keepdims=True)
        log_p = log_p - xp.log(xp.exp(log_p).sum(axis=1, keepdims=True))
        log_q = target_logits - target_logits.max(axis=1, keepdims=True)
        log_q = log_q - xp.log(xp.exp(log_q).sum(axis=1, keepdims=True))
        q = xp.exp(log_q)
        loss = (q * (log_q - log_p)).sum() / n
        d_logits = (xp.exp(log_p) - q) / n
    else:
        n = max(logits.shape[0], 1) * logits.shape[1]
        log_p, log_1p = -xp.logaddexp(0.0, -logits), -xp.logaddexp(0.0, logits)
        log_q, log_1q = -xp.logaddexp(0.0, -target_logits), -xp.logaddexp(0.0, target_logits)
        q = xp.exp(log_q)
        loss = (q * (log_q - log_p) + (1 - q) * (log_1q - log_1p)).sum() / n
        d_logits = (xp.exp(log_p) - q) / n
    return float(loss), d_logits.astype("f")


MultilabelLoss = Callable[..., Tuple[float, Any]]


@registry.misc("spacy-bertcat.binary_cross_entropy.v1")
def configure_binary_cross_entropy_v1() -> MultilabelLoss:
    """The loss of bertcat_multilabel: binary cross-entropy per label on the sigmoid,
    positive terms weighted by the class weights, missing labels masked."""
    return sigmoid_binary_cross_entropy


@registry.misc("spacy-bertcat.asymmetric_loss.v1")
def configure_asymmetric_loss_v1(gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05) -> MultilabelLoss:
    """The asymmetric loss (Ridnik et al. 2021) for bertcat_multilabel: easy
    negatives count less (focusing `gamma_neg`), negatives scored below `clip`
    not at all; see loss.asymmetric_loss.

    gamma_neg (float): Focusing of the negatives (0: none).
    gamma_pos (float): Focusing of the positives (0: none).
    clip (float): Probability margin below which negatives add no loss.
    """
    for setting, value in (("gamma_neg", gamma_neg), ("gamma_pos", gamma_pos)):
        if value < 0:
            raise invalid_setting(setting, value, "it must be 0 or more", "loss")
    if not 0.0 <= clip < 1.0:
        raise invalid_setting("clip", clip, "it must be at least 0 and below 1", "loss")
    return functools.partial(asymmetric_loss, gamma_neg=gamma_neg, gamma_pos=gamma_pos, clip=clip)
