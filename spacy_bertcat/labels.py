"""Several text classifiers in one pipeline: whose labels are whose.

spaCy's text classifiers all write ``doc.cats``. bertcat keeps that contract and adds:

- ``doc._.bertcat_cats``: ``{component name: {label: score}}``, so each bertcat
  component's scores stay reachable when two components predict a label of the
  same name (``doc.cats`` then holds the one that ran last);
- ``doc._.bertcat_labels``: ``{component name: [labels]}``, each component's
  decision: the top class (``bertcat``), or the labels at or above their
  thresholds (``bertcat_multilabel``), so code that reads ``doc.cats`` need not
  know the thresholds;
- in training, gold labels that belong to another text classifier of the pipeline
  (or that the training data had at initialize outside the component's explicit
  labels) are ignored, as spaCy's textcat ignores them; a label nobody predicts is
  still an error;
- a warning at initialize when two components of a pipeline share labels.

A calibrated component (see calibration.py) also writes
``doc._.bertcat_uncalibrated_cats`` (its scores before calibration) and, for
exclusive classes calibrated with conformal alphas, ``doc._.bertcat_sets`` (its
prediction set: the labels that contain the true one with the guaranteed
probability), each ``{component name: ...}``.
"""
import warnings
import weakref
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from spacy.language import Language
from spacy.tokens import Doc

from .errors import Warnings

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import BertCat

EXTENSION = "bertcat_cats"
DECISIONS = "bertcat_labels"
UNCALIBRATED = "bertcat_uncalibrated_cats"
SETS = "bertcat_sets"
for _name in (EXTENSION, DECISIONS, UNCALIBRATED, SETS):
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=None)


# The pipeline each component was initialized in, without a reference from the
# component (which would neither pickle nor let the pipeline be collected).
_pipelines: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def remember_pipeline(pipe: "BertCat", nlp: Language) -> None:
    _pipelines[pipe] = weakref.ref(nlp)


def pipeline_of(pipe: "BertCat") -> Optional[Language]:
    ref = _pipelines.get(pipe)
    return ref() if ref is not None else None


def set_component_cats(doc: Doc, component: str, cats: Dict[str, float], decided: List[str]) -> None:
    """Record a component's scores in doc._.bertcat_cats and its decision in
    doc._.bertcat_labels."""
    set_component_value(doc, EXTENSION, component, cats)
    set_component_value(doc, DECISIONS, component, decided)


def set_component_value(doc: Doc, extension: str, component: str, value: Any) -> None:
    """Set doc._.<extension>[component] = value."""
    by_component = doc._.get(extension)
    if by_component is None:
        by_component = {}
        doc._.set(extension, by_component)
    by_component[component] = value


def component_cats(doc: Doc, component: str) -> Dict[str, float]:
    """RETURNS (Dict[str, float]): The component's own scores of the doc (its record
    in doc._.bertcat_cats), or doc.cats where it has none."""
    own = (doc._.get(EXTENSION) or {}).get(component)
    return own if own is not None else doc.cats


def uncalibrated_cats(doc: Doc, component: str) -> Dict[str, float]:
    """RETURNS (Dict[str, float]): The component's scores of the doc before
    calibration (its own scores where it is not calibrated)."""
    own = (doc._.get(UNCALIBRATED) or {}).get(component)
    return own if own is not None else component_cats(doc, component)


def cats_components(nlp: Language) -> Dict[str, object]:
    """RETURNS (Dict[str, object]): The components that assign doc.cats, by name
    (disabled ones included)."""
    return {name: pipe for name, pipe in nlp.components if "doc.cats" in nlp.get_pipe_meta(name).assigns}


def other_classifier_labels(pipe: "BertCat") -> Set[str]:
    """RETURNS (Set[str]): The labels other text classifiers of the pipe's pipeline
    predict and it does not (empty when the pipe was not initialized in one)."""
    nlp = pipeline_of(pipe)
    if nlp is None:
        return set()
    labels: Set[str] = set()
    for name, other in cats_components(nlp).items():
        if other is not pipe:
            labels.update(getattr(other, "labels", ()))
    return labels - set(pipe.labels)


def warn_shared_labels(nlp: Language, pipe: "BertCat") -> None:
    """Warn when another text classifier of the pipeline predicts some of the
    pipe's labels (both write them to doc.cats)."""
    for name, other in cats_components(nlp).items():
        if other is pipe:
            continue
        shared = sorted(set(getattr(other, "labels", ())) & set(pipe.labels))
        if shared:
            warnings.warn(Warnings.BCW009.format(name=pipe.name, other=name, labels=shared))
