"""Calibrated scores, how well calibrated they are, and prediction sets.

Fine-tuned transformers are over-confident: of the documents they score 0.95, fewer
than 95% are right. A calibration fitted on held-out data (not the training data)
maps the model's logits to scores that can be read as probabilities, without
changing what the model decides:

- ``bertcat`` (exclusive classes): **temperature scaling** (Guo et al., "On
  Calibration of Modern Neural Networks", ICML 2017): softmax(logits / T), one T
  that minimizes the negative log-likelihood of the held-out data. The order of a
  document's scores, and so its top class and the accuracy, are unchanged.
  Also (calibrators.py): **top-label isotonic regression** and **top-label
  histogram binning**, which keep the top class too, and **vector scaling** and
  **Dirichlet calibration** (ODIR), which can change it and are used only where
  the user allows decision changes. ``method="auto"`` chooses among them, or none,
  by cross-validation within the held-out data (calibration_cv.py); "none" keeps
  the model's scores (and still stores the prediction sets).
- ``bertcat_multilabel`` (independent labels): **Platt scaling** per label:
  sigmoid(a * logit + b), with Platt's smoothed targets; labels with fewer than
  ``min_support`` positives (or negatives) in the held-out data share one (a, b)
  fitted on them pooled. Each map is increasing (a > 0), so a label's decision
  threshold maps through it and the decisions stay the same.

The temperature is fitted with scipy's L-BFGS-B in float64, Platt scaling with
torch's L-BFGS (the procedure of Guo et al.'s reference code).

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
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy

from ..errors import Errors, Warnings
from . import calibrators
from .calibration_cv import CHANGES_DECISIONS, KEEPS_DECISIONS, cross_validate, fit_top_label
from .metrics import calibration_metrics

MIN_DOCS = 20  # fewer held-out documents than this: no calibration
FEW_DOCS = 200  # fewer than this: a warning that the estimate is rough
EPS = 1e-7  # float32 scores are clipped this far from 0 and 1 where logits are taken
TOP_LABEL = ("isotonic", "histogram")
# The methods of exclusive classes: "auto" chooses among them by cross-validation.
EXCLUSIVE_METHODS = ("none", "temperature", "isotonic", "histogram", "vector", "dirichlet")
METHODS = ("auto",) + EXCLUSIVE_METHODS + ("platt",)


@dataclass
class Calibration:
    """A fitted calibration, as stored in a component's cfg ("calibration").

    method (str): Exclusive classes: "none", "temperature", "isotonic",
        "histogram" (keep the top class), "vector", "dirichlet" (can change it);
        multi-label: "platt".
    labels (List[str]): The component's labels, in column order.
    temperature (float): The temperature (method "temperature").
    slopes, intercepts (List[float]): Per label a and b of sigmoid(a * logit + b)
        (method "platt"); of softmax(a * log p + b) (method "vector"); b of
        softmax(W log p + b) (method "dirichlet").
    weights (List[List[float]]): The rows of W (method "dirichlet").
    knots, values (List[float]): The top-label map (methods "isotonic": f is
        linear between the points (knots, values); "histogram": `knots` are the
        inner bin edges and `values` one per bin).
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
    weights: List[List[float]] = field(default_factory=list)
    knots: List[float] = field(default_factory=list)
    values: List[float] = field(default_factory=list)
    n_docs: int = 0
    alphas: List[float] = field(default_factory=list)
    quantiles: List[float] = field(default_factory=list)
    fitted: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "Calibration":
        """A stored calibration: any earlier version's dict (the fields it lacks
        take their defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})

    @property
    def keeps_top_class(self) -> bool:
        """Whether every document keeps its top class (so its decision): False
        for vector scaling and Dirichlet calibration."""
        return self.method not in ("vector", "dirichlet")

    @property
    def differentiable(self) -> bool:
        """Whether `apply` is a smooth map that gradients can flow through (torch
        tensors): False for the top-label maps (isotonic, histogram)."""
        return self.method not in TOP_LABEL

    @property
    def invertible(self) -> bool:
        """Whether `uncalibrate` recovers the model's scores exactly (up to
        float rounding); elsewhere it is an approximation, and the component
        recomputes the scores from the docs instead."""
        return self.method in ("none", "temperature", "vector", "platt")

    def apply(self, xp: Any, logits: Any) -> Any:
        """RETURNS: The calibrated logits (the activation follows), on the logits'
        device. xp: numpy, cupy or torch (the module); with torch tensors,
        gradients flow through every method with `differentiable`."""
        method = self.method
        if method == "none":
            return logits
        if method == "temperature":
            return logits / self.temperature
        if method == "vector":
            return calibrators.apply_vector(xp, logits, self.slopes, self.intercepts)
        if method == "dirichlet":
            return calibrators.apply_dirichlet(xp, logits, self.weights, self.intercepts)
        if method in TOP_LABEL:
            return calibrators.apply_top_label(xp, logits, method, self.knots, self.values, self.temperature)
        slopes = calibrators.constant(xp, self.slopes, logits)
        intercepts = calibrators.constant(xp, self.intercepts, logits)
        return logits * slopes + intercepts

    def uncalibrate(self, scores: numpy.ndarray) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): The model's own scores, recovered from calibrated
        ones: exact up to float32 rounding where `invertible`, an approximation
        for Dirichlet and the top-label maps (see calibrators.py)."""
        scores = numpy.asarray(scores, dtype="f8")
        with numpy.errstate(divide="ignore", over="ignore", invalid="ignore"):
            if self.method == "none":
                return scores.astype("f")
            if self.method == "vector":
                return calibrators.uncalibrate_vector(scores, self.slopes, self.intercepts).astype("f")
            if self.method == "dirichlet":
                return calibrators.uncalibrate_dirichlet(scores, self.weights, self.intercepts).astype("f")
            if self.method in TOP_LABEL:
                return calibrators.uncalibrate_top_label(
                    scores, self.method, self.knots, self.values, self.temperature
                ).astype("f")
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
        if self.method != "platt":
            return threshold
        j = self.labels.index(label)
        t = min(max(threshold, EPS), 1 - EPS)
        value = _sigmoid(self.slopes[j] * math.log(t / (1 - t)) + self.intercepts[j])
        return float(min(max(value, 1e-6), 1 - 1e-6))

    def uncalibrate_threshold(self, label: str, threshold: float) -> float:
        """RETURNS (float): The inverse of calibrate_threshold."""
        if self.method != "platt":
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
        elif self.method == "none":
            text = "no calibration map (the model's own scores)"
        elif self.method == "vector":
            text = f"vector scaling, slopes {_range(self.slopes)}, biases {_range(self.intercepts)}"
        elif self.method == "dirichlet":
            l2 = self.fitted.get("l2")
            text = "Dirichlet calibration (ODIR" + (f", l2 {l2:g})" if l2 is not None else ")")
        elif self.method == "isotonic":
            text = f"temperature {self.temperature:.3f}, then top-label isotonic regression ({len(self.knots)} knots)"
        elif self.method == "histogram":
            text = f"temperature {self.temperature:.3f}, then top-label histogram binning ({len(self.values)} bins)"
        else:
            slopes = numpy.asarray(self.slopes)
            text = f"Platt scaling, slope median {numpy.median(slopes):.3f}"
            if self.pooled:
                text += f", {len(self.pooled)} rare label(s) pooled"
        return text + f" (fitted on {self.n_docs} docs)"


