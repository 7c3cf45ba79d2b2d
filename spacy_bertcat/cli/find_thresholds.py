"""`find-thresholds`: per-label thresholds of a multi-label pipeline, tuned on dev data."""

import functools
from pathlib import Path
from typing import Optional

from wasabi import msg

from ..decisions.thresholds import SOURCE_MARKERS
from ..evaluation.thresholds import find_thresholds
from ._util import Arg, Opt, app, load_pipeline, pipeline_output, progress, run_check, save_pipeline


@app.command("find-thresholds")
def find_thresholds_cli(
    # fmt: off
    model: Path = Arg(
        ..., help="Path of a trained pipeline with a bertcat_multilabel component", exists=True, file_okay=False
    ),
    data_path: Path = Arg(..., help="Dev data: .spacy, or .jsonl/.csv/.tsv with text and labels", exists=True),
    output_dir: Optional[Path] = Opt(
        None,
        "--output",
        "-o",
        help="Save the tuned pipeline here: a new or empty folder (default: replace MODEL by its tuned copy)",
        file_okay=False,
    ),
    component: Optional[str] = Opt(
        None, "--component", "-C", help="The classifier to tune (default: the first that sets doc.cats)"
    ),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field of JSONL/CSV data"),
    label_field: Optional[str] = Opt(
        None, "--label-field", "-l", help="Label field of JSONL/CSV data (default: label, labels or cats)"
    ),
    labels_sep: str = Opt("|", "--labels-sep", help="Separator of several labels in one CSV/TSV value"),
    min_support: Optional[int] = Opt(
        None,
        "--min-support",
        help="Positives a label needs in the data for a threshold of its own; rarer labels share one (default: the component's threshold_min_support)",
        min=1,
    ),
    batch_size: Optional[int] = Opt(None, "--batch-size", help="Docs per nlp.pipe batch (default: the pipeline's)"),
    replace: bool = Opt(
        False,
        "--replace",
        help="Replace OUTPUT if it is a pipeline saved before (by an earlier run, say): only a folder that holds nothing but a saved pipeline's files is replaced, any other folder is refused",
    ),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    # fmt: on
):
    """
    Tune one decision threshold per label of a multi-label classifier: for each
    label, the threshold that maximizes its F1 on the given (dev) data. Labels
    with fewer than --min-support positives there share one threshold, as in
    training (see docs/guides/multilabel.md). The thresholds are stored in
    the component (`pipe.set_thresholds`), saved with the pipeline, and used by
    its scorer and by `evaluate` and `predict`. spaCy's textcat_multilabel has a
    single global threshold; labels without a positive example in the data keep
    their threshold.
    """
    target = output_dir if output_dir is not None else model
    output_check = functools.partial(
        pipeline_output,
        output=target,
        model=model,
        data=[data_path],
        command="find-thresholds --output",
        in_place=True,
        replace=replace,
    )
    run_check(output_check(None))  # before the pipeline loads
    nlp = load_pipeline(str(model), gpu_id)
    check = output_check(nlp)
    run_check(check)
    try:
        result = find_thresholds(
            nlp,
            data_path,
            component=component,
            text_field=text_field,
            label_field=label_field,
            labels_sep=labels_sep,
            batch_size=batch_size,
            min_support=min_support,
            progress=lambda docs, total: progress(docs, total=total, desc="Scoring"),
        )
    except ValueError as e:
        msg.fail(str(e), exits=1)
    rows = []
    for label, info in result["labels"].items():
        if info["tuned"] is None:
            rows.append((label, f"{info['before']:.3f}", "-", f"{100 * info['f_before']:.2f}", "-", 0))
        else:
            marker = SOURCE_MARKERS[info["tuned"]["source"]]
            rows.append(
                (
                    label,
                    f"{info['before']:.3f}",
                    f"{info['tuned']['threshold']:.3f}{marker}",
                    f"{100 * info['f_before']:.2f}",
                    f"{100 * info['tuned']['f']:.2f}",
                    info["support"],
                )
            )
    msg.table(
        rows,
        header=("label", "threshold", "tuned", "F before", "F tuned", "support"),
        aligns=("l", "r", "r", "r", "r", "r"),
    )
    msg.info(
        f"Micro F1 {100 * result['micro_f_before']:.2f} -> {100 * result['micro_f_after']:.2f}, "
        f"macro F1 {100 * result['macro_f_before']:.2f} -> {100 * result['macro_f_after']:.2f} (on the tuning data)"
    )
    for label in result["untuned"]:
        msg.warn(
            f"No positive example of '{label}' in {data_path}: its threshold stays {result['labels'][label]['before']:.3f}"
        )
    # The pipeline's advertised scores (meta.json, `spacy package`) are those of the
    # tuned thresholds, on the tuning data, as spacy train's are on the dev data.
    performance = nlp.meta.setdefault("performance", {})
    performance.update({k: v for k, v in result["spacy_scores"].items() if k.startswith("cats_")})
    save_pipeline(nlp, target, check)
    msg.good(
        f"Saved the pipeline with tuned thresholds to {target}", f"meta.json's performance: the scores on {data_path}"
    )
