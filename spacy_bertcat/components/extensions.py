"""The ``doc._`` extensions bertcat components write, and their readers.

spaCy's text classifiers all write ``doc.cats``. bertcat keeps that contract and adds:

- ``doc._.bertcat_cats``: ``{component name: {label: score}}``, so each bertcat
  component's scores stay reachable when two components predict a label of the
  same name (``doc.cats`` then holds the one that ran last);
- ``doc._.bertcat_labels``: ``{component name: [labels]}``, each component's
  decision: the top class (``bertcat``), or the labels at or above their
  thresholds (``bertcat_multilabel``), so code that reads ``doc.cats`` need not
  know the thresholds.

A calibrated component (see decisions/calibration.py) also writes
``doc._.bertcat_uncalibrated_cats`` (its scores before calibration) and, for
exclusive classes calibrated with conformal alphas, ``doc._.bertcat_sets`` (its
prediction set: the labels that contain the true one with the guaranteed
probability), each ``{component name: ...}``.

An explained doc (``pipe.explain(doc)``, see spacy_bertcat/explain/) carries
``doc._.bertcat_attributions``: ``{component name: {label: [one float per token]}}``
and ``doc._.bertcat_explanations``: ``{component name: {label: {what was explained:
method, score, calibrated, windows, ...}}}``.
"""

from typing import Any, Dict, List

from spacy.tokens import Doc

EXTENSION = "bertcat_cats"
DECISIONS = "bertcat_labels"
UNCALIBRATED = "bertcat_uncalibrated_cats"
SETS = "bertcat_sets"
ATTRIBUTIONS = "bertcat_attributions"
EXPLANATIONS = "bertcat_explanations"
for _name in (EXTENSION, DECISIONS, UNCALIBRATED, SETS, ATTRIBUTIONS, EXPLANATIONS):
    if not Doc.has_extension(_name):
        Doc.set_extension(_name, default=None)


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