def _range(values: Sequence[float]) -> str:
    return f"{min(values):.3f}..{max(values):.3f}" if values else "-"


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
    softmax(logits / T) (L-BFGS-B over log T, float64).

    logits (numpy.ndarray): (docs, classes) logits.
    gold_index (numpy.ndarray): Each doc's gold class.
    RETURNS (float): T.
    """
    return calibrators.fit_temperature_fast(logits, gold_index)


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
    method: Optional[str] = None,
    allow_decision_changes: bool = False,
    folds: int = 5,
    seed: int = 0,
) -> Calibration:
    """Fit a calibration on held-out logits and gold values (see the module doc).

    method (Optional[str]): Exclusive classes: "auto" (chosen by `folds`-fold
        cross-validation, see calibration_cv.py), or one of EXCLUSIVE_METHODS
        (None: "temperature"); multi-label: "platt" (also what "auto" and None
        mean there).
    allow_decision_changes (bool): Allow methods that can change a document's
        top class (vector, dirichlet): as candidates of "auto", or named.
    Errors (nothing fitted) for fewer than MIN_DOCS usable documents, no gold value,
    too few documents for an alpha, a method for the other kind of component
    (BC161) or one that can change decisions without allow_decision_changes
    (BC160); warnings for fewer than FEW_DOCS documents and, for exclusive
    classes, classes absent from the data.
    RETURNS (Calibration): The calibration, with metrics before and after on the
        same data in "fitted" (exclusive classes also: "accuracy_before",
        "accuracy_after", "decisions_changed", and with "auto" the
        cross-validation table, "selection").
    """

    if method is None:
        method = "temperature" if exclusive else "platt"
    methods = ("auto",) + EXCLUSIVE_METHODS if exclusive else ("auto", "platt")
    if method not in methods:
        kind = "exclusive classes" if exclusive else "multi-label"
        raise ValueError(Errors.BC161.format(name=name, kind=kind, method=method, methods=", ".join(methods)))
    if method in CHANGES_DECISIONS and not allow_decision_changes:
        raise ValueError(Errors.BC160.format(name=name, method=method, keeping=", ".join(("auto",) + KEEPS_DECISIONS)))
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
        quantiles = conformal_quantiles(raw, gold_index, alphas) if alphas else []
        selection = None
        if method == "auto":
            candidates = KEEPS_DECISIONS + (CHANGES_DECISIONS if allow_decision_changes else ())
            selection = cross_validate(logits, gold_index, candidates, k=folds, seed=seed)
            method = selection["chosen"]
        calibration = Calibration(method, labels, n_docs=n, alphas=[float(a) for a in alphas], quantiles=quantiles)
        extra = _fit_exclusive(calibration, logits, gold_index)
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
    if exclusive:
        top_before, top_after = raw.argmax(axis=1), calibrated.argmax(axis=1)
        calibration.fitted.update(
            extra,
            accuracy_before=float((top_before == gold_index).mean()),
            accuracy_after=float((top_after == gold_index).mean()),
            decisions_changed=int((top_before != top_after).sum()),
        )
        if selection is not None:
            calibration.fitted["selection"] = selection
    return calibration


def _fit_exclusive(calibration: Calibration, logits: numpy.ndarray, gold_index: numpy.ndarray) -> Dict[str, Any]:
    """Fit `calibration.method` and store its parameters in `calibration`.

    RETURNS (Dict[str, Any]): What to keep in "fitted" besides (Dirichlet: "l2").
    """
    method = calibration.method
    fit: Dict[str, Any]
    if method == "temperature":
        calibration.temperature = fit_temperature(logits, gold_index)
    elif method == "vector":
        fit = calibrators.fit_vector(logits, gold_index)
        calibration.slopes, calibration.intercepts = fit["slopes"], fit["intercepts"]
    elif method == "dirichlet":
        fit = calibrators.fit_dirichlet(logits, gold_index)
        calibration.weights, calibration.intercepts = fit["weights"], fit["intercepts"]
        return {"l2": fit["l2"]}
    elif method in TOP_LABEL:
        fit = fit_top_label(method, logits, gold_index)
        calibration.temperature, calibration.knots, calibration.values = fit["temperature"], fit["knots"], fit["values"]
    return {}


def _softmax(logits: numpy.ndarray) -> numpy.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = numpy.exp(z)
    return e / e.sum(axis=1, keepdims=True)
