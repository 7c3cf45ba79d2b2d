"""How a bertcat component turns scores into decisions: one typed home for the
thresholds, where they came from, the training prevalence that caps rare labels'
thresholds, and the calibration.

The state is stored in the component's ``cfg`` (so it is saved and loaded with the
pipeline, under the keys pipelines have used since 0.1.0); ``DecisionState`` is the
only code that reads or writes those keys. The component, its scorer, the commands
and the prediction engines all go through it, so the rules live here once:

- a label's threshold is its tuned value where it has one, else the global
  ``threshold``;
- tuned thresholds are *stale* once the global ``threshold`` differs from the value
  they were tuned under (``spacy find-threshold`` varies the global value): the
  global value then applies to every label;
- each tuned threshold has a source: "own" (the label's F1 optimum), "global" (too
  rare to tune: the pooled value) or "prevalence" (too rare, and lowered to fire as
  often as in training; see decisions/thresholds.py); labels without a tuned
  threshold have the source "default";
- a calibration maps the thresholds onto its scores, and the thresholds they were
  mapped from are kept exactly (``uncalibrated``): the decision compares the
  model's own score with them, so calibrating never changes a decision, not even
  for a score exactly at its threshold (float rounding in the mapping cannot flip
  it);
- the calibration of exclusive classes keeps each document's top class, so the
  decision (the top class of the model's own scores) is unchanged, unless the
  user allowed a method that can change it (vector scaling, Dirichlet; see
  ``Calibration.keeps_top_class``): the decision is then the top class of the
  calibrated scores.
"""

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from ..decisions.calibration import Calibration

# The cfg keys of the state, with their values for a new component.
DEFAULTS: Dict[str, Any] = {
    "threshold": 0.5,
    "thresholds": None,  # per-label tuned thresholds
    "thresholds_tuned_at": None,  # the global threshold they were tuned under
    "thresholds_fallback": [],  # labels too rare to tune: the pooled global value
    "thresholds_by_prevalence": [],  # ... of those, lowered to their training prevalence's
    "train_prevalence": None,  # each label's share of positives in the training data
    "calibration": None,  # a fitted Calibration, as a dict
    "thresholds_uncalibrated": None,  # the thresholds a calibration's were mapped from
}
SOURCES = ("own", "global", "prevalence", "default")


