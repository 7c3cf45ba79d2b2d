"""The ``bertcat_multilabel`` factory: independent labels, sigmoid scores.

Beyond ``bertcat``, it chooses its loss (binary cross-entropy or the asymmetric loss,
registered in loss.py) and tunes a decision threshold per label on the dev data at
each evaluation of `spacy train` (``tune_thresholds``; see thresholds.py), so
``model-best`` carries thresholds that fit the data and its ``doc.cats`` consumers
can read each label's decision from ``pipe.thresholds``. Only spaCy's training loop
tunes (it is found on the call stack, see side_channels.in_training_loop), or an
evaluation inside ``pipe.tuning_thresholds()``: scoring data in a loop of one's own
(``nlp.evaluate``) never changes the component. Each evaluation also warns about
labels that have gold positives but are predicted for no document, so a collapsed
label is visible at once.
"""

import contextlib
import logging
import warnings
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model
from thinc.types import Floats2d

from ..decisions.thresholds import TunedThresholds, collapsed_labels, tune_with_fallback
from ..errors import Warnings, invalid_setting
from .bertcat import DEFAULT_MODEL, SCORE_WEIGHTS, BertCat, Warmup
from .extensions import component_cats
from .loss import ClassWeights, MultilabelLoss, sigmoid_binary_cross_entropy
from .side_channels import in_training_loop

logger = logging.getLogger("spacy.bertcat")


@Language.factory(
    "bertcat_multilabel",
    assigns=["doc.cats"],
    default_config={
        "model": DEFAULT_MODEL,
        "threshold": 0.5,
        # The recipe of configs/bertcat_multilabel.cfg, measured in bench/multilabel.py.
        # "sqrt_balanced" is spacy-bertcat.balanced_class_weights.v1 with power 0.5: a
        # string, as spaCy would merge a default block into a block of label =
        # weight lines given in its place.
        "class_weights": "sqrt_balanced",
        "loss": {"@misc": "spacy-bertcat.asymmetric_loss.v1", "gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05},
        "tune_thresholds": True,
        "threshold_min_support": 5,
        "scorer": {"@scorers": "spacy-bertcat.multilabel_scorer.v1"},
        "warmup": None,
    },
    default_score_weights=SCORE_WEIGHTS,
)
def make_bertcat_multilabel(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Floats2d],
    threshold: float,
    class_weights: ClassWeights,
    loss: MultilabelLoss,
    tune_thresholds: bool,
    threshold_min_support: int,
    scorer: Optional[Callable],
    warmup: Optional[Warmup] = None,
) -> "BertCatMultilabel":
    """A fine-tuned transformer classifier for independent labels.

    threshold (float): The decision threshold of labels without a tuned one.
    class_weights (ClassWeights): Weights of each label's positive term: null,
        "balanced" (negatives / positives), "sqrt_balanced" (their square root,
        the default), spacy-bertcat.balanced_class_weights.v1, or a block of
        label = weight lines. A label without negatives gets 1 (BCW030).
    loss (MultilabelLoss): spacy-bertcat.binary_cross_entropy.v1 or
        spacy-bertcat.asymmetric_loss.v1.
    tune_thresholds (bool): Tune each label's threshold on the dev data at every
        evaluation of `spacy train` (the first evaluation after training updates);
        nlp.evaluate in a loop of one's own tunes only inside
        `pipe.tuning_thresholds()`.
    threshold_min_support (int): Dev positives a label needs for a threshold of its
        own; rarer labels get the global threshold that maximizes micro-F1.
    warmup (Optional[Warmup]): A stage run at initialize before the supervised
        updates (spacy-bertcat.contrastive_warmup.v1: pairs by label-set overlap).
    """
    if threshold_min_support < 1:
        raise invalid_setting(
            "threshold_min_support", threshold_min_support, "it must be at least 1", "components", name
        )
    return BertCatMultilabel(
        nlp.vocab,
        model,
        name,
        threshold=threshold,
        class_weights=class_weights,
        scorer=scorer,
        loss=loss,
        tune_thresholds=tune_thresholds,
        threshold_min_support=threshold_min_support,
        warmup=warmup,
    )


