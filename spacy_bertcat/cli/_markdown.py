"""The evaluation report as markdown (the tables of report.md; pictures are linked)."""
from typing import Any, Dict, List, Optional

from ..thresholds import SOURCE_MARKERS, threshold_source


def to_markdown(report: Dict[str, Any], *, title: str, images: Optional[Dict[str, str]] = None,
                baseline: Optional[Dict[str, Any]] = None, context: Optional[Dict[str, Any]] = None) -> str:
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
    lines += [f"- **documents**: {s['n_docs']}", f"- **labels** ({len(report['labels'])}): {', '.join(report['labels'])}",
              f"- **mode**: {mode}", "", "## Summary", ""]
    rows = [("accuracy" if report["exclusive"] else "exact match", "accuracy"), ("micro F1", "micro_f"),
            ("macro precision", "macro_p"), ("macro recall", "macro_r"), ("macro F1", "macro_f"),
            ("macro ROC AUC (x 100)", "macro_auc")]
    if baseline:
        base = baseline.get("summary", baseline)
        lines += [f"| metric | this model | {baseline.get('name', 'baseline')} |", "|---|---:|---:|"]
        lines += [f"| {name} | {_pct(s.get(key))} | {_pct(base.get(key))} |" for name, key in rows]
    else:
        lines += ["| metric | value |", "|---|---:|"]
        lines += [f"| {name} | {_pct(s.get(key))} |" for name, key in rows]
    lines += ["", "Percentages; F1 per label from precision and recall, macro = mean over labels, "
              "micro = from the pooled counts.", "", "## Per label", ""]
    multi = not report["exclusive"]
    fallback = set(report.get("thresholds_fallback") or ())
    by_prevalence = set(report.get("thresholds_by_prevalence") or ())
    header = "| label | precision | recall | F1 | support | predicted | ROC AUC | avg. precision |"
    lines += [header + (" threshold |" if multi else ""), "|---|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if multi else "")]
    for label, v in report["per_label"].items():
        row = (f"| {_md(label)} | {_pct(v['p'])} | {_pct(v['r'])} | {_pct(v['f'])} | {v['support']} | "
               f"{v['n_predicted']} | {_num(v['auc'])} | {_num(v['average_precision'])} |")
        marker = SOURCE_MARKERS[threshold_source(label, fallback, by_prevalence)]
        lines.append(row + (f" {v['threshold']:.3f}{marker} |" if multi else ""))
    if multi:
        lines += ["", "predicted: documents the model gives the label (against the gold support); a label "
                  "with support and 0 predicted has collapsed. Thresholds marked (global) belong to labels "
                  "too rare in the dev data for a threshold of their own, (prevalence) those of them lowered "
                  "to fire about as often as in the training data."]
    lines += ["", "## Confusion matrix", ""]
    if "confusion" in images:
        lines += [f"![confusion matrix]({images['confusion']})", ""]
    lines += _confusion_markdown(report["confusion"], report["exclusive"])
    lines += ["", "## Precision-recall curves", ""]
    if "pr_curves" in images:
        lines += [f"![precision-recall curves]({images['pr_curves']})", ""]
    lines += ["One curve per label (one label against the rest), with the model's operating point "
              "marked, the chance level (the label's prevalence) dashed and the average precision in "
              "each title.", "", "## Most confident errors", ""]
    lines += _errors_markdown(report["errors"], report["exclusive"])
    return "\n".join(lines) + "\n"


def _confusion_markdown(confusion: Dict[str, Any], exclusive: bool) -> List[str]:
    labels = confusion["labels"]
    if exclusive:
        lines = ["| gold \\ predicted | " + " | ".join(_md(x) for x in labels) + " |",
                 "|---|" + "---:|" * len(labels)]
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
            lines.append(f"| {n} | {_md(str(e['id']))} | {_md(e['gold'])} | {_md(e['predicted'])} | "
                         f"{e['score']:.3f} | {e['gold_score']:.3f} | {_md(e.get('text', ''))} |")
        return lines
    lines = ["| # | id | label | error | score | threshold | gold | text |", "|---:|---|---|---|---:|---:|---|---|"]
    for n, e in enumerate(errors, 1):
        lines.append(f"| {n} | {_md(str(e['id']))} | {_md(e['label'])} | {e['kind']} | {e['score']:.3f} | "
                     f"{e['threshold']:.3f} | {_md(', '.join(e['gold']))} | {_md(e.get('text', ''))} |")
    return lines


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