class DecisionState:
    """A typed view of a component's decision settings, over its ``cfg`` dict.

    cfg (Dict[str, Any]): The component's cfg; reads and writes go to it, so the
        state is saved with the pipe and sees what spaCy's own tools set there
        (``spacy find-threshold`` writes ``threshold``).
    """

    def __init__(self, cfg: Dict[str, Any]) -> None:
        self._cfg = cfg
        for key, value in DEFAULTS.items():
            cfg.setdefault(key, list(value) if isinstance(value, list) else value)
        self._parsed: Optional[tuple] = None  # (cfg["calibration"], Calibration)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DecisionState":
        """RETURNS (DecisionState): A state of its own from stored settings (a
        cfg, or the keyword arguments spaCy passes a scorer)."""
        return cls({key: data[key] for key in DEFAULTS if key in data})

    def to_dict(self) -> Dict[str, Any]:
        """RETURNS (Dict[str, Any]): The stored settings (the cfg keys)."""
        return {key: self._cfg.get(key) for key in DEFAULTS}

    def owns(self, cfg: Dict[str, Any]) -> bool:
        """Whether this state is a view of that cfg dict."""
        return self._cfg is cfg

    # Thresholds

    @property
    def threshold(self) -> float:
        """The global decision threshold (labels without a tuned one)."""
        value = self._cfg.get("threshold")
        return 0.5 if value is None else float(value)

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._cfg["threshold"] = float(value)

    @property
    def tuned(self) -> Optional[Dict[str, float]]:
        """RETURNS (Optional[Dict[str, float]]): The tuned per-label thresholds, or
        None where there are none or they are stale (see the module doc)."""
        tuned = self._cfg.get("thresholds")
        tuned_at = self._cfg.get("thresholds_tuned_at")
        if not tuned or (tuned_at is not None and tuned_at != self._cfg.get("threshold")):
            return None
        return dict(tuned)

    def thresholds(self, labels: Iterable[str]) -> Dict[str, float]:
        """RETURNS (Dict[str, float]): Each label's decision threshold."""
        tuned = self.tuned or {}
        return {label: float(tuned.get(label, self.threshold)) for label in labels}

    def set_thresholds(
        self,
        thresholds: Mapping[str, float],
        fallback: Sequence[str] = (),
        by_prevalence: Sequence[str] = (),
        uncalibrated: Optional[Mapping[str, float]] = None,
    ) -> None:
        """Store tuned thresholds (tuned under the current global threshold) and
        which of them fell back to the pooled value or to the prevalence cap.

        uncalibrated (Optional[Mapping[str, float]]): For thresholds mapped
            through a calibration, the thresholds on the model's own scores they
            were mapped from (see `uncalibrated`); labels left out have none.
        """
        self._cfg["thresholds"] = {k: float(v) for k, v in thresholds.items()}
        self._cfg["thresholds_tuned_at"] = self._cfg.get("threshold")
        self._cfg["thresholds_fallback"] = [label for label in fallback if label in thresholds]
        self._cfg["thresholds_by_prevalence"] = [label for label in by_prevalence if label in thresholds]
        kept = {k: float(v) for k, v in (uncalibrated or {}).items() if k in thresholds}
        self._cfg["thresholds_uncalibrated"] = kept or None

    def clear_thresholds(self) -> None:
        """Forget the tuned thresholds and where they came from (new weights:
        thresholds tuned on the old ones would not fit them)."""
        for key in ("thresholds", "thresholds_tuned_at", "thresholds_uncalibrated"):
            self._cfg[key] = None
        self._cfg["thresholds_fallback"] = []
        self._cfg["thresholds_by_prevalence"] = []

    @property
    def uncalibrated(self) -> Dict[str, float]:
        """RETURNS (Dict[str, float]): The labels whose tuned threshold a
        calibration mapped from a threshold on the model's own scores, and that
        threshold (what the decision compares the uncalibrated score with); empty
        without a calibration or while the tuned thresholds are stale."""
        if self.tuned is None or self._cfg.get("calibration") is None:
            return {}
        return dict(self._cfg.get("thresholds_uncalibrated") or {})

    @property
    def fallback(self) -> List[str]:
        """The labels whose tuned threshold is the pooled global value (too rare)."""
        return list(self._cfg.get("thresholds_fallback") or []) if self.tuned else []

    @property
    def by_prevalence(self) -> List[str]:
        """The fallback labels whose threshold was lowered to their prevalence's."""
        return list(self._cfg.get("thresholds_by_prevalence") or []) if self.tuned else []

    def source(self, label: str) -> str:
        """RETURNS (str): Where the label's threshold comes from (one of SOURCES)."""
        tuned = self.tuned or {}
        if label not in tuned:
            return "default"
        if label in self.by_prevalence:
            return "prevalence"
        return "global" if label in self.fallback else "own"

    @property
    def train_prevalence(self) -> Optional[Dict[str, float]]:
        """Each label's share of positives in the training data (multi-label)."""
        value = self._cfg.get("train_prevalence")
        return dict(value) if value else None

    @train_prevalence.setter
    def train_prevalence(self, value: Optional[Mapping[str, float]]) -> None:
        self._cfg["train_prevalence"] = {k: float(v) for k, v in value.items()} if value is not None else None

    # Calibration

    @property
    def calibration(self) -> Optional[Calibration]:
        """The fitted calibration that the scores go through, or None."""
        data = self._cfg.get("calibration")
        if data is None:
            return None
        if self._parsed is None or self._parsed[0] is not data:
            self._parsed = (data, Calibration.from_dict(data))
        return self._parsed[1]

    @calibration.setter
    def calibration(self, calibration: Optional[Calibration]) -> None:
        self._cfg["calibration"] = calibration.to_dict() if calibration is not None else None
        self._parsed = None
