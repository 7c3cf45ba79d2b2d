"""The report's pictures: a confusion matrix, per-label precision-recall curves and a
reliability diagram.

matplotlib is optional (`pip install "spacy-bertcat[report]"`) and imported only
here, when a picture is drawn. Figures are rendered with the Agg canvas directly, so
pyplot's global state and the user's backend are left alone.
"""

import math
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

from ..errors import Errors

MAX_PANELS = 24  # multi-label pictures show the most frequent labels


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(Errors.BC039) from e
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: Union[str, Path]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path


def _frequent_labels(report: Dict[str, Any]) -> List[str]:
    per_label = report["per_label"]
    return sorted(per_label, key=lambda label: -per_label[label]["support"])[:MAX_PANELS]


def plot_confusion(report: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Draw the confusion matrix of a report (from report.compute_report) as PNG.

    Exclusive classes: gold (rows) against predicted (columns), cells coloured by
    the share of the gold row and labelled with counts. Multi-label: one 2 x 2
    matrix (gold no/yes against predicted no/yes) per label.
    RETURNS (Path): The path written.
    """
    if report["exclusive"]:
        return _save(_exclusive_confusion(report["confusion"]), path)
    return _save(_multilabel_confusion(report["confusion"], _frequent_labels(report)), path)


def _exclusive_confusion(confusion: Dict[str, Any]) -> Any:
    import numpy

    labels, matrix = confusion["labels"], numpy.asarray(confusion["matrix"], dtype=float)
    n = len(labels)
    size = max(4.5, 0.7 * n + 2.5)
    figure = _figure(size + 1.0, size)
    ax = figure.add_subplot()
    shares = matrix / numpy.maximum(matrix.sum(axis=1, keepdims=True), 1)
    from matplotlib.colors import PowerNorm

    # A power scale, so that a few percent of confusions show as a visible tint.
    image = ax.imshow(shares, cmap="Blues", norm=PowerNorm(gamma=0.4, vmin=0.0, vmax=1.0))
    figure.colorbar(image, ax=ax, label="share of the gold class", shrink=0.8, ticks=[0, 0.02, 0.1, 0.25, 0.5, 1.0])
    ax.set_xticks(range(n), labels=labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels=labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    total = int(matrix.sum())
    correct = int(numpy.trace(matrix))
    ax.set_title(f"Confusion matrix ({correct} of {total} correct)")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if matrix[i, j]:
                    color = "white" if shares[i, j] > 0.3 else "black"
                    ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=color, fontsize=9)
    return figure


def _grid(n: int) -> Tuple[int, int]:
    cols = min(max(math.ceil(math.sqrt(n)), 1), 6)
    return math.ceil(n / cols), cols


def _multilabel_confusion(confusion: Dict[str, Any], labels: List[str]) -> Any:
    import numpy

    rows, cols = _grid(len(labels))
    figure = _figure(3.0 * cols, 2.8 * rows)
    figure.suptitle("Per-label confusion (rows: gold, columns: predicted)")
    for k, label in enumerate(labels):
        c = confusion["per_label"][label]
        matrix = numpy.asarray([[c["tn"], c["fp"]], [c["fn"], c["tp"]]], dtype=float)
        ax = figure.add_subplot(rows, cols, k + 1)
        shares = matrix / numpy.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
        ax.set_xticks([0, 1], labels=["no", "yes"])
        ax.set_yticks([0, 1], labels=["no", "yes"])
        ax.set_title(f"{label} (support {c['tp'] + c['fn']})", fontsize=10)
        for i in range(2):
            for j in range(2):
                color = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", color=color, fontsize=9)
    return figure


def plot_pr_curves(report: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Draw one precision-recall panel per label (the most frequent 24 for many
    labels), with the average precision, the model's operating point and the
    chance level (the label's prevalence: what a random ranking scores). One legend
    for all panels sits above them, so it hides no curve and no operating point
    (a label that is never predicted has its point at recall 0, precision 0).

    RETURNS (Path): The path written.
    """
    return _save(pr_figure(report), path)


def pr_figure(report: Dict[str, Any]) -> Any:
    """RETURNS (matplotlib.figure.Figure): The precision-recall panels (see
    plot_pr_curves)."""
    labels = _frequent_labels(report) if not report["exclusive"] else report["labels"][:MAX_PANELS]
    rows, cols = _grid(len(labels))
    figure = _figure(3.2 * cols, 3.0 * rows + 0.6)
    figure.suptitle("Precision-recall per label (one against the rest)")
    n_docs = max(int(report["summary"].get("n_docs") or 0), 1)
    handles = {}
    for k, label in enumerate(labels):
        curve = report["pr_curves"][label]
        stats = report["per_label"][label]
        ax = figure.add_subplot(rows, cols, k + 1)
        if curve["recall"]:
            # Step plot from recall 0, as precision is defined at each threshold.
            (line,) = ax.step(
                [0.0] + curve["recall"], [curve["precision"][0]] + curve["precision"], where="post", color="C0"
            )
            chance = ax.axhline(stats["support"] / n_docs, color="0.5", linestyle="--", linewidth=1)
            (point,) = ax.plot([stats["r"]], [stats["p"]], "o", color="C3", clip_on=False, zorder=5)
            handles.update(
                {
                    "precision-recall curve": line,
                    "operating point (decision threshold)": point,
                    "chance (prevalence)": chance,
                }
            )
            ap = curve["average_precision"]
            ax.set_title(f"{label}\nAP {ap:.3f}, support {stats['support']}", fontsize=10)
        else:
            ax.set_title(f"{label}\n(no positive examples)", fontsize=10)
        ax.set_xlim(0.0, 1.02)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
    if handles:
        figure.legend(
            list(handles.values()), list(handles), loc="outside upper center", ncols=3, fontsize=9, frameon=False
        )
    return figure


def plot_reliability(report: Dict[str, Any], path: Union[str, Path]) -> Path:
    """Draw a reliability diagram: in equal-width bins of confidence, how often the
    model is right (exclusive classes: the top class; multi-label: the share of
    positives among scores in the bin) against the mean confidence, with the
    diagonal of perfect calibration; under it, how many predictions fall in each
    bin. A calibrated pipeline shows its scores and the uncalibrated ones.

    RETURNS (Path): The path written.
    """
    return _save(reliability_figure(report), path)


def reliability_figure(report: Dict[str, Any]) -> Any:
    """RETURNS (matplotlib.figure.Figure): The reliability diagram (see
    plot_reliability)."""
    import numpy

    calibration = report["calibration"]
    series = [("uncalibrated", calibration["uncalibrated"], "C1"), ("calibrated", calibration["scores"], "C0")]
    if calibration["uncalibrated"] is None:
        series = [("this model", calibration["scores"], "C0")]
    figure = _figure(5.5, 6.2)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="perfect calibration")
    width = None
    for k, (name, metrics, color) in enumerate(series):
        bins = metrics["bins"]
        lower, upper = numpy.asarray(bins["lower"]), numpy.asarray(bins["upper"])
        width = (upper - lower) / len(series)
        left = lower + k * width
        accuracy = numpy.asarray([numpy.nan if a is None else a for a in bins["accuracy"]])
        confidence = numpy.asarray([numpy.nan if c is None else c for c in bins["confidence"]])
        ece = metrics["ece"]
        label = f"{name} (ECE {100 * ece:.2f})" if ece is not None else name
        top.bar(
            left,
            numpy.nan_to_num(accuracy),
            width=width,
            align="edge",
            color=color,
            alpha=0.75,
            edgecolor="white",
            label=label,
        )
        top.plot(confidence, accuracy, "o", color=color, markersize=3, markeredgecolor="black", markeredgewidth=0.4)
        bottom.bar(left, bins["count"], width=width, align="edge", color=color, alpha=0.75, edgecolor="white")
    exclusive = report["exclusive"]
    top.set_ylabel("accuracy in the bin" if exclusive else "share of positives in the bin")
    top.set_xlim(0.0, 1.0)
    top.set_ylim(0.0, 1.0)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=9)
    n = calibration["scores"]["n"]
    what = "top-class confidence" if exclusive else "label scores"
    top.set_title(
        f"Reliability ({what}, {n} predictions)\nbars: accuracy per bin, dots at the bin's mean confidence", fontsize=10
    )
    bottom.set_yscale("symlog", linthresh=10)
    bottom.set_ylabel("predictions")
    bottom.set_xlabel("confidence (score of the top class)" if exclusive else "score")
    bottom.grid(alpha=0.3)
    return figure
