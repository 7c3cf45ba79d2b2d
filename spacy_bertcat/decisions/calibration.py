"""Calibrated scores, how well calibrated they are, and prediction sets.

Fine-tuned transformers are over-confident: of the documents they score 0.95, fewer
than 95% are right. A calibration fitted on held-out data (not the training data)
maps the model's logits to scores that can be read as probabilities, without
changing what the model decides:

- ``bertcat`` (exclusive classes): **temperature scaling** (Guo et al., "On
  Calibration of Modern Neural Networks", ICML 2017): softmax(logits / T), one T
  that minimizes the negative log-likelihood of the held-out data. The order of a
  document's scores, and so its top class and the accuracy, are unchanged.
- ``bertcat_multilabel`` (independent labels): **Platt scaling** per label:
  sigmoid(a * logit + b), with Platt's smoothed targets; labels with fewer than
  ``min_support`` positives (or negatives) in the held-out data share one (a, b)
  fitted on them pooled. Each map is increasing (a > 0), so a label's decision
  threshold maps through it and the decisions stay the same.

Both are fitted with torch's L-BFGS in float64 (the procedure of Guo et al.'s
reference code).

**Prediction sets** (exclusive classes): split conformal prediction with the LAC
score (Sadinle, Lei and Wasserman, JASA 2019; Angelopoulos and Bates, "A Gentle
Introduction to Conformal Prediction", 2021). With n held-out documents and
nonconformity s = 1 - p(true class), q = the ceil((n + 1)(1 - alpha))-th smallest s;
a document's set holds the classes with 1 - p <= q. If the held-out and future
documents are exchangeable, the set contains the true class with probability at
least 1 - alpha (and at most 1 - alpha + 1 / (n + 1): the sets are not needlessly
large). Of all set rules with that guarantee, LAC gives the smallest sets on average
where the scores are the true probabilities. A set can be empty: where the model's
accuracy exceeds 1 - alpha, no class of a document it is unsure of reaches the
cut, and that document is one to route to a person. The quantile is computed on the model's
*uncalibrated* scores, which the temperature does not depend on, so the guarantee
holds although the temperature is fitted on the same documents; the temperature
keeps each document's order of classes, so a set is always the top k classes of
``doc.cats``.

**Metrics** (for evaluate's report): expected calibration error (ECE) over 15
equal-width and 15 equal-mass bins, the Brier score and the log loss. Exclusive
classes: the top class's score against whether it is right (Guo et al.); Brier
summed over classes; log loss of the gold class. Multi-label: every (document,
label) score against its gold value; Brier and log loss per label, averaged.
"""

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy

from ..errors import Errors, Warnings
from .metrics import calibration_metrics

MIN_DOCS = 20  # fewer held-out documents than this: no calibration
FEW_DOCS = 200  # fewer than this: a warning that the estimate is rough
EPS = 1e-7  # float32 scores are clipped this far from 0 and 1 where logits are taken


