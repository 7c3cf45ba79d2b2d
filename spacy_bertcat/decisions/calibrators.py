"""The calibration maps of exclusive classes beyond temperature scaling: how each
is fitted on held-out logits and applied to new ones (see calibration.py, which
stores them, and calibration_cv.py, which chooses between them).

Every map reads only the model's probabilities (the log-softmax of its logits),
so fitting on scores read back from documents is as good as fitting on logits:

- **vector scaling** (Guo et al. 2017, Platt scaling with a bias per class):
  softmax(a * log p + b), a > 0 and b per class. Can change the top class.
- **Dirichlet calibration** with off-diagonal and intercept regularisation (ODIR;
  Kull et al., "Beyond temperature scaling", NeurIPS 2019): softmax(W log p + b),
  an L2 penalty on W's off-diagonal entries and on b (a fixed 0.1 by default,
  or chosen by 3-fold cross-validation of the log loss). Can change the top
  class.
- **top-label isotonic regression** and **top-label histogram binning** (Gupta
  and Ramdas, "Top-label calibration and multiclass-to-binary reductions", ICLR
  2022), after temperature scaling: the temperature is fitted first (it keeps
  the order of the classes and gives the non-top classes sensible
  proportions); then the top class's score p is replaced by f(p), a map fitted
  from the top-label confidences to whether the top class is right (isotonic: a
  non-decreasing piecewise-linear map, stored as its knots; histogram: the
  accuracy of equal-mass bins, stored as the inner bin edges and one value per
  bin); the other classes keep their temperature-scaled proportions and share
  1 - f(p). f(p) is
  raised where needed so that the top class stays on top (it never falls below
  the renormalised second class), so these maps cannot change a decision. They
  are step or piecewise-linear maps: not differentiable in any useful sense.

The fitting runs in float64 with scipy's L-BFGS-B on the mean negative
log-likelihood (analytic gradients), and scipy's isotonic regression.
"""

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy

LOG_EPS = 1e-30  # probabilities are clipped this far from 0 where their log is taken
ODIR_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # Dirichlet: the regularisation strengths tried with l2=None
ODIR_L2 = 0.1  # Dirichlet: the default regularisation strength


# Array-library helpers: numpy, cupy and torch


def is_torch(xp: Any) -> bool:
    return getattr(xp, "__name__", "") == "torch"


def constant(xp: Any, values: Any, like: Any) -> Any:
    """RETURNS: `values` as an array of `like`'s library, dtype and device."""
    if is_torch(xp):
        return xp.as_tensor(values, dtype=like.dtype, device=like.device)
    return xp.asarray(values, dtype=like.dtype)


def log_softmax(xp: Any, z: Any) -> Any:
    if is_torch(xp):
        return xp.log_softmax(z, dim=-1)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True))


def _row_max(xp: Any, a: Any) -> Any:
    return a.max(dim=-1, keepdim=True).values if is_torch(xp) else a.max(axis=-1, keepdims=True)


def _row_argmax(xp: Any, a: Any) -> Any:
    return a.argmax(dim=-1, keepdim=True) if is_torch(xp) else a.argmax(axis=-1)[:, None]


def _take(xp: Any, a: Any, index: Any) -> Any:
    return a.gather(-1, index) if is_torch(xp) else xp.take_along_axis(a, index, axis=-1)


# Applying the maps (logits in, calibrated logits out)


def apply_vector(xp: Any, logits: Any, slopes: Sequence[float], intercepts: Sequence[float]) -> Any:
    return log_softmax(xp, logits) * constant(xp, slopes, logits) + constant(xp, intercepts, logits)


def apply_dirichlet(xp: Any, logits: Any, weights: Sequence[Sequence[float]], intercepts: Sequence[float]) -> Any:
    w = constant(xp, weights, logits)
    return log_softmax(xp, logits) @ w.T + constant(xp, intercepts, logits)


