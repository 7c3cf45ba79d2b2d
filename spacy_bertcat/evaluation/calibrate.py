"""Fitting a bertcat component's calibration on held-out data (the library behind
`spacy-bertcat calibrate`); the calibrators themselves are decisions/calibration.py."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy
from spacy.language import Language

from ..components.pipes import Classifier
from ..decisions.calibration import Calibration, fit_calibration
from ..errors import Errors
from .gold import read_gold


@dataclass
class CalibrationResult:
    """calibration (Calibration): What was fitted and stored. thresholds_before
    (Dict[str, float]): The multi-label thresholds before (on uncalibrated scores).
    notes (List[str]): What the user should know about the estimate."""

    calibration: Calibration
    thresholds_before: Dict[str, float]
    notes: List[str] = field(default_factory=list)


def calibrate_pipe(
    pipe: Any,
    docs: Sequence[Any],
    gold: numpy.ndarray,
    mask: numpy.ndarray,
    *,
    alphas: Sequence[float] = (0.1, 0.05),
    min_support: Optional[int] = None,
    method: str = "auto",
    allow_decision_changes: bool = False,
    folds: int = 5,
) -> CalibrationResult:
    """Fit a bertcat component's calibration on held-out docs and store it in the
    component (`pipe.set_calibration`; saved with the pipeline). Multi-label
    thresholds are mapped through the calibration, so decisions are unchanged.

    pipe (BertCat): The component (its current calibration, if any, is replaced).
    docs (Sequence[Doc]): The held-out docs (their text is read).
    gold, mask (numpy.ndarray): (docs, labels) gold values and where they are known.
    method (str): "auto" (exclusive classes: chosen by `folds`-fold
        cross-validation, see decisions/calibration_cv.py; multi-label: Platt
        scaling) or a method of decisions/calibration.py.
    allow_decision_changes (bool): Allow methods that can change a document's
        class (vector scaling, Dirichlet calibration).
    RETURNS (CalibrationResult): The calibration and the thresholds before.
    """
    logits, content = pipe.logits(docs)
    mask = numpy.asarray(mask, dtype="f") * content[:, None]
    thresholds_before = dict(pipe.uncalibrated_thresholds)
    min_support = min_support or pipe.cfg.get("threshold_min_support") or 5
    calibration = fit_calibration(
        pipe.labels,
        logits,
        gold,
        mask,
        exclusive=pipe.exclusive,
        name=pipe.name,
        alphas=alphas if pipe.exclusive else (),
        min_support=min_support,
        method=method,
        allow_decision_changes=allow_decision_changes,
        folds=folds,
    )
    pipe.set_calibration(calibration)
    return CalibrationResult(calibration, thresholds_before)


def calibrate(
    nlp: Language,
    data_path: Path,
    *,
    component: Optional[str] = None,
    alphas: Sequence[float] = (0.1, 0.05),
    min_support: Optional[int] = None,
    text_field: str = "text",
    label_field: Optional[str] = None,
    labels_sep: str = "|",
    method: str = "auto",
    allow_decision_changes: bool = False,
    folds: int = 5,
) -> Dict[str, Any]:
    """Fit and store a component's calibration (not saved; see calibrate_pipe).

    RETURNS (Dict[str, Any]): "component", "calibration" (Calibration) and
        "thresholds_before".
    """
    classifier = Classifier(nlp, component)
    if not hasattr(classifier.pipe, "set_calibration"):
        raise ValueError(Errors.BC059.format(name=classifier.name, factory=classifier.factory))
    docs, gold, mask = read_gold(
        nlp,
        classifier,
        data_path,
        task="calibrate",
        text_field=text_field,
        label_field=label_field,
        labels_sep=labels_sep,
    )
    result = calibrate_pipe(
        classifier.pipe,
        docs,
        gold,
        mask,
        alphas=list(alphas),
        min_support=min_support,
        method=method,
        allow_decision_changes=allow_decision_changes,
        folds=folds,
    )
    nlp.meta.setdefault("bertcat_calibration", {})[classifier.name] = {
        "method": result.calibration.method,
        "data": str(data_path),
        "n_docs": result.calibration.n_docs,
        "fitted": result.calibration.fitted,
    }
    return {
        "component": classifier.name,
        "calibration": result.calibration,
        "thresholds_before": result.thresholds_before,
    }
