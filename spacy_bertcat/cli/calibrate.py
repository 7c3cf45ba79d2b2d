"""`calibrate`: fit a classifier's calibration on held-out data and store it in the
pipeline (see decisions/calibration.py)."""

import functools
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ..evaluation.calibrate import calibrate
from ._util import (
    Arg,
    Classifier,
    Opt,
    app,
    divider,
    load_pipeline,
    pipeline_output,
    refuse_given,
    run_check,
    save_pipeline,
)


@app.command("calibrate")
def calibrate_cli(
    # fmt: off
    ctx: typer.Context,
    model: Path = Arg(
        ...,
        help="Path of a trained pipeline with a bertcat or bertcat_multilabel component",
        exists=True,
        file_okay=False,
    ),
    data_path: Path = Arg(
        ...,
        help="Held-out data (the dev split, not the training data): .spacy, or .jsonl/.csv/.tsv with text and labels",
        exists=True,
    ),
    output_dir: Optional[Path] = Opt(
        None,
        "--output",
        "-o",
        help="Save the calibrated pipeline here: a new or empty folder (default: replace MODEL by its calibrated copy)",
        file_okay=False,
    ),
    component: Optional[str] = Opt(
        None, "--component", "-C", help="The classifier to calibrate (default: the first that sets doc.cats)"
    ),
    alpha: List[float] = Opt(
        [0.1, 0.05],
        "--alpha",
        "-a",
        help="Error rate of the prediction sets (exclusive classes; repeat for several, the first goes to doc._.bertcat_sets)",
    ),
    method: str = Opt(
        "auto",
        "--method",
        "-m",
        help="bertcat: auto (chosen by cross-validation on the data, or none), none, temperature, isotonic, histogram (keep every decision), vector, dirichlet (may change decisions: need --allow-decision-changes); bertcat_multilabel: auto or platt",
    ),
    allow_decision_changes: bool = Opt(
        False,
        "--allow-decision-changes",
        help="bertcat: also allow calibrations that can change a document's class (vector scaling, Dirichlet calibration); the decisions changed on the data and the accuracy before and after are printed",
    ),
    folds: int = Opt(5, "--folds", help="bertcat, --method auto: folds of the cross-validation", min=2),
    min_support: Optional[int] = Opt(
        None,
        "--min-support",
        help="Positives and negatives a label needs for its own Platt scaling (multi-label; default: the component's threshold_min_support)",
        min=1,
    ),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field of JSONL/CSV data"),
    label_field: Optional[str] = Opt(
        None, "--label-field", "-l", help="Label field of JSONL/CSV data (default: label, labels or cats)"
    ),
    labels_sep: str = Opt("|", "--labels-sep", help="Separator of several labels in one CSV/TSV value"),
    replace: bool = Opt(
        False,
        "--replace",
        help="Replace OUTPUT if it is a pipeline saved before (by an earlier run, say): only a folder that holds nothing but a saved pipeline's files is replaced, any other folder is refused",
    ),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    # fmt: on
):
    """
    Calibrate a classifier's scores on held-out data, so doc.cats can be read as
    probabilities. bertcat: by default the method (temperature scaling, top-label
    isotonic regression or histogram binning, or none) is chosen by k-fold
    cross-validation within the data, and the table it chose from is printed;
    the decisions and the accuracy are unchanged unless --allow-decision-changes
    admits vector scaling and Dirichlet calibration. bertcat_multilabel: Platt
    scaling per label (thresholds are mapped, so its decisions are unchanged). For exclusive classes it also stores
    split-conformal prediction sets: doc._.bertcat_sets[component] holds labels
    that contain the true one with probability at least 1 - alpha (empty where
    no label is likely enough: a document to route to a person). The model's own
    scores stay in doc._.bertcat_uncalibrated_cats. Prints the calibration error
    before and after on the data; `evaluate` on test data reports both.
    """
    target = output_dir if output_dir is not None else model
    output_check = functools.partial(
        pipeline_output,
        output=target,
        model=model,
        data=[data_path],
        command="calibrate --output",
        in_place=True,
        replace=replace,
    )
    run_check(output_check(None))  # before the pipeline loads
    nlp = load_pipeline(str(model), gpu_id)
    check = output_check(nlp)
    run_check(check)
    try:
        classifier = Classifier(nlp, component)
    except ValueError as e:
        msg.fail(str(e), exits=1)
    if classifier.exclusive:
        refuse_given(
            ctx,
            {"min_support": "it sets the labels of multi-label components that share one Platt scaling"},
            f"for '{classifier.name}', which predicts exclusive classes",
        )
    else:
        refuse_given(
            ctx,
            {
                "alpha": "prediction sets are made for exclusive classes only",
                "allow_decision_changes": "Platt scaling keeps every decision",
                "folds": "the method is Platt scaling, not chosen by cross-validation",
            },
            f"for the multi-label component '{classifier.name}'",
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = calibrate(
                nlp,
                data_path,
                component=component,
                alphas=alpha,
                min_support=min_support,
                text_field=text_field,
                label_field=label_field,
                labels_sep=labels_sep,
                method=method,
                allow_decision_changes=allow_decision_changes,
                folds=folds,
            )
    except ValueError as e:
        msg.fail(str(e), exits=1)
    for warning in caught:
        if "[BCW" in str(warning.message):
            msg.warn(str(warning.message))
    calibration = result["calibration"]
    before, after = calibration.fitted["before"], calibration.fitted["after"]
    selection = calibration.fitted.get("selection")
    if selection:
        divider(f"Choosing the method: {selection['k']}-fold cross-validation on {selection['n']} docs")
        msg.table(
            [
                (
                    row["method"] + (" <- chosen" if row["method"] == selection["chosen"] else ""),
                    f"{100 * row['ece']:.2f}",
                    f"{100 * row['ece_gain']:+.2f} +/- {100 * row['ece_gain_se']:.2f}",
                    f"{100 * row['ece_adaptive']:.2f}",
                    f"{row['log_loss']:.4f}",
                    f"{row['brier']:.4f}",
                    str(row["changed"]),
                    "yes" if row["eligible"] else "",
                )
                for row in selection["rows"]
            ],
            header=("method", "ECE", "ECE gain vs none", "ECE eq.-mass", "log loss", "Brier", "changed", "eligible"),
            aligns=("l", "r", "r", "r", "r", "r", "r", "l"),
        )
        msg.text(
            "Means over the left-out folds (ECE in points); changed: documents whose class the method changed. "
            f"Rule: {selection['rule']}."
        )
    divider(f"Calibration of '{result['component']}': {calibration.describe()}")
    msg.table(
        [
            (name, _fmt(key, before[key]), _fmt(key, after[key]))
            for name, key in (
                ("ECE (points)", "ece"),
                ("ECE, equal-mass bins", "ece_adaptive"),
                ("Brier", "brier"),
                ("log loss", "log_loss"),
            )
        ],
        header=("on the held-out data", "before", "after"),
        aligns=("l", "r", "r"),
    )
    if "decisions_changed" in calibration.fitted and (
        allow_decision_changes or calibration.fitted["decisions_changed"]
    ):
        msg.info(
            f"Decisions changed on the held-out data: {calibration.fitted['decisions_changed']} of "
            f"{calibration.n_docs}; accuracy {100 * calibration.fitted['accuracy_before']:.2f}% before, "
            f"{100 * calibration.fitted['accuracy_after']:.2f}% after"
        )
    for a, q in zip(calibration.alphas, calibration.quantiles):
        msg.info(
            f"Prediction sets at alpha={a:g}: a label is in a doc's set if its uncalibrated score is >= {1 - q:.4f}"
        )
    if calibration.pooled:
        msg.info(
            f"{len(calibration.pooled)} label(s) too rare for their own Platt scaling share one: "
            + ", ".join(calibration.pooled[:10])
            + (" ..." if len(calibration.pooled) > 10 else "")
        )
    save_pipeline(nlp, target, check)
    msg.good(f"Saved the calibrated pipeline to {target}")


def _fmt(key: str, value: float) -> str:
    return f"{100 * value:.2f}" if key.startswith("ece") else f"{value:.4f}"