@dataclass
class Calibration:
    """A fitted calibration, as stored in a component's cfg ("calibration").

    method (str): "temperature" (exclusive classes) or "platt" (multi-label).
    labels (List[str]): The component's labels, in column order.
    temperature (float): The temperature (method "temperature").
    slopes, intercepts (List[float]): Per label a and b of sigmoid(a * logit + b)
        (method "platt").
    pooled (List[str]): The labels too rare for their own a and b (method "platt").
    n_docs (int): Held-out documents it was fitted on.
    alphas, quantiles (List[float]): Conformal error rates and their quantiles of
        1 - p(true class) on the uncalibrated scores (exclusive classes); the first
        alpha is the one `doc._.bertcat_sets` uses.
    fitted (Dict[str, Any]): Metrics on the held-out data before and after.
    """

    method: str
    labels: List[str]
    temperature: float = 1.0
    slopes: List[float] = field(default_factory=list)
    intercepts: List[float] = field(default_factory=list)
    pooled: List[str] = field(default_factory=list)
    n_docs: int = 0
    alphas: List[float] = field(default_factory=list)
    quantiles: List[float] = field(default_factory=list)
    fitted: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Calibration":
        return cls(**data)

    def apply(self, xp: Any, logits: Any) -> Any:
        """RETURNS: The calibrated logits (the activation follows), on the logits'
        device."""
        if self.method == "temperature":
            return logits / self.temperature
        slopes = xp.asarray(self.slopes, dtype=logits.dtype)
        intercepts = xp.asarray(self.intercepts, dtype=logits.dtype)
        return logits * slopes + intercepts

    def uncalibrate(self, scores: numpy.ndarray) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): The model's own scores, recovered from calibrated
        ones (exact up to float32 rounding: the maps are invertible)."""
        scores = numpy.asarray(scores, dtype="f8")
        with numpy.errstate(divide="ignore", over="ignore", invalid="ignore"):
            if self.method == "temperature":
                log_p = numpy.log(scores) * self.temperature
                log_p -= numpy.max(numpy.where(numpy.isfinite(log_p), log_p, -numpy.inf), axis=-1, keepdims=True)
                raw = numpy.exp(log_p)
                return (raw / raw.sum(axis=-1, keepdims=True)).astype("f")
            logits = numpy.log(scores) - numpy.log1p(-scores)
            return _sigmoid((logits - numpy.asarray(self.intercepts)) / numpy.asarray(self.slopes)).astype("f")

    def calibrate_threshold(self, label: str, threshold: float) -> float:
        """RETURNS (float): A multi-label decision threshold mapped through the
        label's calibration: the same documents pass it."""
        if self.method == "temperature":
            return threshold
        j = self.labels.index(label)
        t = min(max(threshold, EPS), 1 - EPS)
        value = _sigmoid(self.slopes[j] * math.log(t / (1 - t)) + self.intercepts[j])
        return float(min(max(value, 1e-6), 1 - 1e-6))

    def uncalibrate_threshold(self, label: str, threshold: float) -> float:
        """RETURNS (float): The inverse of calibrate_threshold."""
        if self.method == "temperature":
            return threshold
        j = self.labels.index(label)
        t = min(max(threshold, EPS), 1 - EPS)
        value = _sigmoid((math.log(t / (1 - t)) - self.intercepts[j]) / self.slopes[j])
        return float(min(max(value, 1e-6), 1 - 1e-6))

    def quantile(self, alpha: Optional[float] = None) -> float:
        """RETURNS (float): The conformal quantile of `alpha` (default: the first)."""
        if not self.alphas:
            raise ValueError(
                Errors.BC058.format(what="prediction sets", detail="it was calibrated without conformal alphas")
            )
        alpha = self.alphas[0] if alpha is None else alpha
        for a, q in zip(self.alphas, self.quantiles):
            if math.isclose(a, alpha):
                return q
        raise ValueError(
            Errors.BC058.format(
                what=f"prediction sets at alpha={alpha}", detail=f"it was calibrated for alpha {self.alphas}"
            )
        )

    def prediction_sets(self, raw_scores: numpy.ndarray, alpha: Optional[float] = None) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): Boolean (docs, labels): each document's
        prediction set at `alpha`, from its uncalibrated scores."""
        return prediction_sets(raw_scores, self.quantile(alpha))

    def describe(self) -> str:
        """RETURNS (str): One line for a log or a table."""
        if self.method == "temperature":
            text = f"temperature {self.temperature:.3f}"
        else:
            slopes = numpy.asarray(self.slopes)
            text = f"Platt scaling, slope median {numpy.median(slopes):.3f}"
            if self.pooled:
                text += f", {len(self.pooled)} rare label(s) pooled"
        return text + f" (fitted on {self.n_docs} docs)"


def _sigmoid(x):
    return 0.5 * (1.0 + numpy.tanh(0.5 * numpy.asarray(x, dtype="f8")))


def least_float32_input(f: Callable[[numpy.ndarray], numpy.ndarray], targets: numpy.ndarray) -> numpy.ndarray:
    """The least float32 input at which a non-decreasing function reaches each
    target, found by bisection over the float32 values in their order (32
    halvings): where a threshold maps through a calibration along the exact
    float32 path of the scores (see BertCat._calibrated_thresholds).

    f (Callable): Maps a (1, n) float32 array to n scores, each column
        non-decreasing in its input (an activation, or a calibration and an
        activation, on the model's own ops).
    targets (numpy.ndarray): n values to reach (float64: compared as the
        decisions compare scores with thresholds).
    RETURNS (numpy.ndarray): n float32 inputs x with f(x) >= target, and f(y) <
        target for every float32 y < x (the largest float32 where f never
        reaches the target).
    """
    targets = numpy.asarray(targets, dtype="f8")
    big = numpy.finfo(numpy.float32).max
    lo = numpy.full(len(targets), _float32_key(numpy.float32(-big)), dtype="i8")
    hi = numpy.full(len(targets), _float32_key(numpy.float32(big)), dtype="i8")

    def reaches(keys: numpy.ndarray) -> numpy.ndarray:
        return numpy.asarray(f(_float32_of_key(keys)[None]), dtype="f8").reshape(-1) >= targets

    at_lo = reaches(lo)
    while (hi - lo > 1).any():
        mid = (lo + hi) // 2
        ok = reaches(mid)
        active = hi - lo > 1
        hi = numpy.where(active & ok, mid, hi)
        lo = numpy.where(active & ~ok, mid, lo)
    return numpy.where(at_lo, _float32_of_key(lo), _float32_of_key(hi)).astype(numpy.float32)


def _float32_key(x: Any) -> numpy.ndarray:
    """Integers in the order of the float32 values (-0.0 and 0.0 share 0)."""
    bits = numpy.asarray(x, dtype=numpy.float32).view(numpy.int32).astype("i8")
    return numpy.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def _float32_of_key(keys: numpy.ndarray) -> numpy.ndarray:
    keys = numpy.asarray(keys, dtype="i8")
    bits = numpy.where(keys < 0, (-keys) | 0x80000000, keys)
    return bits.astype(numpy.uint32).view(numpy.float32)


# Fitting


def fit_temperature(logits: numpy.ndarray, gold_index: numpy.ndarray) -> float:
    """The temperature T that minimizes the mean negative log-likelihood of
    softmax(logits / T) (L-BFGS over log T, float64).

    logits (numpy.ndarray): (docs, classes) logits.
    gold_index (numpy.ndarray): Each doc's gold class.
    RETURNS (float): T.
    """
    import torch

    z = torch.as_tensor(numpy.asarray(logits, dtype="f8"))
    y = torch.as_tensor(numpy.asarray(gold_index, dtype="i8"))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp())


def fit_platt(
    logits: numpy.ndarray, gold: numpy.ndarray, mask: numpy.ndarray, labels: Sequence[str], min_support: int
) -> Dict[str, Any]:
    """Platt scaling per label: a, b minimizing the cross-entropy of
    sigmoid(a * logit + b) against Platt's smoothed targets (N+ + 1) / (N+ + 2) and
    1 / (N- + 2). Labels with fewer than `min_support` positives or negatives share
    one (a, b) fitted on them pooled; if the pool itself is that small, or a fit
    comes out decreasing, the label keeps its scores (a = 1, b = 0).

    RETURNS (Dict[str, Any]): "slopes", "intercepts", "pooled" (labels that share),
        "identity" (labels left as they were).
    """
    known = numpy.asarray(mask, dtype=bool)
    gold = numpy.asarray(gold, dtype="f8")
    n_pos = (gold * known).sum(axis=0)
    n_neg = ((1 - gold) * known).sum(axis=0)
    own = (n_pos >= min_support) & (n_neg >= min_support)
    slopes, intercepts = numpy.ones(len(labels)), numpy.zeros(len(labels))
    columns: List[List[Any]] = [[j] for j in numpy.flatnonzero(own)]
    pooled = [j for j in range(len(labels)) if not own[j]]
    if pooled and n_pos[pooled].sum() >= min_support and n_neg[pooled].sum() >= min_support:
        columns.append(pooled)
    fits = _fit_platt_groups(logits, gold, known, columns) if columns else []
    for group, (a, b) in zip(columns, fits):
        if a > 0:
            slopes[group], intercepts[group] = a, b
    identity = [labels[j] for j in range(len(labels)) if slopes[j] == 1.0 and intercepts[j] == 0.0]
    return {
        "slopes": slopes.tolist(),
        "intercepts": intercepts.tolist(),
        "pooled": [labels[j] for j in pooled],
        "identity": identity,
    }


def _fit_platt_groups(logits, gold, known, columns: List[List[int]]) -> List[tuple]:
    """Fit (a, b) for each group of columns at once (the losses are separable)."""
    import torch

    z_parts, t_parts, group_index = [], [], []
    for g, cols in enumerate(columns):
        rows, cs = numpy.nonzero(known[:, cols])
        cs = numpy.asarray(cols)[cs]
        y = gold[rows, cs]
        n_pos, n_neg = y.sum(), len(y) - y.sum()
        z_parts.append(logits[rows, cs])
        t_parts.append(numpy.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)))
        group_index.append(numpy.full(len(y), g))
    z = torch.as_tensor(numpy.concatenate(z_parts), dtype=torch.float64)
    target = torch.as_tensor(numpy.concatenate(t_parts), dtype=torch.float64)
    index = torch.as_tensor(numpy.concatenate(group_index))
    counts = torch.bincount(index, minlength=len(columns)).to(torch.float64)
    a = torch.ones(len(columns), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(columns), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([a, b], lr=0.5, max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        out = a[index] * z + b[index]
        losses = torch.nn.functional.binary_cross_entropy_with_logits(out, target, reduction="none")
        loss = (torch.zeros(len(columns), dtype=torch.float64).index_add(0, index, losses) / counts).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return list(zip(a.detach().tolist(), b.detach().tolist()))


def conformal_quantiles(raw_scores: numpy.ndarray, gold_index: numpy.ndarray, alphas: Sequence[float]) -> List[float]:
    """The split-conformal quantiles of s = 1 - p(true class).

    RETURNS (List[float]): For each alpha, the ceil((n + 1)(1 - alpha))-th smallest
        s (an error if n is too small for it: the set would be every class).
    """
    n = len(gold_index)
    s = numpy.sort(1.0 - numpy.asarray(raw_scores, dtype="f8")[numpy.arange(n), gold_index])
    quantiles = []
    for alpha in alphas:
        if not 0.0 < alpha < 1.0:
            raise ValueError(Errors.BC042.format(setting="alpha", value=alpha, detail="it must lie between 0 and 1"))
        k = math.ceil((n + 1) * (1 - alpha))
        if k > n:
            detail = (
                f"a guarantee at alpha={alpha} needs at least {math.ceil(1 / alpha) - 1} held-out documents, "
                f"and there are {n}"
            )
            raise ValueError(Errors.BC057.format(detail=detail))
        quantiles.append(float(s[k - 1]))
    return quantiles


def prediction_sets(raw_scores: numpy.ndarray, quantile: float) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): Boolean (docs, classes): 1 - p <= quantile."""
    return (1.0 - numpy.asarray(raw_scores, dtype="f8")) <= quantile + 1e-12


# Metrics


def conformal_report(
    calibration: "Calibration", gold: numpy.ndarray, raw_scores: numpy.ndarray, mask: Optional[numpy.ndarray] = None
) -> Dict[str, Dict[str, Any]]:
    """Empirical coverage and set sizes of the calibration's prediction sets.

    RETURNS (Dict[str, Dict[str, Any]]): Per alpha (as a string): "target" (1 -
        alpha), "coverage", "mean_size", "sizes" (documents per set size, from 0),
        "n".
    """
    gold = numpy.asarray(gold, dtype="f8")
    mask = numpy.ones_like(gold) if mask is None else numpy.asarray(mask, dtype="f8")
    keep = (gold * mask).sum(axis=1) == 1
    gold, raw = gold[keep], numpy.asarray(raw_scores, dtype="f8")[keep]
    out = {}
    for alpha in calibration.alphas:
        sets = calibration.prediction_sets(raw, alpha)
        sizes = sets.sum(axis=1)
        covered = (sets & (gold == 1)).any(axis=1)
        out[f"{alpha:g}"] = {
            "alpha": alpha,
            "target": 1.0 - alpha,
            "coverage": float(covered.mean()) if len(gold) else None,
            "mean_size": float(sizes.mean()) if len(gold) else None,
            "sizes": numpy.bincount(sizes.astype(int), minlength=gold.shape[1] + 1).tolist() if len(gold) else [],
            "n": int(len(gold)),
        }
    return out


# Fitting a component's calibration


def fit_calibration(
    labels: Sequence[str],
    logits: numpy.ndarray,
    gold: numpy.ndarray,
    mask: numpy.ndarray,
    *,
    exclusive: bool,
    name: str,
    alphas: Sequence[float] = (0.1, 0.05),
    min_support: int = 5,
) -> Calibration:
    """Fit a calibration on held-out logits and gold values (see the module doc).

    Errors (nothing fitted) for fewer than MIN_DOCS usable documents, no gold value,
    or too few documents for an alpha; warnings for fewer than FEW_DOCS documents
    and, for exclusive classes, classes absent from the data.
    RETURNS (Calibration): The calibration, with metrics before and after on the
        same data in "fitted".
    """
    labels = list(labels)
    logits = numpy.asarray(logits, dtype="f8")
    gold = numpy.asarray(gold, dtype="f8")
    mask = numpy.asarray(mask, dtype="f8")
    if exclusive:
        keep = (gold * mask).sum(axis=1) == 1
        logits, gold, mask = logits[keep], gold[keep], mask[keep]
    else:
        keep = mask.sum(axis=1) > 0
        logits, gold, mask = logits[keep], gold[keep], mask[keep]
    n = len(gold)
    if n < MIN_DOCS:
        raise ValueError(Errors.BC056.format(name=name, n=n, min=MIN_DOCS))
    if n < FEW_DOCS:
        warnings.warn(Warnings.BCW012.format(name=name, n=n, spread=50.0 / math.sqrt(n)))
    if exclusive:
        gold_index = gold.argmax(axis=1)
        missing = [label for j, label in enumerate(labels) if not (gold_index == j).any()]
        if missing:
            warnings.warn(Warnings.BCW013.format(name=name, labels=missing))
        raw = _softmax(logits)
        temperature = fit_temperature(logits, gold_index)
        quantiles = conformal_quantiles(raw, gold_index, alphas) if alphas else []
        calibration = Calibration(
            "temperature",
            labels,
            temperature=temperature,
            n_docs=n,
            alphas=[float(a) for a in alphas],
            quantiles=quantiles,
        )
    else:
        raw = _sigmoid(logits)
        fit = fit_platt(logits, gold, mask, labels, min_support)
        calibration = Calibration(
            "platt", labels, slopes=fit["slopes"], intercepts=fit["intercepts"], pooled=fit["pooled"], n_docs=n
        )
    after = calibration.apply(numpy, logits)
    calibrated = _softmax(after) if exclusive else _sigmoid(after)
    calibration.fitted = {
        stage: {
            k: v
            for k, v in calibration_metrics(gold, scores, exclusive=exclusive, mask=mask).items()
            if "bins" not in k
        }
        for stage, scores in (("before", raw), ("after", calibrated))
    }
    return calibration


def _softmax(logits: numpy.ndarray) -> numpy.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = numpy.exp(z)
    return e / e.sum(axis=1, keepdims=True)
