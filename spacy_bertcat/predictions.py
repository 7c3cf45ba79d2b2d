"""Prediction rows: what `spacy-bertcat predict` and spacy_bertcat.ray write for a text.

One implementation of the output contract, shared by the JSONL command (cli/predict.py)
and Ray Data batch prediction (ray.py), so a row means the same thing whichever engine
wrote it:

- ``cats``: the classifier's score of each of its labels;
- ``predicted_label`` (exclusive classes: the highest score; None for empty text) or
  ``predicted_labels`` (multi-label: the labels at or above their threshold; none for
  empty text);
- ``prediction_set`` where the component is calibrated with conformal prediction
  sets (see calibration.py);
- ``error`` instead of all of these for a record whose text cannot be classified (it
  is missing or not a string): such a row keeps its place, nothing stops the run.

Only the chosen classifier runs (``only_component``): the other components that write
``doc.cats`` are disabled, so ``doc.cats`` holds exactly its scores, and no time is
spent on classifiers whose results would be dropped.
"""
import contextlib
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar, Union

from spacy.language import Language
from spacy.tokens import Doc

from .data import InvalidRow
from .errors import Errors
from .labels import SETS

C = TypeVar("C")
# The fields a prediction adds to a row (an input field of the same name is replaced).
PREDICTION_FIELDS = ("cats", "predicted_label", "predicted_labels", "prediction_set", "error")


class Classifier:
    """What prediction and the commands need to know about a pipeline's text
    classifier.

    name (str): The component's name.
    factory (str): Its factory.
    labels (List[str]): Its labels.
    exclusive (bool): Exclusive classes (softmax-like) or multi-label.
    thresholds (Dict[str, float]): Per-label decision thresholds (multi-label).
    has_sets (bool): Whether its docs carry conformal prediction sets (a bertcat
        component calibrated with alphas).
    """

    def __init__(self, nlp: Language, name: Optional[str] = None) -> None:
        if name is None:
            names = [n for n in nlp.pipe_names if "doc.cats" in nlp.get_pipe_meta(n).assigns]
            if not names:
                raise ValueError(Errors.BC033.format(detail=" (none assigns doc.cats)", names=nlp.pipe_names))
            name = names[0]
        if name not in nlp.pipe_names:
            raise ValueError(Errors.BC033.format(detail=f" named '{name}'", names=nlp.pipe_names))
        self.name = name
        self.pipe = nlp.get_pipe(name)
        self.factory = nlp.get_pipe_meta(name).factory
        self.labels = list(getattr(self.pipe, "labels", ()))
        exclusive = getattr(self.pipe, "exclusive", None)
        self.exclusive = bool(exclusive) if exclusive is not None else "multilabel" not in self.factory
        if hasattr(self.pipe, "thresholds"):
            self.thresholds: Dict[str, float] = dict(self.pipe.thresholds)
        else:
            default = getattr(self.pipe, "cfg", {}).get("threshold", 0.5)
            self.thresholds = {label: default for label in self.labels}
        calibration = getattr(self.pipe, "calibration", None)
        self.has_sets = bool(self.exclusive and calibration is not None and calibration.alphas)


@contextlib.contextmanager
def only_component(nlp: Language, name: str) -> Iterator[None]:
    """Run the pipeline without the other components that write doc.cats, so
    doc.cats holds exactly the named classifier's scores (two classifiers may
    predict labels of the same name)."""
    others = [n for n in nlp.pipe_names if n != name and "doc.cats" in nlp.get_pipe_meta(n).assigns]
    with nlp.select_pipes(disable=others) if others else contextlib.nullcontext():
        yield


def text_problem(value: Any, text_field: str, fields: Optional[Iterable[str]] = None) -> Optional[str]:
    """Why a record's text value cannot be classified.

    value (Any): The value of the text field.
    text_field (str): The field's name.
    fields (Optional[Iterable[str]]): The record's fields, where the text field is
        missing from them (None: it is there).
    RETURNS (Optional[str]): The problem, or None for a string.
    """
    if fields is not None:
        return f"the text field '{text_field}' is missing (fields: {sorted(fields)})"
    if not isinstance(value, str):
        return f"the text field '{text_field}' must be a string, got {value!r}"
    return None


def record_problem(row: Union[Dict[str, Any], InvalidRow], text_field: str) -> Optional[str]:
    """RETURNS (Optional[str]): Why a record read from a file (data.read_rows)
    cannot be classified: it could not be read, it has no text field, or its text
    is not a string; None if it can."""
    if isinstance(row, InvalidRow):
        return row.problem
    if text_field not in row:
        return text_problem(None, text_field, row)
    return text_problem(row[text_field], text_field)


def prediction_fields(classifier: Classifier, doc: Doc) -> Dict[str, Any]:
    """The prediction of one doc the classifier has annotated.

    classifier (Classifier): The classifier that ran.
    doc (Doc): The doc.
    RETURNS (Dict[str, Any]): cats, predicted_label or predicted_labels, and
        prediction_set where the doc has one (see the module docstring).
    """
    empty = not doc.text.strip()
    cats = {label: doc.cats[label] for label in classifier.labels if label in doc.cats}
    out: Dict[str, Any] = {"cats": cats}
    if classifier.exclusive:
        out["predicted_label"] = None if empty or not cats else max(cats, key=cats.get)
    else:
        out["predicted_labels"] = [] if empty else [
            label for label, score in cats.items() if score >= classifier.thresholds[label]
        ]
    prediction_set = (doc._.get(SETS) or {}).get(classifier.name)
    if prediction_set is not None:
        out["prediction_set"] = prediction_set
    return out


def predict_records(
    nlp: Language,
    classifier: Classifier,
    records: Iterable[Tuple[Any, Optional[str], C]],
    *,
    text_field: str = "text",
    batch_size: Optional[int] = None,
) -> Iterator[Tuple[Dict[str, Any], C]]:
    """Classify a stream of records with the classifier alone, in order, one result
    per record.

    nlp (Language): The pipeline.
    classifier (Classifier): Its classifier to run (the other classifiers don't).
    records (Iterable[Tuple[Any, Optional[str], C]]): Each record's text value, why
        it cannot be read (None if it can) and a context passed through.
    text_field (str): The text field's name, for the error of a text that is not a
        string.
    batch_size (Optional[int]): Docs per nlp.pipe batch (default: the pipeline's).
    YIELDS (Tuple[Dict[str, Any], C]): The prediction fields of each record
        (prediction_fields, or {"error": why} for a record that cannot be
        classified) and its context.
    """

    def texts() -> Iterator[Tuple[str, Tuple[Optional[str], C]]]:
        for value, error, context in records:
            if error is None:
                error = text_problem(value, text_field)
            yield (value if error is None else ""), (error, context)

    with only_component(nlp, classifier.name):
        docs = nlp.pipe(texts(), as_tuples=True, batch_size=batch_size or nlp.batch_size)
        for doc, (error, context) in docs:
            yield ({"error": error} if error is not None else prediction_fields(classifier, doc)), context


def predict_texts(
    nlp: Language, classifier: Classifier, values: List[Any], *, text_field: str = "text",
    errors: Optional[List[Optional[str]]] = None, batch_size: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """RETURNS (List[Dict[str, Any]]): The prediction fields of each value (see
    predict_records), for a list; `errors` marks values already known to be
    unreadable."""
    records = ((value, errors[i] if errors is not None else None, None) for i, value in enumerate(values))
    return [fields for fields, _ in predict_records(nlp, classifier, records, text_field=text_field, batch_size=batch_size)]
