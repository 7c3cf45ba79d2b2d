"""The evaluation report as markdown (the tables of report.md; pictures are linked)."""

from typing import Any, Dict, List, Optional

from ..decisions.thresholds import SOURCE_MARKERS, threshold_source


def to_markdown(
    report: Dict[str, Any],
    *,
    title: str,
    images: Optional[Dict[str, str]] = None,
    baseline: Optional[Dict[str, Any]] = None,
    context: Optional[Dict[str, Any]] = None,
) -> str:
    """Render a report (from compute_report) as markdown.

    title (str): The heading.
    images (Optional[Dict[str, str]]): "confusion" and "pr_curves" image paths,
        relative to the markdown file.
    baseline (Optional[Dict[str, Any]]): Another report (or its "summary" plus a
        "name") shown beside this one in the summary table.
    context (Optional[Dict[str, Any]]): Lines for the header list (model, data, ...).
    RETURNS (str): The markdown text.
    """
    images = images or {}
    s = report["summary"]
    lines = [f"# {title}", ""]
    for key, value in (context or {}).items():
        lines.append(f"- **{key}**: {value}")
    mode = "exclusive classes (highest score wins)" if report["exclusive"] else "multi-label (score >= threshold)"
    lines += [
        f"- **documents**: {s['n_docs']}",
        f"- **labels** ({len(report['labels'])}): {', '.join(report['labels'])}",
        f"- **mode**: {mode}",
        "",
        "## Summary",
        "",
    ]
    rows = [
        ("accuracy" if report["exclusive"] else "exact match", "accuracy"),
        ("micro F1", "micro_f"),
        ("macro precision", "macro_p"),
        ("macro recall", "macro_r"),
        ("macro F1", "macro_f"),
        ("macro ROC AUC (x 100)", "macro_auc"),
        ("ECE (points, lower is better)", "ece"),
    ]
    if baseline:
        base = baseline.get("summary", baseline)
        lines += [f"| metric | this model | {baseline.get('name', 'baseline')} |", "|---|---:|---:|"]
        lines += [f"| {name} | {_pct(s.get(key))} | {_pct(base.get(key))} |" for name, key in rows]
    else:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {_pct(s.get(key))} |" for name, key in rows]
    lines += [
        "",
        "Percentages; F1 per label from precision and recall, macro = mean over labels, "
        "micro = from the pooled counts.",
        "",
        "## Per label",
        "",
    ]
    multi = not report["exclusive"]
    fallback = set(report.get("thresholds_fallback") or ())
    by_prevalence = set(report.get("thresholds_by_prevalence") or ())
    header = "| label | precision | recall | F1 | support | predicted | ROC AUC | avg. precision |"
    lines += [
        header + (" threshold |" if multi else ""),
        "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if multi else ""),
    ]
    for label, v in report["per_label"].items():
        row = (
            f"| {_md(label)} | {_pct(v['p'])} | {_pct(v['r'])} | {_pct(v['f'])} | {v['support']} | "
            f"{v['n_predicted']} | {_num(v['auc'])} | {_num(v['average_precision'])} |"
        )
        marker = SOURCE_MARKERS[threshold_source(label, fallback, by_prevalence)]
        lines.append(row + (f" {v['threshold']:.3f}{marker} |" if multi else ""))
    if multi:
        lines += [
            "",
            "predicted: documents the model gives the label (against the gold support); a label "
            "with support and 0 predicted has collapsed. Thresholds marked (global) belong to labels "
            "too rare in the dev data for a threshold of their own, (prevalence) those of them lowered "
            "to fire about as often as in the training data.",
        ]
    lines += ["", "## Confusion matrix", ""]
    if "confusion" in images:
        lines += [f"![confusion matrix]({images['confusion']})", ""]
    lines += _confusion_markdown(report["confusion"], report["exclusive"])
    lines += ["", "## Precision-recall curves", ""]
    if "pr_curves" in images:
        lines += [f"![precision-recall curves]({images['pr_curves']})", ""]
    lines += [
        "One curve per label (one label against the rest), with the model's operating point "
        "marked, the chance level (the label's prevalence) dashed and the average precision in "
        "each title."
    ]
    lines += _calibration_markdown(report, images.get("reliability"))
    lines += ["", "## Most confident errors", ""]
    lines += _errors_markdown(report["errors"], report["exclusive"])
    lines += _explanations_markdown(report.get("explanations") or {}, images.get("explanations"))
    return "\n".join(lines) + "\n"