def apply_top_label(
    xp: Any, logits: Any, method: str, knots: Sequence[float], values: Sequence[float], temperature: float = 1.0
) -> Any:
    """The top-label map on logits / temperature: RETURNS the log of the
    calibrated probabilities (logits whose softmax they are)."""
    log_p = log_softmax(xp, logits / temperature)
    p = xp.exp(log_p)
    top = _row_argmax(xp, p)
    conf = _take(xp, p, top)
    mapped = top_label_map(xp, conf, method, knots, values)
    n_classes = p.shape[-1]
    is_top = constant(xp, numpy.arange(n_classes), logits) == top
    second = _row_max(xp, xp.where(is_top, xp.zeros_like(p), p))
    # The top class stays on top: f(p) >= second * (1 - f(p)) / (1 - p).
    floor = second / (1.0 - conf + second + 1e-12) * (1.0 + 1e-6)
    mapped = xp.where(mapped < floor, floor, mapped)
    rest = (1.0 - mapped) / xp.where(1.0 - conf > 1e-12, 1.0 - conf, xp.ones_like(conf))
    out = xp.where(is_top, mapped * xp.ones_like(p), p * rest)
    tiny = constant(xp, LOG_EPS, logits)
    return xp.log(xp.where(out > tiny, out, tiny * xp.ones_like(out)))


def top_label_map(xp: Any, conf: Any, method: str, knots: Sequence[float], values: Sequence[float]) -> Any:
    """f(conf): isotonic (linear between the knots, constant beyond them) or
    histogram (the value of the bin between the inner edges `knots`)."""
    y = constant(xp, values, conf)
    if len(values) == 1:
        return y[0] * xp.ones_like(conf)
    x = constant(xp, knots, conf)
    if method == "histogram":
        return y[_search(xp, x, conf)]
    index = _search(xp, x, conf)
    index = index.clamp(1, len(knots) - 1) if is_torch(xp) else xp.clip(index, 1, len(knots) - 1)
    x0, x1, y0, y1 = x[index - 1], x[index], y[index - 1], y[index]
    t = (conf - x0) / (x1 - x0)
    t = xp.where(t < 0, xp.zeros_like(t), xp.where(t > 1, xp.ones_like(t), t))
    return y0 + t * (y1 - y0)


def _search(xp: Any, sorted_values: Any, x: Any) -> Any:
    """RETURNS: For each x, how many of the sorted values are <= x."""
    if is_torch(xp):
        return xp.searchsorted(sorted_values, x.contiguous(), right=True)
    return xp.searchsorted(sorted_values, x, side="right")


# Inverting them (calibrated scores back to the model's own), numpy


def uncalibrate_vector(scores: numpy.ndarray, slopes: Sequence[float], intercepts: Sequence[float]) -> numpy.ndarray:
    """Exact (a > 0): log s = a log p + b + c per row, and p sums to 1, which
    fixes c (found by bisection: the sum falls as c grows)."""
    a = numpy.asarray(slopes, dtype="f8")
    with numpy.errstate(divide="ignore"):
        lifted = numpy.log(numpy.asarray(scores, dtype="f8")) - numpy.asarray(intercepts, dtype="f8")
    finite = numpy.where(numpy.isfinite(lifted), lifted, -numpy.inf)
    lo = finite.max(axis=1)  # sum >= 1 here
    hi = (finite + a * math.log(max(scores.shape[1], 2))).max(axis=1)  # sum <= 1 here
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        total = numpy.exp((finite - mid[:, None]) / a).sum(axis=1)
        lo = numpy.where(total > 1.0, mid, lo)
        hi = numpy.where(total > 1.0, hi, mid)
    p = numpy.exp((finite - (0.5 * (lo + hi))[:, None]) / a)
    return p / p.sum(axis=1, keepdims=True)


