"""The evaluation report of a pipeline's text classifier on gold data (the library
behind `spacy-bertcat evaluate`): predict, compute the report (report.py), and
write it as markdown + JSON + PNG pictures."""

from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Optional, cast

import numpy
import srsly
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example

from ..components.extensions import uncalibrated_cats
from ..components.pipes import Classifier, classify_texts
from ..data.atomic import atomic_write, check_output_folder
from ..data.records import META_KEY
from ..decisions.calibration import conformal_report
from ..errors import Errors
from ..explain.files import errors_page, explain_errors
from .gold import read_gold
from .markdown import to_markdown
from .report import compute_report, score_matrix


def evaluate(
    nlp: Language,
    data_path: Path,
    *,
    component: Optional[str] = None,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    batch_size: Optional[int] = None,
    n_errors: int = 20,
    n_explained: int = 10,
    progress: Optional[Callable[[Iterator[Doc], int], Iterable[Doc]]] = None,
) -> Dict[str, Any]:
    """Predict on gold data and compute the report (see report.compute_report),
    plus the component's spaCy scores under "spacy_scores" and, for a bertcat
    component, token attributions of its first `n_explained` most confident
    errors under "explanations" (explain/files.py explain_errors).

    RETURNS (Dict[str, Any]): The report.
    """
    classifier = Classifier(nlp, component)
    gold_docs, gold, mask = read_gold(
        nlp,
        classifier,
        data_path,
        task="evaluate",
        text_field=text_field,
        label_field=label_field,
        labels_sep=labels_sep,
        refuse_unknown_labels=True,
    )
    texts = [doc.text for doc in gold_docs]
    wrap = (lambda docs: progress(docs, len(texts))) if progress is not None else None
    pred_docs = classify_texts(nlp, classifier.name, texts, batch_size=batch_size, progress=wrap)
    scores = score_matrix(pred_docs, classifier.labels)
    calibration = classifier.pipe.decisions.calibration if classifier.is_bertcat else None
    raw = None
    if calibration is not None:
        raw = numpy.asarray(
            [[uncalibrated_cats(doc, classifier.name)[label] for label in classifier.labels] for doc in pred_docs],
            dtype="f",
        ).reshape(scores.shape)
    ids = [doc.user_data.get(META_KEY, {}).get("id", i) for i, doc in enumerate(gold_docs)]
    report = compute_report(
        classifier.labels,
        gold,
        scores,
        exclusive=classifier.exclusive,
        mask=mask,
        thresholds=classifier.thresholds,
        texts=texts,
        ids=ids,
        n_errors=n_errors,
        uncalibrated_scores=raw,
    )
    if calibration is not None:
        report["calibration"].update(
            method=calibration.method, description=calibration.describe(), fitted=calibration.fitted
        )
        if calibration.alphas:
            report["conformal"] = conformal_report(calibration, gold, cast(numpy.ndarray, raw), mask)
    examples = [Example(pred, ref) for pred, ref in zip(pred_docs, gold_docs)]
    report["spacy_scores"] = classifier.pipe.score(examples)
    report["component"] = classifier.name
    if n_explained and classifier.is_bertcat:
        report["explanations"] = explain_errors(nlp, classifier.name, report["errors"], texts, n=n_explained)
    decisions = classifier.pipe.decisions if classifier.is_bertcat else None
    report["thresholds_fallback"] = decisions.fallback if decisions is not None else []
    report["thresholds_by_prevalence"] = decisions.by_prevalence if decisions is not None else []
    return report


def write_report(
    report: Dict[str, Any],
    output_dir: Path,
    *,
    title: str,
    baseline: Optional[Dict[str, Any]] = None,
    plots: bool = True,
    context: Optional[Dict[str, Any]] = None,
) -> list:
    """Write report.json, report.md, (with plots) the three PNGs and (where the
    report has explanations) explanations.html into
    `output_dir`: a new or empty folder, or one that holds only an earlier report
    (REPORT_FILES), whose files are replaced (check_report_folder).

    RETURNS (list): The paths written.
    """
    output_dir = Path(output_dir)
    check_report_folder(output_dir)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(Errors.BC089.format(path=output_dir, reason=e.strerror or e)) from e
    images: Dict[str, str] = {}
    paths = []
    if plots:
        from ..evaluation.plots import plot_confusion, plot_pr_curves, plot_reliability

        paths.append(plot_confusion(report, output_dir / "confusion_matrix.png"))
        paths.append(plot_pr_curves(report, output_dir / "pr_curves.png"))
        paths.append(plot_reliability(report, output_dir / "reliability.png"))
        images = {"confusion": "confusion_matrix.png", "pr_curves": "pr_curves.png", "reliability": "reliability.png"}
    if (report.get("explanations") or {}).get("items"):
        page = errors_page(report["explanations"], title=f"{title}: the most confident errors explained")
        try:
            atomic_write(output_dir / "explanations.html", page.encode("utf-8"))
        except OSError as e:
            raise ValueError(Errors.BC089.format(path=output_dir, reason=e.strerror or e)) from e
        images["explanations"] = "explanations.html"
        paths.append(output_dir / "explanations.html")
    data = dict(report)
    if baseline is not None:
        data["baseline"] = baseline
    markdown = to_markdown(report, title=title, images=images, baseline=baseline, context=context)
    try:
        atomic_write(output_dir / "report.json", srsly.json_dumps(data, indent=2).encode("utf-8"))
        atomic_write(output_dir / "report.md", markdown.encode("utf-8"))
    except OSError as e:
        raise ValueError(Errors.BC089.format(path=output_dir, reason=e.strerror or e)) from e
    return [output_dir / "report.md", output_dir / "report.json"] + paths


# The files of a report: an output folder that holds nothing else may be written
# again (its files are replaced), one that holds anything else is refused.
REPORT_FILES = (
    "report.md",
    "report.json",
    "confusion_matrix.png",
    "pr_curves.png",
    "reliability.png",
    "explanations.html",
)


def check_report_folder(output_dir: Path, inputs: Iterable[Any] = ()) -> None:
    """Check a report's output folder before anything is computed or written: new,
    empty or holding only an earlier report (REPORT_FILES), and neither an input
    nor inside or around one (data/atomic.check_output_folder)."""
    check_output_folder(output_dir, inputs=inputs, may_hold=REPORT_FILES, command="evaluate --output")
