"""How a text classifier component decides: its per-label thresholds, the
calibration that maps its scores (and the thresholds with them, so that no decision
changes), conformal prediction sets, and `calibrate_on_dev` (a calibration fitted
on the dev data at each evaluation of `spacy train`).

``Deciding`` is a mixin of ``BertCat`` (and so of ``BertCatMultilabel``); the state it
reads and writes lives in the component's ``DecisionState`` (decision_state.py).
"""

import logging
import warnings
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Tuple, cast

import numpy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model
from thinc.types import Floats2d

from ..data.text import has_content
from ..decisions.calibration import Calibration, fit_calibration, least_float32_input
from ..errors import Errors, Warnings
from .decision_state import DecisionState
from .extensions import uncalibrated_cats

logger = logging.getLogger("spacy.bertcat")


class Deciding:
    """Thresholds, calibration and prediction sets of a classifier component."""

    if TYPE_CHECKING:  # what the component provides (BertCat)
        name: str
        cfg: Dict[str, Any]
        model: Model
        exclusive: bool
        _warned_dev_calibration: bool
        _calibrated_in_training: bool

        @property
        def decisions(self) -> DecisionState: ...

        @property
        def labels(self) -> tuple: ...

        def _activation(self, logits: Floats2d) -> Floats2d: ...

        def _truth(self, examples: Iterable[Example], skipped: Optional[List[int]] = None) -> Tuple[Any, Any]: ...

    @property
    def thresholds(self) -> Dict[str, float]:
        """RETURNS (Dict[str, float]): The decision threshold of each label: tuned
        per-label values where set (and `threshold` is still the value they were
        tuned under), else the component's `threshold`."""
        return self.decisions.thresholds(self.labels)

    def set_thresholds(self, thresholds: Dict[str, float]) -> None:
        """Store per-label thresholds (used by the scorer, saved with the pipeline).
        They hold while `threshold` keeps its current value: setting another global
        threshold (as `spacy find-threshold` does) sets them aside."""
        self._check_thresholds(thresholds)
        self.decisions.set_thresholds(thresholds)

    def _check_thresholds(self, thresholds: Dict[str, float]) -> None:
        bad = {k: v for k, v in thresholds.items() if k not in self.labels or not 0.0 < v < 1.0}
        if bad:
            raise ValueError(
                Errors.BC018.format(name=self.name, detail=f"invalid entries {bad} for labels {list(self.labels)}")
            )

    @property
    def calibration(self) -> Optional[Calibration]:
        """RETURNS (Optional[Calibration]): The fitted calibration that doc.cats
        goes through, or None (see decisions/calibration.py and `spacy-bertcat calibrate`)."""
        return self.decisions.calibration

    def set_calibration(self, calibration: Optional[Calibration]) -> None:
        """Store a calibration (None removes it). Per-label thresholds are mapped to
        the new scores, so every decision stays what it was."""
        if calibration is not None and list(calibration.labels) != list(self.labels):
            raise ValueError(
                Errors.BC018.format(
                    name=self.name, detail=f"a calibration for the labels {calibration.labels}, not {list(self.labels)}"
                )
            )
        raw_thresholds = self.uncalibrated_thresholds
        self.decisions.calibration = calibration
        if not self.exclusive:
            if calibration is None:
                self._set_mapped_thresholds(raw_thresholds, None)
            else:
                self._set_mapped_thresholds(self._calibrated_thresholds(calibration, raw_thresholds), raw_thresholds)

    def _calibrated_thresholds(self, calibration: Calibration, raw: Dict[str, float]) -> Dict[str, float]:
        """RETURNS (Dict[str, float]): Thresholds on the model's own scores mapped
        through the calibration along the float32 path the scores take (the
        model's ops): each becomes the calibrated score of the least float32 logit
        whose score reaches it. A score at or above its threshold comes from a
        logit at or above that one, so its calibrated score is at or above the
        mapped threshold (both maps are monotone): `doc.cats[label] >=
        pipe.thresholds[label]` holds wherever the label is decided."""
        ops = self.model.ops
        targets = numpy.asarray([raw[label] for label in self.labels], dtype="f8")

        def scores(x: numpy.ndarray, calibrated: bool) -> numpy.ndarray:
            logits = ops.asarray2f(cast(Floats2d, x))
            if calibrated:
                logits = calibration.apply(ops.xp, logits)
            return numpy.asarray(ops.to_numpy(self._activation(logits)), dtype="f8")

        with numpy.errstate(all="ignore"):
            x = least_float32_input(lambda z: scores(z, False), targets)
            mapped = scores(x[None], True)[0]
        return {label: float(t) for label, t in zip(self.labels, mapped)}

    def _set_mapped_thresholds(self, thresholds: Dict[str, float], uncalibrated: Optional[Dict[str, float]]) -> None:
        """Store thresholds mapped through a calibration (or back from one): the
        same thresholds on other scores, so each keeps its source, and (mapped
        onto a calibration's scores) the thresholds they came from, which decide."""
        mapped = {label: min(max(t, 1e-6), 1 - 1e-6) for label, t in thresholds.items()}
        decisions = self.decisions
        if mapped == self.thresholds and not uncalibrated and not decisions.uncalibrated:
            return  # nothing to store: the sources stay as they are
        self._check_thresholds(mapped)
        decisions.set_thresholds(
            mapped, fallback=decisions.fallback, by_prevalence=decisions.by_prevalence, uncalibrated=uncalibrated
        )

    @property
    def uncalibrated_thresholds(self) -> Dict[str, float]:
        """RETURNS (Dict[str, float]): The thresholds on the model's uncalibrated
        scores (`thresholds` where the component is not calibrated): those a
        calibration's thresholds were mapped from, exactly, else mapped back."""
        calibration = self.calibration
        if calibration is None:
            return self.thresholds
        kept = self.decisions.uncalibrated
        return {
            label: kept[label] if label in kept else calibration.uncalibrate_threshold(label, t)
            for label, t in self.thresholds.items()
        }

    def prediction_set(self, doc: Doc, alpha: Optional[float] = None) -> List[str]:
        """RETURNS (List[str]): The doc's prediction set at `alpha` (one the
        component was calibrated for; default: the first, as in
        doc._.bertcat_sets), highest score first. The doc must have been processed
        by this component."""
        calibration = self.calibration
        if calibration is None or not calibration.alphas:
            raise ValueError(
                Errors.BC058.format(what="prediction sets", detail="it is not calibrated with conformal alphas")
            )
        if not has_content(doc):
            return []
        raw = uncalibrated_cats(doc, self.name)
        row = numpy.asarray([[raw[label] for label in self.labels]], dtype="f8")
        keep = calibration.prediction_sets(row, alpha)[0]
        cats = dict(zip(self.labels, row[0]))
        return sorted([label for label, k in zip(self.labels, keep) if k], key=cats.get, reverse=True)  # type: ignore[arg-type]

    def _calibrate_on_dev(self, examples: List[Example]) -> None:
        """Fit the `calibrate_on_dev` calibration on the examples' predicted docs
        (their uncalibrated scores: the logits up to a constant per doc) and
        store it, so the model-best that `spacy train` saves next carries it.
        Too few documents: a log message, no calibration."""
        gold, mask = self._truth(examples)
        docs = [eg.predicted for eg in examples]
        content = numpy.asarray([has_content(doc) for doc in docs], dtype=bool)
        raw = numpy.asarray(
            [[uncalibrated_cats(doc, self.name).get(label, 0.0) for label in self.labels] for doc in docs], dtype="f8"
        ).reshape(len(docs), len(self.labels))
        logits = numpy.log(numpy.clip(raw, 1e-30, 1.0))
        if not self._warned_dev_calibration:
            warnings.warn(Warnings.BCW055.format(name=self.name))
            self._warned_dev_calibration = True
        calibration, reason = None, ""
        for alphas in ((0.1, 0.05), ()):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # few docs or absent classes: the log line says how many
                    calibration = fit_calibration(
                        self.labels,
                        logits,
                        gold,
                        mask * content[:, None],
                        exclusive=True,
                        name=self.name,
                        alphas=alphas,
                        method=self.cfg["calibrate_on_dev"],
                    )
                break
            except ValueError as e:
                reason = str(e)
        if calibration is None:
            logger.warning(f"{self.name}: not calibrated on the dev data: {reason}")
            return
        self.set_calibration(calibration)
        self._calibrated_in_training = True
        after = calibration.fitted["after"]["ece"]
        logger.info(
            f"{self.name}: calibrated on {calibration.n_docs} dev docs: {calibration.describe()}, "
            f"ECE {100 * calibration.fitted['before']['ece']:.2f} -> {100 * after:.2f} points on them"
        )
