"""`find-thresholds`: per-label thresholds of a multi-label pipeline, tuned on dev data."""
from pathlib import Path
from typing import Any, Dict, Optional

from spacy.language import Language
from spacy.training import Example
from wasabi import msg

from ..errors import Errors
from ..data.records import read_labelled_docs
from ..evaluation.report import compute_report, gold_matrix, score_matrix
from ..decisions.thresholds import SOURCE_MARKERS, tune_with_fallback
from ._util import Arg, Classifier, Opt, app, load_pipeline, predict_docs, save_pipeline


@app.command("find-thresholds")
def find_thresholds_cli(
    # fmt: off
    model: Path = Arg(..., help="Path of a trained pipeline with a bertcat_multilabel component", exists=True, file_okay=False),
    data_path: Path = Arg(..., help="Dev data: .spacy, or .jsonl/.csv/.tsv with text and labels", exists=True),
    output_dir: Optional[Path] = Opt(None, "--output", "-o", help="Save the tuned pipeline here (default: overwrite MODEL in place)", file_okay=False),
    component: Optional[str] = Opt(None, "--component", "-C", help="The classifier to tune (default: the first that sets doc.cats)"),
    text_field: str = Opt("text", "--text-field", "-t", help="Text field of JSONL/CSV data"),
    label_field: Optional[str] = Opt(None, "--label-field", "-l", help="Label field of JSONL/CSV data (default: label, labels or cats)"),
    labels_sep: str = Opt("|", "--labels-sep", help="Separator of several labels in one CSV/TSV value"),
    min_support: Optional[int] = Opt(None, "--min-support", help="Positives a label needs in the data for a threshold of its own; rarer labels share one (default: the component's threshold_min_support)", min=1),
    batch_size: Optional[int] = Opt(None, "--batch-size", help="Docs per nlp.pipe batch (default: the pipeline's)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU ID or -1 for CPU"),
    # fmt: on
):
    """
    Tune one decision threshold per label of a multi-label classifier: for each
    label, the threshold that maximizes its F1 on the given (dev) data. Labels
    with fewer than --min-support positives there share one threshold, as in
    training (see the README's multi-label section). The thresholds are stored in
    the component (`pipe.set_thresholds`), saved with the pipeline, and used by
    its scorer and by `evaluate` and `predict`. spaCy's textcat_multilabel has a
    single global threshold; labels without a positive example in the data keep
    their threshold.
    """
    nlp = load_pipeline(str(model), gpu_id)
    try:
        result = find_thresholds(
            nlp, data_path, component=component, text_field=text_field, label_field=label_field,
            labels_sep=labels_sep, batch_size=batch_size, min_support=min_support,
        )
    except ValueError as e:
        msg.fail(str(e), exits=1)
    rows = []
    for label, info in result["labels"].items():
        if info["tuned"] is None:
            rows.append((label, f"{info['before']:.3f}", "-", f"{100 * info['f_before']:.2f}", "-", 0))
        else:
            marker = SOURCE_MARKERS[info["tuned"]["source"]]
            rows.append((label, f"{info['before']:.3f}", f"{info['tuned']['threshold']:.3f}{marker}",
                         f"{100 * info['f_before']:.2f}", f"{100 * info['tuned']['f']:.2f}", info["support"]))
    msg.table(rows, header=("label", "threshold", "tuned", "F before", "F tuned", "support"),
              aligns=("l", "r", "r", "r", "r", "r"))
    msg.info(f"Micro F1 {100 * result['micro_f_before']:.2f} -> {100 * result['micro_f_after']:.2f}, "
             f"macro F1 {100 * result['macro_f_before']:.2f} -> {100 * result['macro_f_after']:.2f} (on the tuning data)")
    for label in result["untuned"]:
        msg.warn(f"No positive example of '{label}' in {data_path}: its threshold stays {result['labels'][label]['before']:.3f}")
    # The pipeline's advertised scores (meta.json, `spacy package`) are those of the
    # tuned thresholds, on the tuning data, as spacy train's are on the dev data.
    performance = nlp.meta.setdefault("performance", {})
    performance.update({k: v for k, v in result["spacy_scores"].items() if k.startswith("cats_")})
    target = output_dir if output_dir is not None else model
    save_pipeline(nlp, target)
    msg.good(f"Saved the pipeline with tuned thresholds to {target}", f"meta.json's performance: the scores on {data_path}")


def find_thresholds(
    nlp: Language,
    data_path: Path,
    *,
    component: Optional[str] = None,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    batch_size: Optional[int] = None,
    min_support: Optional[int] = None,
) -> Dict[str, Any]:
    """Tune and set the per-label thresholds of a multi-label component (not saved).

    min_support (Optional[int]): Positives a label needs for a threshold of its own
        (default: the component's threshold_min_support, else 1).
    RETURNS (Dict[str, Any]): Per label the threshold before, the tuned one (None
        if the label had no positive example) with its F1 and source ("own",
        "global" or "prevalence"), its F1 before, and the micro/macro F1 on the
        data before and after.
    """
    classifier = Classifier(nlp, component)
    if classifier.exclusive:
        raise ValueError(Errors.BC034.format(name=classifier.name, factory=classifier.factory))
    if not hasattr(classifier.pipe, "use_tuned_thresholds"):
        detail = "it has no per-label thresholds (set_thresholds); use a bertcat_multilabel component"
        raise ValueError(Errors.BC042.format(setting="--component", value=classifier.name, detail=detail))
    docs = read_labelled_docs(
        data_path, nlp, labels=classifier.labels, text_field=text_field, label_field=label_field, labels_sep=labels_sep,
    )
    gold, mask = gold_matrix(docs, classifier.labels)
    if not mask.any():
        raise ValueError(Errors.BC040.format(path=data_path, labels=classifier.labels, task="tune"))
    predicted = predict_docs(nlp, [doc.text for doc in docs], batch_size, desc="Scoring", component=classifier.name)
    scores = score_matrix(predicted, classifier.labels)
    before = compute_report(classifier.labels, gold, scores, exclusive=False, mask=mask, thresholds=classifier.thresholds)
    cfg = classifier.pipe.cfg
    min_support = min_support or cfg.get("threshold_min_support") or 1
    tuned = tune_with_fallback(
        classifier.labels, gold, scores, mask, min_support=min_support, default=cfg["threshold"],
        prevalence=cfg.get("train_prevalence"),
    )
    # Labels without positives keep their current threshold (a tuned one too).
    untuned = [label for label in classifier.labels if not tuned.support[label]]
    classifier.pipe.use_tuned_thresholds(tuned, keep=untuned)
    thresholds = dict(classifier.pipe.thresholds)
    after = compute_report(classifier.labels, gold, scores, exclusive=False, mask=mask, thresholds=thresholds)
    spacy_scores = classifier.pipe.score([Example(pred, gold_doc) for pred, gold_doc in zip(predicted, docs)])
    return {
        "spacy_scores": spacy_scores,
        "component": classifier.name,
        "thresholds": thresholds,
        "untuned": untuned,
        "min_support": min_support,
        "labels": {
            label: {
                "before": classifier.thresholds[label],
                "tuned": None if label in untuned else {
                    "threshold": thresholds[label], "f": after["per_label"][label]["f"], "source": tuned.source(label),
                },
                "f_before": before["per_label"][label]["f"],
                "support": before["per_label"][label]["support"],
            }
            for label in classifier.labels
        },
        "micro_f_before": before["summary"]["micro_f"],
        "micro_f_after": after["summary"]["micro_f"],
        "macro_f_before": before["summary"]["macro_f"],
        "macro_f_after": after["summary"]["macro_f"],
    }
