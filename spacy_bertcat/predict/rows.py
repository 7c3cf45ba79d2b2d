"""Prediction rows: what `spacy-bertcat predict` and spacy_bertcat.predict.ray write for a text.

One implementation of the output contract, shared by local prediction (local.py, the
JSONL command) and Ray Data batch prediction (ray.py), so a row means the same thing
whichever engine wrote it:

- ``cats``: the classifier's score of each of its labels;
- ``predicted_label`` (exclusive classes: the highest score; None for empty text) or
  ``predicted_labels`` (multi-label: the labels at or above their threshold; none for
  empty text);
- ``prediction_set`` where the component is calibrated with conformal prediction
  sets (see decisions/calibration.py);
- ``error`` instead of all of these for a record whose text cannot be classified (it
  is missing or not a string): such a row keeps its place, nothing stops the run.

Only the chosen classifier runs (``components.pipes.only_component``): the other
components that write ``doc.cats`` are disabled, so ``doc.cats`` holds exactly its
scores.
"""

from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, TypeVar, Union

from spacy.language import Language
from spacy.tokens import Doc

from ..components.extensions import DECISIONS, SETS
from ..components.pipes import Classifier, only_component
from ..data.records import InvalidRow
from ..data.text import has_content

C = TypeVar("C")
# The fields a prediction adds to a row.
PREDICTION_FIELDS = ("cats", "predicted_label", "predicted_labels", "prediction_set", "error")
# The fields each engine's rows carry besides the input's: where the record was
# (local: its line; Ray over files: its file and its line or Parquet row) and the
# prediction. An input field of one of these names would be overwritten or taken
# for a prediction, so the engines refuse it (BC083), or move it to
# input_<name> where asked (reserved_clashes, renamed_field).
RESERVED_FIELDS: Dict[str, Tuple[str, ...]] = {
    "local": ("line",) + PREDICTION_FIELDS,
    "ray": ("source", "line", "row") + PREDICTION_FIELDS,
}
RENAMED_PREFIX = "input_"


def renamed_field(name: str) -> str:
    """RETURNS (str): The output name of an input field named like a reserved field,
    where renaming is asked for (--rename-fields)."""
    return RENAMED_PREFIX + name


def reserved_clashes(fields: Iterable[str], engine: str = "local") -> List[str]:
    """RETURNS (List[str]): The input fields named like a field the engine's rows
    add (RESERVED_FIELDS), in the order of RESERVED_FIELDS."""
    fields = set(fields)
    return [name for name in RESERVED_FIELDS[engine] if name in fields]


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
    empty = not has_content(doc)
    cats = {label: doc.cats[label] for label in classifier.labels if label in doc.cats}
    out: Dict[str, Any] = {"cats": cats}
    # A bertcat component's own decision (doc._.bertcat_labels) is exact where a
    # calibration maps neighbouring scores onto one value; other classifiers are
    # decided from doc.cats, as spaCy decides them.
    decided = (doc._.get(DECISIONS) or {}).get(classifier.name) if classifier.is_bertcat else None
    if classifier.exclusive:
        if decided is not None:
            out["predicted_label"] = decided[0] if decided and not empty else None
        else:
            out["predicted_label"] = None if empty or not cats else max(cats, key=cats.get)  # type: ignore[arg-type]
    elif decided is not None:
        out["predicted_labels"] = [] if empty else list(decided)
    else:
        out["predicted_labels"] = (
            [] if empty else [label for label, score in cats.items() if score >= classifier.thresholds[label]]
        )
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
    nlp: Language,
    classifier: Classifier,
    values: List[Any],
    *,
    text_field: str = "text",
    errors: Optional[List[Optional[str]]] = None,
    batch_size: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """RETURNS (List[Dict[str, Any]]): The prediction fields of each value (see
    predict_records), for a list; `errors` marks values already known to be
    unreadable."""
    records = ((value, errors[i] if errors is not None else None, None) for i, value in enumerate(values))
    return [
        fields for fields, _ in predict_records(nlp, classifier, records, text_field=text_field, batch_size=batch_size)
    ]
