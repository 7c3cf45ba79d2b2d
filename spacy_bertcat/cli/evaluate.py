"""`evaluate`: a report on a trained pipeline, as markdown + JSON + PNG pictures."""

from pathlib import Path
from typing import Any, Dict, Optional, cast

import srsly
from wasabi import msg

from ..errors import Errors
from ..evaluation.evaluate import check_report_folder, evaluate, write_report
from ._util import Arg, Opt, app, divider, load_pipeline, progress, run_check


@app.command("evaluate")
def evaluate_cli(
    # fmt: off
    model: str = Arg(..., help="Pipeline package name or path"),
    data_path: Path = Arg(..., help="Gold data: .spacy, or .jsonl/.csv/.tsv with text and labels", exists=True),
    output_dir: Path = Opt(
        Path("reports"),
        "--output",
        "-o",
        help="Directory for report.md, report.json and the PNGs: new, empty, or holding only an earlier report (whose files are replaced)",
        file_okay=False,
    ),
    component: Optional[str] = Opt(
        None, "--component", "-C", help="The classifier to evaluate (default: the first that sets doc.cats)"
    ),
    baseline: Optional[Path] = Opt(
        None,
        "--baseline",
        "-b",
        help="Metrics JSON of another model (e.g. the TF-IDF baseline) to show beside this one",
        exists=True,
        dir_okay=False,
    ),
    n_errors: int = Opt(20, "--n-errors", "-n", help="How many of the most confident errors to list"),
    n_explained: int = Opt(
        10,
        "--explain-errors",
        help="Explain the first N of those errors token by token in explanations.html (0: none; needs captum)",
        min=0,
    ),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field of JSONL/CSV data"),
    label_field: Optional[str] = Opt(
        None, "--label-field", "-l", help="Label field of JSONL/CSV data (default: label, labels or cats)"
    ),
    labels_sep: str = Opt("|", "--labels-sep", help="Separator of several labels in one CSV/TSV value"),
    batch_size: Optional[int] = Opt(None, "--batch-size", help="Docs per nlp.pipe batch (default: the pipeline's)"),
    plots: bool = Opt(True, "--plots/--no-plots", help="Draw the PNG pictures (needs matplotlib)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    # fmt: on
):
    """
    Evaluate a text classifier and write a report: per-label precision, recall,
    F1 and support, micro and macro scores, ROC AUC, a confusion matrix and
    per-label precision-recall curves (PNG), calibration (expected calibration
    error, Brier score, log loss, a reliability diagram; before and after for a
    calibrated pipeline, with the prediction sets' coverage), and the most
    confident errors (the texts to read first in an error analysis), the first
    of them explained token by token (explanations.html). Writes
    report.md, report.json, confusion_matrix.png, pr_curves.png,
    reliability.png and explanations.html to the output directory: a new or empty one, or one that
    holds only an earlier report (its files are replaced; any other file is
    refused). The JSON also holds the component's own spaCy scores (as `spacy
    evaluate` reports them).
    """
    run_check(lambda: check_report_folder(output_dir, inputs=[Path(model), data_path, baseline]))
    nlp = load_pipeline(model, gpu_id)
    try:
        base = _read_baseline(baseline) if baseline is not None else None
        report = evaluate(
            nlp,
            data_path,
            component=component,
            text_field=text_field,
            label_field=label_field,
            labels_sep=labels_sep,
            batch_size=batch_size,
            n_errors=n_errors,
            n_explained=n_explained,
            progress=lambda docs, total: progress(docs, total=total, desc="Evaluating"),
        )
        if base is not None:
            check_baseline(base, report, cast(Path, baseline))
        paths = write_report(
            report,
            output_dir,
            title=f"Evaluation of {model}",
            baseline=base,
            plots=plots,
            context={"pipeline": model, "data": data_path, "component": report["component"]},
        )
    except (ValueError, ImportError) as e:
        msg.fail(str(e), exits=1)
    s = report["summary"]
    label = "Accuracy" if report["exclusive"] else "Exact match"
    divider("Results")
    msg.table(
        [
            (label, f"{100 * s['accuracy']:.2f}"),
            ("Macro F1", f"{100 * s['macro_f']:.2f}"),
            ("Micro F1", f"{100 * s['micro_f']:.2f}"),
            ("Macro ROC AUC", "-" if s["macro_auc"] is None else f"{s['macro_auc']:.4f}"),
            ("ECE (points)", "-" if s["ece"] is None else _ece_text(report["calibration"]["scores"])),
        ]
        + (
            [("ECE uncalibrated", _ece_text(report["calibration"]["uncalibrated"]))]
            if report["calibration"]["uncalibrated"]
            else []
        )
        + (
            [(f"{label} ({base.get('name', 'baseline')})", f"{100 * base['summary'].get('accuracy', 0.0):.2f}")]
            if base
            else []
        )
    )
    msg.table(
        [
            (k, f"{100 * v['p']:.2f}", f"{100 * v['r']:.2f}", f"{100 * v['f']:.2f}", v["support"], v["n_predicted"])
            for k, v in report["per_label"].items()
        ],
        header=("", "P", "R", "F", "support", "predicted"),
        aligns=("l", "r", "r", "r", "r", "r"),
    )
    for info in (report.get("conformal") or {}).values():
        msg.info(
            f"Prediction sets at alpha={info['alpha']:g}: coverage {100 * info['coverage']:.2f}% "
            f"(guaranteed >= {100 * info['target']:.0f}%), mean size {info['mean_size']:.2f}"
        )
    never = [k for k, v in report["per_label"].items() if v["support"] and not v["n_predicted"]]
    if never:
        msg.warn(f"{len(never)} label(s) with gold positives are predicted for no document: {', '.join(never)}")
    for path in paths:
        msg.good(f"Saved {path}")


def check_baseline(base: Dict[str, Any], report: Dict[str, Any], path: Path) -> None:
    """Refuse a baseline report of another task: other labels, the other mode
    (exclusive / multi-label) or another number of test documents."""
    problems = []
    if "labels" in base and sorted(base["labels"]) != sorted(report["labels"]):
        problems.append(f"its labels are {sorted(base['labels'])}, this report's {sorted(report['labels'])}")
    if "exclusive" in base and bool(base["exclusive"]) != bool(report["exclusive"]):
        modes = {True: "exclusive classes", False: "multi-label"}
        problems.append(
            f"it is for {modes[bool(base['exclusive'])]}, this report for {modes[bool(report['exclusive'])]}"
        )
    n_base, n_this = base["summary"].get("n_docs"), report["summary"].get("n_docs")
    if n_base is not None and n_base != n_this:
        problems.append(f"it scored {n_base} documents, this report {n_this}")
    if problems:
        raise ValueError(Errors.BC046.format(path=path, detail="; ".join(problems)))
    if "labels" not in base or "exclusive" not in base:
        msg.warn(f"{path} does not say its labels and mode; it is shown as given")


def _read_baseline(path: Path) -> Dict[str, Any]:
    try:
        data = srsly.read_json(path)
    except ValueError as e:
        raise ValueError(Errors.BC041.format(path=path, detail=f"not valid JSON ({e})")) from e
    if not isinstance(data, dict) or not isinstance(data.get("summary"), dict):
        raise ValueError(Errors.BC041.format(path=path, detail="no 'summary' object"))
    return data


def _ece_text(metrics: dict) -> str:
    """The ECE in points with its 95% bootstrap interval and the noise floor."""
    text = f"{100 * metrics['ece']:.2f}"
    if metrics.get("ece_interval"):
        low, high = metrics["ece_interval"]
        text += f" (95% interval {100 * low:.2f}-{100 * high:.2f}"
        text += f"; noise floor {100 * metrics['ece_floor']:.2f})" if metrics.get("ece_floor") is not None else ")"
    return text