def _calibration_markdown(report: Dict[str, Any], image: Optional[str]) -> List[str]:
    calibration = report.get("calibration")
    if not calibration:
        return []
    lines = ["", "## Calibration", ""]
    rows = [
        ("ECE, 15 equal-width bins (points)", "ece", 100),
        ("ECE, 15 equal-mass bins (points)", "ece_adaptive", 100),
        ("ECE that perfectly calibrated scores would show here (noise floor)", "ece_floor", 100),
        ("noise floor of the equal-mass ECE", "ece_adaptive_floor", 100),
        ("Brier score", "brier", 1),
        ("log loss", "log_loss", 1),
    ]
    before = calibration.get("uncalibrated")
    if before:
        lines += [
            f"Calibrated with {calibration.get('description', 'a fitted calibration')}.",
            "",
            "| metric | uncalibrated | calibrated (doc.cats) |",
            "|---|---:|---:|",
        ]
        lines += [
            f"| {name} | {_val(before.get(key), scale)} | {_val(calibration['scores'].get(key), scale)} |"
            for name, key, scale in rows
        ]
        lines += [
            f"| {name} | {_interval(before.get(key))} | {_interval(calibration['scores'].get(key))} |"
            for name, key in INTERVAL_ROWS
        ]
    else:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {_val(calibration['scores'].get(key), scale)} |" for name, key, scale in rows]
        lines += [f"| {name} | {_interval(calibration['scores'].get(key))} |" for name, key in INTERVAL_ROWS]
    what = (
        "the top class's score against whether it is right"
        if report["exclusive"]
        else "every (document, label) score against its gold value"
    )
    lines += [
        "",
        f"Expected calibration error: the mean gap between confidence and accuracy over bins of "
        f"{what}, weighted by the bin's size (0 = scores are probabilities). Lower is better. On finite data "
        f"even perfectly calibrated scores show some ECE: the noise floor is its expected value for these "
        f"confidences and this many predictions, so an ECE near it is as good as the data can show. "
        f"The bootstrap interval shows how much the ECE would move on another sample of this size: an ECE whose "
        f"interval reaches down to the floor is not distinguishable from perfect calibration here.",
    ]
    if not before:
        lines += [
            "The pipeline is not calibrated: `spacy-bertcat calibrate MODEL DEV_DATA` fits a calibration on "
            "held-out data."
        ]
    if image:
        lines += ["", f"![reliability diagram]({image})"]
    conformal = report.get("conformal")
    if conformal:
        lines += [
            "",
            "### Prediction sets",
            "",
            "| alpha | guaranteed coverage | coverage here | mean set size | docs by set size (0, 1, 2, ...) |",
            "|---:|---:|---:|---:|---|",
        ]
        for info in conformal.values():
            lines.append(
                f"| {info['alpha']:g} | >= {_val(info['target'], 100)} | {_val(info['coverage'], 100)} | "
                f"{info['mean_size']:.2f} | {', '.join(str(n) for n in info['sizes'])} |"
            )
        lines += [
            "",
            "Split-conformal sets (doc._.bertcat_sets): the labels that contain the true one with "
            "probability at least 1 - alpha, if these documents are like the held-out ones it was calibrated on. "
            "An empty set: no label is likely enough at this alpha (a document to route to a person).",
        ]
    return lines


INTERVAL_ROWS = (
    ("ECE, equal-width: 95% bootstrap interval (points)", "ece_interval"),
    ("ECE, equal-mass: 95% bootstrap interval (points)", "ece_adaptive_interval"),
)


def _interval(value: Optional[List[float]]) -> str:
    return "-" if not value else f"{100 * value[0]:.2f} - {100 * value[1]:.2f}"


def _val(value: Optional[float], scale: float) -> str:
    if value is None:
        return "-"
    return f"{scale * value:.2f}" if scale == 100 else f"{value:.4f}"


def _confusion_markdown(confusion: Dict[str, Any], exclusive: bool) -> List[str]:
    labels = confusion["labels"]
    if exclusive:
        lines = ["| gold \\ predicted | " + " | ".join(_md(x) for x in labels) + " |", "|---|" + "---:|" * len(labels)]
        for label, row in zip(labels, confusion["matrix"]):
            lines.append(f"| **{_md(label)}** | " + " | ".join(str(x) for x in row) + " |")
        return lines
    lines = ["| label | true pos. | false pos. | false neg. | true neg. |", "|---|---:|---:|---:|---:|"]
    for label, c in confusion["per_label"].items():
        lines.append(f"| {_md(label)} | {c['tp']} | {c['fp']} | {c['fn']} | {c['tn']} |")
    return lines


def _errors_markdown(errors: List[Dict[str, Any]], exclusive: bool) -> List[str]:
    if not errors:
        return ["No errors."]
    if exclusive:
        lines = ["| # | id | gold | predicted | score | gold's score | text |", "|---:|---|---|---|---:|---:|---|"]
        for n, e in enumerate(errors, 1):
            lines.append(
                f"| {n} | {_md(str(e['id']))} | {_md(e['gold'])} | {_md(e['predicted'])} | "
                f"{e['score']:.3f} | {e['gold_score']:.3f} | {_md(e.get('text', ''))} |"
            )
        return lines
    lines = ["| # | id | label | error | score | threshold | gold | text |", "|---:|---|---|---|---:|---:|---|---|"]
    for n, e in enumerate(errors, 1):
        lines.append(
            f"| {n} | {_md(str(e['id']))} | {_md(e['label'])} | {e['kind']} | {e['score']:.3f} | "
            f"{e['threshold']:.3f} | {_md(', '.join(e['gold']))} | {_md(e.get('text', ''))} |"
        )
    return lines


def _explanations_markdown(explanations: Dict[str, Any], page: Optional[str]) -> List[str]:
    """The link to the explanation page of the first errors (or why there is none)."""
    if explanations.get("skipped"):
        return ["", f"No explanations of the errors: {explanations['skipped']}"]
    items = explanations.get("items") or []
    if not items or page is None:
        return []
    method = explanations["method"].replace("_", " ")
    return [
        "",
        f"Why: the first {len(items)} error(s) explained token by token ({method}, for the label the model "
        f"got wrong) in [{page}]({page}).",
    ]


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