def uncalibrate_dirichlet(
    scores: numpy.ndarray, weights: Sequence[Sequence[float]], intercepts: Sequence[float]
) -> numpy.ndarray:
    """Approximate: log p = W^-1 (log s - b + c) for the c where p sums to 1
    (bisection; exact where that sum is monotone in c, as for a W near the
    identity)."""
    w_inv = numpy.linalg.pinv(numpy.asarray(weights, dtype="f8"))
    lifted = numpy.log(numpy.clip(numpy.asarray(scores, dtype="f8"), LOG_EPS, 1.0)) - numpy.asarray(intercepts)
    u = lifted @ w_inv.T
    v = w_inv.sum(axis=1)
    sign = 1.0 if v.sum() >= 0 else -1.0

    def log_total(c: numpy.ndarray) -> numpy.ndarray:
        x = u + c[:, None] * v
        m = x.max(axis=1)
        return m + numpy.log(numpy.exp(x - m[:, None]).sum(axis=1))

    lo, hi = numpy.full(len(u), -1e4), numpy.full(len(u), 1e4)
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        above = sign * log_total(mid) > 0
        hi = numpy.where(above, mid, hi)
        lo = numpy.where(above, lo, mid)
    x = u + (0.5 * (lo + hi))[:, None] * v
    p = numpy.exp(x - x.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def uncalibrate_top_label(
    scores: numpy.ndarray, method: str, knots: Sequence[float], values: Sequence[float], temperature: float = 1.0
) -> numpy.ndarray:
    """Approximate: the top score's preimage under f (the middle of a flat
    stretch, where f maps many onto one); the other classes keep their
    proportions; then the temperature undone."""
    s = numpy.asarray(scores, dtype="f8")
    rows = numpy.arange(len(s))
    top = s.argmax(axis=1)
    mapped = s[rows, top]
    x = numpy.asarray(knots, dtype="f8")
    y = numpy.asarray(values, dtype="f8")
    if method == "histogram":
        edges = numpy.concatenate([[0.0], x, [1.0]])
        centres = 0.5 * (edges[:-1] + edges[1:])
        conf = centres[numpy.abs(y[None, :] - mapped[:, None]).argmin(axis=1)]
    elif len(x) > 1:
        y_up, first = numpy.unique(y, return_index=True)
        _, last = numpy.unique(y[::-1], return_index=True)
        last = len(y) - 1 - last
        conf = 0.5 * (numpy.interp(mapped, y_up, x[first]) + numpy.interp(mapped, y_up, x[last]))
    else:
        conf = numpy.full(len(s), 1.0 / s.shape[1])
    others = s.copy()
    others[rows, top] = 0.0
    second = others.max(axis=1)
    # The top class stays on top: conf >= second * (1 - conf) / (1 - mapped).
    conf = numpy.clip(conf, second / numpy.maximum(1.0 - mapped + second, 1e-12) * (1 + 1e-6), 1.0)
    scale = (1.0 - conf) / numpy.where(1.0 - mapped > 1e-12, 1.0 - mapped, 1.0)
    raw = s * scale[:, None]
    raw[rows, top] = conf
    log_raw = numpy.log(numpy.clip(raw, LOG_EPS, None)) * temperature
    raw = numpy.exp(log_raw - log_raw.max(axis=1, keepdims=True))
    return raw / raw.sum(axis=1, keepdims=True)


# Fitting (float64)


def log_probs(logits: numpy.ndarray) -> numpy.ndarray:
    return log_softmax(numpy, numpy.asarray(logits, dtype="f8"))


def _minimize(objective, x0: numpy.ndarray) -> numpy.ndarray:
    """L-BFGS-B (scipy) on an objective that returns (value, gradient)."""
    from scipy.optimize import minimize

    result = minimize(objective, x0, jac=True, method="L-BFGS-B", options={"maxiter": 200})
    return numpy.asarray(result.x, dtype="f8")


def _nll_grad(z: numpy.ndarray, onehot: numpy.ndarray) -> Tuple[float, numpy.ndarray]:
    """Mean negative log-likelihood of softmax(z) and its gradient in z."""
    log_p = log_softmax(numpy, z)
    n = len(z)
    return float(-(log_p * onehot).sum() / n), (numpy.exp(log_p) - onehot) / n


def fit_temperature_fast(logits: numpy.ndarray, gold_index: numpy.ndarray) -> float:
    """The NLL-optimal temperature (as calibration.fit_temperature; scipy)."""
    z = numpy.asarray(logits, dtype="f8")
    onehot = numpy.eye(z.shape[1])[numpy.asarray(gold_index, dtype="i8")]

    def objective(x):
        t = math.exp(x[0])
        value, grad = _nll_grad(z / t, onehot)
        return value, numpy.asarray([float((grad * z).sum()) * -1.0 / t])

    return float(math.exp(_minimize(objective, numpy.zeros(1))[0]))


def fit_vector(logits: numpy.ndarray, gold_index: numpy.ndarray) -> Dict[str, List[float]]:
    """Vector scaling on log-probabilities: a (> 0, fitted as log a) and b per
    class minimizing the mean negative log-likelihood (L-BFGS-B)."""
    log_p = log_probs(logits)
    k = log_p.shape[1]
    onehot = numpy.eye(k)[numpy.asarray(gold_index, dtype="i8")]

    def objective(x):
        a, b = numpy.exp(x[:k]), x[k:]
        value, grad = _nll_grad(log_p * a + b, onehot)
        return value, numpy.concatenate([(grad * log_p).sum(axis=0) * a, grad.sum(axis=0)])

    x = _minimize(objective, numpy.zeros(2 * k))
    b = x[k:] - x[k:].mean()  # softmax ignores a shared shift
    return {"slopes": numpy.exp(x[:k]).tolist(), "intercepts": b.tolist()}


def fit_dirichlet(
    logits: numpy.ndarray, gold_index: numpy.ndarray, l2: Optional[float] = ODIR_L2, seed: int = 0
) -> Dict[str, Any]:
    """Dirichlet calibration with ODIR: W (classes x classes), b minimizing the
    mean negative log-likelihood + l2 * (mean squared off-diagonal entry of W +
    mean squared b). l2 None: the value of ODIR_GRID with the lowest 3-fold
    cross-validated log loss (13 fits instead of one); by default a fixed 0.1
    (the outer cross-validation of calibration_cv.py decides whether Dirichlet
    calibration is used at all).

    RETURNS (Dict[str, Any]): "weights" (rows of W), "intercepts", "l2".
    """
    log_p = log_probs(logits)
    gold_index = numpy.asarray(gold_index, dtype="i8")
    if l2 is None:
        folds = fold_indices(gold_index, 3, seed)
        best: Tuple[float, float] = (math.inf, ODIR_GRID[0])
        if min(len(f) for f in folds) > 0:
            for value in ODIR_GRID:
                losses = []
                for j in range(len(folds)):
                    train = numpy.concatenate([f for i, f in enumerate(folds) if i != j])
                    w, b = _fit_dirichlet(log_p[train], gold_index[train], value)
                    losses.append(_nll(log_p[folds[j]] @ w.T + b, gold_index[folds[j]]))
                best = min(best, (float(numpy.mean(losses)), value))
        l2 = best[1]
    w, b = _fit_dirichlet(log_p, gold_index, l2)
    return {"weights": w.tolist(), "intercepts": b.tolist(), "l2": float(l2)}


def _fit_dirichlet(log_p: numpy.ndarray, gold_index: numpy.ndarray, l2: float) -> Tuple[numpy.ndarray, numpy.ndarray]:
    k = log_p.shape[1]
    onehot = numpy.eye(k)[gold_index]
    off = 1.0 - numpy.eye(k)
    n_off = max(k * (k - 1), 1)

    def objective(x):
        w, b = x[: k * k].reshape(k, k), x[k * k :]
        value, grad = _nll_grad(log_p @ w.T + b, onehot)
        value += l2 * float(((w * off) ** 2).sum()) / n_off + l2 * float((b**2).sum()) / k
        d_w = grad.T @ log_p + 2 * l2 * w * off / n_off
        d_b = grad.sum(axis=0) + 2 * l2 * b / k
        return value, numpy.concatenate([d_w.reshape(-1), d_b])

    x = _minimize(objective, numpy.concatenate([numpy.eye(k).reshape(-1), numpy.zeros(k)]))
    return x[: k * k].reshape(k, k), x[k * k :]


def _nll(z: numpy.ndarray, gold_index: numpy.ndarray) -> float:
    log_p = log_softmax(numpy, z)
    return float(-log_p[numpy.arange(len(gold_index)), gold_index].mean())


def top_label(logits: numpy.ndarray, gold_index: numpy.ndarray) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """RETURNS: Each document's top-label confidence, and whether it is right."""
    p = numpy.exp(log_probs(logits))
    top = p.argmax(axis=1)
    return p[numpy.arange(len(p)), top], (top == numpy.asarray(gold_index)).astype("f8")


def _clip_values(values: numpy.ndarray, n_classes: int, n: int) -> List[float]:
    """A top-label confidence lies in [1/classes, 1); never 1 on finite data
    (its log loss would be infinite on the first error)."""
    return numpy.clip(values, 1.0 / n_classes, 1.0 - 0.5 / (n + 1)).tolist()


def fit_isotonic(logits: numpy.ndarray, gold_index: numpy.ndarray) -> Dict[str, List[float]]:
    """Top-label isotonic regression (scipy's pool-adjacent-violators), stored
    as its knots: the first and last confidence of each block of equal value
    (f is linear between knots, as scikit-learn's IsotonicRegression predicts)."""
    from scipy.optimize import isotonic_regression

    conf, correct = top_label(logits, gold_index)
    order = numpy.argsort(conf, kind="stable")
    x, y = conf[order], correct[order]
    x_unique, start, count = numpy.unique(x, return_index=True, return_counts=True)
    y_mean = numpy.add.reduceat(y, start) / count  # tied confidences pooled first
    result = isotonic_regression(y_mean, weights=count.astype("f8"), increasing=True)
    blocks = numpy.asarray(result.blocks)
    first, last = blocks[:-1], blocks[1:] - 1
    keep = numpy.unique(numpy.concatenate([first, last]))
    knots, values = x_unique[keep], numpy.asarray(result.x)[keep]
    return {"knots": knots.tolist(), "values": _clip_values(values, logits.shape[1], len(conf))}


def fit_histogram(logits: numpy.ndarray, gold_index: numpy.ndarray, n_bins: Optional[int] = None) -> Dict[str, Any]:
    """Top-label histogram binning over equal-mass bins (default: one bin per 50
    documents, 2 to 15), each bin's value its accuracy."""
    conf, correct = top_label(logits, gold_index)
    n_bins = n_bins or min(15, max(2, len(conf) // 50))
    edges = numpy.unique(numpy.quantile(conf, numpy.linspace(0.0, 1.0, n_bins + 1))[1:-1])
    index = numpy.searchsorted(edges, conf, side="right")
    count = numpy.bincount(index, minlength=len(edges) + 1)
    hits = numpy.bincount(index, weights=correct, minlength=len(edges) + 1)
    mean_conf = numpy.bincount(index, weights=conf, minlength=len(edges) + 1)
    values = numpy.where(count > 0, hits / numpy.maximum(count, 1), mean_conf / numpy.maximum(count, 1))
    return {"knots": edges.tolist(), "values": _clip_values(values, logits.shape[1], len(conf))}


def fold_indices(gold_index: numpy.ndarray, k: int, seed: int = 0) -> List[numpy.ndarray]:
    """k folds stratified by class (shuffled with `seed`)."""
    rng = numpy.random.default_rng(seed)
    folds: List[List[int]] = [[] for _ in range(k)]
    offset = 0
    for c in numpy.unique(gold_index):
        members = rng.permutation(numpy.flatnonzero(gold_index == c))
        for i, doc in enumerate(members):
            folds[(i + offset) % k].append(int(doc))
        offset += len(members)
    return [numpy.sort(numpy.asarray(f, dtype="i8")) for f in folds]