class BertCatMultilabel(BertCat):
    """Text classification with a fine-tuned Hugging Face model, independent labels."""

    exclusive = False

    def __init__(
        self,
        *args: Any,
        loss: MultilabelLoss = sigmoid_binary_cross_entropy,
        tune_thresholds: bool = False,
        threshold_min_support: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._multilabel_loss = loss
        self._tuning = 0  # inside tuning_thresholds() (not saved)
        self.cfg["tune_thresholds"] = tune_thresholds
        self.cfg["threshold_min_support"] = threshold_min_support

    def initialize(  # type: ignore[override]
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
    ) -> None:
        """As BertCat.initialize, without `positive_label` (independent labels
        have no positive one): passing it is a TypeError, as for spaCy's
        textcat_multilabel, and a config error in [initialize.components]."""
        super().initialize(get_examples, nlp=nlp, labels=labels)

    def _learn_label_counts(self, truth: numpy.ndarray, mask: numpy.ndarray) -> None:
        """Keep each label's share of positives in the training data: it caps the
        thresholds of labels too rare to tune (thresholds.py). Warn about labels
        with positives and no negatives (BCW030): they learn to fire always."""
        known = numpy.maximum(mask.sum(axis=0), 1)
        prevalence = (truth * mask).sum(axis=0) / known
        self.decisions.train_prevalence = {label: float(p) for label, p in zip(self.labels, prevalence)}
        positives = (truth * mask).sum(axis=0)
        negatives = ((1 - truth) * mask).sum(axis=0)
        only_positive = [label for label, p, n in zip(self.labels, positives, negatives) if p > 0 and n == 0]
        if only_positive:
            warnings.warn(Warnings.BCW030.format(name=self.name, labels=only_positive))

    @property
    def _loss_fn(self) -> Callable:
        return self._multilabel_loss

    def _activation(self, logits: Floats2d) -> Floats2d:
        return self.model.ops.sigmoid(logits)

    def _empty_score(self, n_labels: int) -> float:
        return 0.0

    def _inverse_activation(self, scores: numpy.ndarray) -> numpy.ndarray:
        return numpy.log(scores) - numpy.log1p(-scores)

    def _decision_rule(self) -> Tuple[Dict[str, float], Dict[str, float]]:
        """RETURNS: Each label's threshold, and the thresholds on the
        uncalibrated scores that a calibration's were mapped from (DecisionState
        `uncalibrated`)."""
        return self.thresholds, self.decisions.uncalibrated

    def _decide(self, cats: Dict[str, float], raw_cats: Dict[str, float], rule: Any, content: bool) -> List[str]:
        """RETURNS (List[str]): The labels at or above their threshold. Where a
        calibration mapped a label's threshold, the uncalibrated score is compared
        with the threshold it was mapped from, so calibrating changes no decision
        (not even for a score exactly at its threshold)."""
        if not content:  # a doc without text gets no label, whatever the threshold (even 0)
            return []
        thresholds, uncalibrated = rule
        return [
            label
            for label, score in cats.items()
            if (raw_cats[label] >= uncalibrated[label] if label in uncalibrated else score >= thresholds[label])
        ]

    @contextlib.contextmanager
    def tuning_thresholds(self) -> Iterator[None]:
        """Tune the thresholds at each evaluation inside the block, as `spacy
        train`'s evaluations do: `with pipe.tuning_thresholds(): nlp.evaluate(dev)`
        sets each label's threshold to the best on `dev` (whatever the
        `tune_thresholds` setting). Outside spaCy's training loop and this block,
        evaluating never changes the thresholds."""
        self._tuning += 1
        try:
            yield
        finally:
            self._tuning -= 1

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        """Score with the component's scorer. In spaCy's training loop after
        training updates (each evaluation in `spacy train`), with
        `tune_thresholds`, or inside `tuning_thresholds()`, first tune each label's
        threshold on these examples. Warns about labels with gold positives that
        are predicted for no example."""
        examples = list(examples)
        gold, mask = self._truth(examples)
        scores = self._predicted_scores(examples)
        tune = self._tuning > 0 or (
            self.cfg.get("tune_thresholds") and self._updated_since_scoring and in_training_loop()
        )
        if tune and mask.any():
            tuned = tune_with_fallback(
                self.labels,
                gold,
                scores,
                mask,
                min_support=self.cfg["threshold_min_support"],
                default=min(max(self.decisions.threshold, 1e-4), 1 - 1e-4),
                prevalence=self.decisions.train_prevalence,
            )
            self.use_tuned_thresholds(tuned)
            logger.info(f"{self.name}: {tuned.describe(len(examples))}")
        self._updated_since_scoring = False
        collapsed = collapsed_labels(self.labels, gold, scores, mask, self.thresholds)
        if collapsed:
            listed = ", ".join(f"{label} ({n})" for label, n in list(collapsed.items())[:10])
            more = f" and {len(collapsed) - 10} more" if len(collapsed) > 10 else ""
            logger.warning(
                Warnings.BCW011.format(
                    name=self.name, n=len(collapsed), n_labels=len(self.labels), labels=listed + more
                )
            )
        return super().score(examples, **kwargs)

    def use_tuned_thresholds(self, tuned: TunedThresholds, keep: Iterable[str] = ()) -> None:
        """Set the tuned thresholds and record which labels fell back (see
        DecisionState.source). Labels in `keep` keep their current threshold where
        they have one."""
        keep = set(keep)
        kept = {label: t for label, t in self.thresholds.items() if label in keep and 0.0 < t < 1.0}
        thresholds = {**kept, **{label: t for label, t in tuned.thresholds.items() if label not in keep}}
        self._check_thresholds(thresholds)
        self.decisions.set_thresholds(
            thresholds,
            fallback=[label for label in tuned.fallback if label not in keep],
            by_prevalence=[label for label in tuned.by_prevalence if label not in keep],
            uncalibrated={label: t for label, t in self.decisions.uncalibrated.items() if label in kept},
        )

    def _predicted_scores(self, examples: List[Example]) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): This component's scores of the predicted docs."""
        scores = numpy.zeros((len(examples), len(self.labels)), dtype="f")
        for i, eg in enumerate(examples):
            cats = component_cats(eg.predicted, self.name)
            scores[i] = [cats.get(label, 0.0) for label in self.labels]
        return scores
