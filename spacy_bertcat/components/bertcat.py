"""The pipeline components: factories ``bertcat`` and ``bertcat_multilabel``.

``BertCat`` is a TrainablePipe whose model maps docs to logits; the pipe applies
softmax (``bertcat``: scores sum to 1) or sigmoid (``bertcat_multilabel``) and writes
``doc.cats``. Losses are computed on logits (see loss.py). Labels live in
``self.cfg``; the model's head is sized at initialize, and a label added later
grows it (the existing labels keep their weights).

spaCy's component contract holds as for its textcat: ``get_loss`` takes what
``predict`` returns, ``rehearse`` trains towards the copy of the model that
``nlp.resume_training()`` keeps, and ``add_label`` works after initialize.
"""

import contextlib
import logging
import math
import warnings
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Set, Tuple, Union, cast

import numpy
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.tokens import Doc
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer
from thinc.types import Floats2d

from ..data.text import has_content
from ..errors import Errors, SettingError, Warnings, config_error, invalid_setting
from ..layers.classifier import get_shim, resize_output
from .config_checks import check_schedule_length, uses_gradual_unfreezing
from .deciding import Deciding
from .decision_state import DecisionState
from .extensions import SETS, UNCALIBRATED, set_component_cats, set_component_value
from .loss import (
    BalancedWeights,
    ClassWeights,
    examples_to_truth,
    rehearsal_loss,
    resolve_class_weights,
    softmax_cross_entropy,
)
from .serialization import read_component, write_component
from .side_channels import (
    cats_components,
    explainer,
    in_training_loop,
    pipeline_of,
    remember_component,
    remember_pipeline,
)
from .truncation import TruncationReports

logger = logging.getLogger("spacy.bertcat")

# What `calibrate_on_dev` may be: methods that keep every decision (the dev data
# chooses model-best by its decisions).
TRAIN_CALIBRATION_METHODS = ("auto", "temperature", "isotonic", "histogram", "none")

# A stage run at initialize before the supervised updates (the `warmup` setting,
# e.g. fewshot/warmup.py's ContrastiveWarmup, injected by the config): called with the
# classifier model (weights loaded), the training docs, their gold rows and mask
# (docs, labels; as get_loss reads them), whether the classes are exclusive, the
# resolved class weights (or None) and, by keyword, the component's name. It trains
# the model in place; a SettingError it raises names its setting ("warmup...").
Warmup = Callable[..., None]

DEFAULT_MODEL_CONFIG = """
[model]
@architectures = "spacy-bertcat.BertClassifier.v1"
name = "bert-base-uncased"
max_length = 512
max_batch_wordpieces = 16384
mixed_precision = false
amp_dtype = "bfloat16"
tokenizer_name = null
attn_implementation = "sdpa"
freeze_embeddings = false
freeze_layers = 0
head_lr_scale = 1.0
layer_lr_decay = 1.0
hidden_dropout = null
attention_dropout = null
classifier_dropout = null

[model.tokenizer_config]

[model.chunking]
@misc = "spacy-bertcat.sliding_window.v1"
stride = null
aggregation = "mean"
max_windows = 8
max_windows_predict = null
seed = 0
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_MODEL_CONFIG)["model"]
# Scores are clipped this far from 0 and 1 where get_loss takes logits from them.
_SCORE_EPS = 1e-7
SCORE_WEIGHTS = {
    "cats_score": 1.0,
    "cats_score_desc": None,
    "cats_micro_p": None,
    "cats_micro_r": None,
    "cats_micro_f": None,
    "cats_macro_p": None,
    "cats_macro_r": None,
    "cats_macro_f": None,
    "cats_macro_auc": None,
    "cats_f_per_type": None,
}


@Language.factory(
    "bertcat",
    assigns=["doc.cats"],
    default_config={
        "model": DEFAULT_MODEL,
        "threshold": 0.0,
        "class_weights": None,
        "scorer": {"@scorers": "spacy.textcat_scorer.v2"},
        "warmup": None,
        "calibrate_on_dev": None,
    },
    default_score_weights=SCORE_WEIGHTS,
)
def make_bertcat(
    nlp: Language,
    name: str,
    model: Model[List[Doc], Floats2d],
    threshold: float,
    class_weights: ClassWeights,
    scorer: Optional[Callable],
    warmup: Optional[Warmup] = None,
    calibrate_on_dev: Optional[str] = None,
) -> "BertCat":
    """A fine-tuned transformer classifier for mutually exclusive classes.

    model (Model[List[Doc], Floats2d]): The classifier model, docs to logits
        (spacy-bertcat.BertClassifier.v1).
    threshold (float): The threshold spaCy's scorer and `spacy find-threshold`
        read; the decision is always the top class (for a binary task, see
        `positive_label` at initialize).
    class_weights (ClassWeights): Weights of each class in the loss: null,
        "balanced", spacy-bertcat.balanced_class_weights.v1, or a block of
        label = weight lines.
    scorer (Optional[Callable]): The scorer (spaCy's textcat scorer).
    warmup (Optional[Warmup]): A stage run at initialize on the training data
        before the supervised updates, e.g. spacy-bertcat.contrastive_warmup.v1
        (the few-shot recipe, configs/bertcat_fewshot.cfg); null: none.
    calibrate_on_dev (Optional[str]): Calibrate at each evaluation of `spacy
        train` on the dev data, so model-best carries a calibration: "auto"
        (chosen by cross-validation, see `spacy-bertcat calibrate`),
        "temperature", "isotonic", "histogram" or "none" (prediction sets only);
        null: no calibration. The dev data then also chose model-best (BCW055).
    """
    if calibrate_on_dev is not None and calibrate_on_dev not in TRAIN_CALIBRATION_METHODS:
        raise invalid_setting(
            "calibrate_on_dev",
            calibrate_on_dev,
            f"it must be null or one of {', '.join(TRAIN_CALIBRATION_METHODS)}",
            "components",
            name,
        )
    return BertCat(
        nlp.vocab,
        model,
        name,
        threshold=threshold,
        class_weights=class_weights,
        scorer=scorer,
        warmup=warmup,
        calibrate_on_dev=calibrate_on_dev,
    )


class BertCat(Deciding, TruncationReports, TrainablePipe):
    """Text classification with a fine-tuned Hugging Face model, exclusive classes."""

    exclusive = True

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], Floats2d],
        name: str = "bertcat",
        *,
        threshold: float,
        class_weights: ClassWeights = None,
        scorer: Optional[Callable] = None,
        warmup: Optional[Warmup] = None,
        calibrate_on_dev: Optional[str] = None,
    ) -> None:
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict[str, Any] = {
            "labels": [],
            "threshold": threshold,
            "positive_label": None,
            "class_weights": class_weights.to_dict() if isinstance(class_weights, BalancedWeights) else class_weights,
            "label_weights": None,  # class_weights resolved per label at initialize
            "other_labels": [],  # gold labels of the training data that other components predict
        }
        if calibrate_on_dev is not None:
            self.cfg["calibrate_on_dev"] = calibrate_on_dev
        self._decisions = DecisionState(self.cfg)  # thresholds and calibration, in self.cfg
        self._calibrated_in_training = False  # the calibration is calibrate_on_dev's (not saved)
        self._warned_dev_calibration = False  # BCW055 shown
        self._class_weights = class_weights  # the setting; resolved per label at initialize
        self._warmup = warmup  # run at initialize, after the weights are loaded
        self._warned_truncation = False
        self._warned_other_docs = False  # BCW031 shown
        self._updated_since_scoring = False  # trained since the last evaluation (not saved)
        self._rehearsal: Optional[Model] = None  # see _rehearsal_model
        # predict's last result: (the scores it returned, their uncalibrated scores,
        # the logits), so set_annotations and get_loss use the exact values
        self._last_prediction: Optional[Tuple[Any, numpy.ndarray, numpy.ndarray]] = None
        self._explain_settings: Optional[Dict[str, Any]] = None  # set inside `explaining()`

    @property
    def decisions(self) -> DecisionState:
        """RETURNS (DecisionState): The component's thresholds, their sources and
        its calibration (stored in its cfg; see components/decision_state.py)."""
        if not self._decisions.owns(self.cfg):  # cfg replaced (a copy, a subclass)
            self._decisions = DecisionState(self.cfg)
        return self._decisions

    @property
    def labels(self) -> tuple:
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def is_initialized(self) -> bool:
        return get_shim(self.model).model is not None

    def add_label(self, label: str) -> int:
        """Add a label. After initialize the classification head grows by one
        output (layers/classifier.py `resize_output`): the existing labels keep
        their weights, so their logits are unchanged up to float rounding (the
        matrix product is one output wider: at most the last bit); for `bertcat`
        their softmax scores change, as a new class now shares the probability.
        A calibration is removed (BCW032).

        RETURNS (int): 0 if the label is present, else 1.
        """
        if not isinstance(label, str):
            raise ValueError(Errors.BC024.format(label=label, type=type(label).__name__))
        if label in self.labels:
            return 0
        if self.is_initialized:
            self._grow_head(label)
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def _grow_head(self, label: str) -> None:
        """Make room for a label added after initialize: one more output, its
        class weight (its explicit weight, else 1), and no calibration."""
        labels = [*self.labels, label]
        try:
            resize_output(self.model, labels)
        except ValueError as e:
            raise ValueError(Errors.BC100.format(name=self.name, label=label, reason=e)) from e
        self.model.attrs["labels"] = labels
        if self.cfg["label_weights"] is not None:
            explicit = self._class_weights if isinstance(self._class_weights, dict) else {}
            self.cfg["label_weights"] = [*self.cfg["label_weights"], float(explicit.get(label, 1.0))]
        self.cfg["other_labels"] = [other for other in self.cfg.get("other_labels") or [] if other != label]
        if self.calibration is not None:
            warnings.warn(Warnings.BCW032.format(name=self.name, labels=list(self.labels), label=label))
            self.set_calibration(None)

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
        positive_label: Optional[str] = None,
    ) -> None:
        """Take the labels from the data (sorted) or from `labels`, check the gold
        annotations, resolve class weights, and load the pretrained weights.

        With `labels` given, gold labels of the data outside them are taken to
        belong to another text classifier of the pipeline: they are ignored in
        training, as spaCy's textcat ignores them.
        A bad setting raises a ConfigValidationError naming it, which spaCy's
        commands print as a config error.
        """
        # Read the training corpus once: spaCy's validate_get_examples iterates all
        # of it just to check types, and `spacy train` reads .spacy files lazily, so
        # validating get_examples() and then reading it doubles the corpus pass
        # (2.4 s of 3,000 AG News examples).
        method = f"{type(self).__name__}.initialize"
        try:  # an optimized (serving) pipeline has no weights to train
            get_shim(self.model).refuse_training()
        except ValueError as e:
            raise config_error(str(e), ["components", self.name], title=f"Cannot train component '{self.name}'") from e
        if get_examples is None or not callable(get_examples):
            validate_get_examples(get_examples, method)  # raises spaCy's E930
        found = get_examples()
        if found is None or isinstance(found, (str, bytes)) or not hasattr(found, "__iter__"):
            validate_get_examples(lambda: found, method)  # raises spaCy's E930 / E978
        examples = list(found)
        validate_get_examples(lambda: examples, method)  # not empty, all Examples
        try:
            self._initialize(lambda: examples, nlp, labels, positive_label)
        except SettingError as e:
            loc = ["components", self.name, *e.setting.split(".")]
            raise config_error(str(e), loc, title=f"Could not initialize component '{self.name}'") from e

    def _initialize(self, get_examples, nlp, labels, positive_label) -> None:
        if nlp is not None:
            check_schedule_length(nlp.config)
        if not 0.0 <= self.cfg["threshold"] <= 1.0:
            raise SettingError(Errors.BC026.format(value=self.cfg["threshold"], name=self.name), "threshold")
        # New weights: a calibration or tuned thresholds would be for other ones.
        self.decisions.calibration = None
        self.decisions.clear_thresholds()
        examples = list(get_examples())
        found = {label for eg in examples for label in eg.reference.cats}
        if labels is None:
            labels = sorted(found - set(self.labels))
        for label in labels:
            self.add_label(label)
        self.cfg["other_labels"] = sorted(found - set(self.labels))
        if nlp is not None:
            remember_pipeline(self, nlp)
        remember_component(self)
        loc = ["initialize", "components", self.name, "labels"]
        if not self.labels:
            stand_in = len(examples) == 1 and examples[0].reference.text.split() == [
                "x",
                "y",
                "z",
            ]  # nlp.initialize() without data
            if not examples or stand_in:
                reason = "it was initialized without training data"
            else:
                reason = f"none of the {len(examples)} training examples has annotations in doc.cats"
            raise config_error(Errors.BC025.format(name=self.name, reason=reason), loc)
        if self.exclusive and len(self.labels) < 2:
            raise config_error(Errors.BC001.format(n=len(self.labels), labels=list(self.labels)), loc)
        if positive_label is not None and (positive_label not in self.labels or len(self.labels) != 2):
            raise config_error(
                Errors.BC023.format(label=positive_label, labels=list(self.labels)), loc[:-1] + ["positive_label"]
            )
        self.cfg["positive_label"] = positive_label
        if nlp is not None:
            self._warn_shared_labels(nlp)
        skipped: List[int] = []
        truth, mask = self._truth(examples, skipped)
        self._warn_other_docs(examples, skipped)
        self.cfg["label_weights"] = resolve_class_weights(
            self._class_weights, self.labels, truth, mask, exclusive=self.exclusive, name=self.name
        )
        self._learn_label_counts(truth, mask)
        self.model.attrs["labels"] = list(self.labels)
        sample = [eg.reference for eg in islice(examples, 10)]
        self.model.initialize(X=sample, Y=self.model.ops.asarray2f(truth[: len(sample)]))
        if nlp is not None and uses_gradual_unfreezing(nlp.config, self.name):
            get_shim(self.model).check_trainable_top_layers()
        if self._warmup is not None:
            docs = [eg.predicted for eg in examples]
            self._warmup(self.model, docs, truth, mask, self.exclusive, self.cfg["label_weights"], name=self.name)
        self._report_training_truncation([eg.reference for eg in examples])
        n_empty = sum(1 for eg, row in zip(examples, mask) if row.any() and not has_content(eg.predicted))
        if n_empty:
            warnings.warn(Warnings.BCW007.format(name=self.name, n=n_empty))

    def _learn_label_counts(self, truth: numpy.ndarray, mask: numpy.ndarray) -> None:
        """Keep what the component needs of the training data's label counts (the
        multi-label component: each label's prevalence)."""

    def predict(self, docs: Iterable[Doc]) -> Floats2d:
        """Scores per doc and label, calibrated where the component has a
        calibration. Empty and whitespace-only docs get a defined result without a
        model call: uniform scores (bertcat), zeros (multilabel).

        The uncalibrated scores and the logits behind the returned array are kept
        until the next call, so that `set_annotations` decides on the exact
        uncalibrated scores and `get_loss` takes the exact logits when they are
        given this array."""
        docs = list(docs)
        ops = self.model.ops
        raw, logits_out, rows, logits = self._forward(docs)
        scores = raw.copy()
        if rows:
            calibration = self.calibration
            if calibration is not None:
                scores[rows] = ops.to_numpy(self._activation(calibration.apply(ops.xp, logits)))
            self._warn_truncation(len(rows))
        out = ops.asarray2f(cast(Floats2d, scores))
        self._last_prediction = (out, raw, logits_out)
        return out

    def _forward(self, docs: List[Doc]) -> Tuple[numpy.ndarray, numpy.ndarray, List[int], Any]:
        """The model's pass over `docs`, without the calibration (empty docs get
        `_empty_score` and zero logits, without a model call).

        RETURNS: The uncalibrated scores and the logits (numpy, one row per doc),
            the rows of the docs with content, and the model's logits of those rows
            on its device (None when there are none)."""
        ops = self.model.ops
        n_labels = len(self.labels)
        raw = numpy.full((len(docs), n_labels), self._empty_score(n_labels), dtype="f")
        logits_out = numpy.zeros_like(raw)
        rows = [i for i, doc in enumerate(docs) if has_content(doc)]
        logits = None
        if rows:
            logits = self.model.predict([docs[i] for i in rows])
            logits_out[rows] = ops.to_numpy(logits)
            raw[rows] = ops.to_numpy(self._activation(logits))
        return raw, logits_out, rows, logits

    def _model_scores(self, docs: List[Doc]) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """RETURNS: The model's uncalibrated scores and logits of `docs` (as
        `predict` computes them, without the calibration)."""
        raw, logits_out, _, _ = self._forward(docs)
        return raw, logits_out

    def _predicted(self, scores: Any) -> Optional[Tuple[numpy.ndarray, numpy.ndarray]]:
        """RETURNS: The uncalibrated scores and logits behind `scores`, if they are
        what `predict` returned last (else None)."""
        last = self._last_prediction
        return (last[1], last[2]) if last is not None and last[0] is scores else None

    def logits(self, docs: Iterable[Doc], batch_size: int = 64) -> Tuple[numpy.ndarray, numpy.ndarray]:
        """The model's uncalibrated logits (what calibration is fitted on).

        RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): (docs, labels) logits, 0 for
            docs without text, which the model does not read; and which docs have text.
        """
        docs = list(docs)
        content = numpy.asarray([has_content(doc) for doc in docs], dtype=bool)
        out = numpy.zeros((len(docs), len(self.labels)), dtype="f")
        rows = numpy.flatnonzero(content)
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            out[batch] = self.model.ops.to_numpy(self.model.predict([docs[i] for i in batch]))
        return out, content

    def set_annotations(self, docs: Iterable[Doc], scores: Floats2d) -> None:
        """Write the scores to doc.cats and doc._.bertcat_cats[component name]
        (where each component's own scores stay reachable when two classifiers of
        one pipeline predict the same label), and the decision to
        doc._.bertcat_labels[component name]: the labels the component assigns."""
        docs = list(docs)
        predicted = self._predicted(scores)
        scores = self.model.ops.to_numpy(scores)
        calibration = self.calibration
        raw: Optional[numpy.ndarray] = None
        if calibration is not None:  # exact where the scores are predict's own
            if predicted is not None:
                raw = predicted[0]
            elif calibration.invertible:
                raw = calibration.uncalibrate(cast(numpy.ndarray, scores))
            else:  # a map that is not exactly invertible: the model's scores again
                raw = self._model_scores(docs)[0]
        # The decision: the top class of the model's own scores, unless the
        # calibration may change it (allowed by the user), then of doc.cats.
        decide_on_cats = calibration is not None and not calibration.keeps_top_class
        rule = self._decision_rule()
        sets = (
            calibration.prediction_sets(cast(numpy.ndarray, raw))
            if calibration is not None and calibration.alphas
            else None
        )
        for i, (doc, row) in enumerate(zip(docs, scores)):
            cats = {label: float(score) for label, score in zip(self.labels, row)}
            raw_cats = {label: float(v) for label, v in zip(self.labels, raw[i])} if raw is not None else cats
            doc.cats.update(cats)
            content = has_content(doc)
            decided = self._decide(cats, cats if decide_on_cats else raw_cats, rule, content)
            set_component_cats(doc, self.name, cats, decided)
            if raw is not None:
                set_component_value(doc, UNCALIBRATED, self.name, raw_cats)
            if sets is not None:
                in_set = [label for label, keep in zip(self.labels, sets[i]) if keep] if content else []
                set_component_value(doc, SETS, self.name, sorted(in_set, key=cats.get, reverse=True))  # type: ignore[arg-type]

        if self._explain_settings is not None:  # inside `explaining()`
            for doc in docs:
                self.explain(doc, **self._explain_settings)

    def explain(self, doc: Doc, label: Optional[str] = None, *, method: Optional[str] = None, **settings: Any) -> Any:
        """Token attributions of a doc's score for a label (default: the
        predicted one), written to doc._.bertcat_attributions[name][label] (one
        float per token) and the top tokens to doc.spans[f"{name}_rationale"].
        The work is done by spacy_bertcat.explain (`explain_doc`, which lists the
        methods and settings); this is its entry point on the component.

        doc (Doc): The document (processed by the pipeline or not).
        label (Optional[str]): The label to explain; None for the predicted one.
        method (Optional[str]): "integrated_gradients", "gradient_x_input" or
            "occlusion"; None for the default.
        RETURNS (Explanation): The attributions and what they explain.
        """
        function = explainer()
        if function is None:  # the package installs it on import; never seen in practice
            raise ValueError(Errors.BC133.format(reason="spacy_bertcat.explain is not imported"))
        return function(self, doc, label, method=method, **settings)

    @contextlib.contextmanager
    def explaining(self, **settings: Any) -> Iterator[None]:
        """Within the block, every doc the component annotates (`nlp(text)`,
        `nlp.pipe(texts)`) is also explained, as `explain(doc, **settings)` would."""
        before = self._explain_settings
        self._explain_settings = dict(settings)
        try:
            yield
        finally:
            self._explain_settings = before

    def _decision_rule(self) -> Any:
        """RETURNS: What `_decide` needs besides the scores (multi-label: the
        thresholds), read once per batch."""
        return None

    def _decide(self, cats: Dict[str, float], raw_cats: Dict[str, float], rule: Any, content: bool) -> List[str]:
        """RETURNS (List[str]): The class with the highest score (none for a doc
        without text), on the uncalibrated scores `raw_cats`: the temperature
        keeps their order, and float rounding of the calibrated scores cannot
        then change the decision."""
        return [max(raw_cats, key=raw_cats.get)] if content and raw_cats else []  # type: ignore[arg-type]

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch; docs with empty cats are unannotated and skipped, and
        so are docs without text, whose prediction never runs the model.
        (spaCy's `drop` is not used: dropout rates are model settings.)"""
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        validate_examples(examples, f"{type(self).__name__}.update")
        get_shim(self.model).refuse_training()
        examples = list(examples)
        skipped: List[int] = []
        truth, mask = self._truth(examples, skipped)
        self._warn_other_docs(examples, skipped)
        keep = [i for i, row in enumerate(mask) if row.any() and has_content(examples[i].predicted)]
        if keep:
            if self.decisions.calibration is not None:
                if not self._calibrated_in_training:  # calibrate_on_dev fits it again
                    warnings.warn(Warnings.BCW014.format(name=self.name))
                self.set_calibration(None)
                self._calibrated_in_training = False
            self._updated_since_scoring = True
            logits, backprop = self.model.begin_update([examples[i].predicted for i in keep])
            loss, d_logits = self._loss(logits, truth[keep], mask[keep])
            backprop(d_logits)
            if math.isfinite(loss):  # else the step is skipped and reported by finish_update
                losses[self.name] += loss
        if sgd is not None:
            self.finish_update(sgd)
        return losses

    def get_loss(self, examples: Iterable[Example], scores: Floats2d) -> Tuple[float, Floats2d]:
        """The loss and its gradient for the scores `predict` returned for the
        examples' docs, as spaCy's textcat takes its own predictions: the loss
        `update` computes for them (without dropout). The loss is computed on the
        logits behind the scores: predict's own (exact) for the array it returned
        last, else taken back from the scores (the inverse of the calibration and
        of the softmax or sigmoid; scores are clipped 1e-7 from 0 and 1). Docs
        without text are left out, as in `update`.

        RETURNS (Tuple[float, Floats2d]): Mean loss over annotated docs, and its
            gradient with respect to the logits (what the model's backprop takes).
        """
        examples = list(examples)
        validate_examples(examples, f"{type(self).__name__}.get_loss")
        truth, mask = self._truth(examples)
        predicted = self._predicted(scores)
        logits = (
            predicted[1]
            if predicted is not None
            else self._logits_from_scores(scores, [eg.predicted for eg in examples])
        )
        content = numpy.asarray([has_content(eg.predicted) for eg in examples], dtype=bool)
        logits = numpy.where(content[:, None], logits, 0.0).astype("f")
        mask = mask * content[:, None]
        return self._loss(self.model.ops.asarray2f(cast(Floats2d, logits)), truth, mask)

    def _logits_from_scores(self, scores: Floats2d, docs: List[Doc]) -> numpy.ndarray:
        """RETURNS (numpy.ndarray): Logits whose (uncalibrated) scores are `scores`
        (softmax: up to a constant per row, which the loss does not see); where
        the calibration is not exactly invertible, the model's logits of `docs`."""
        values = numpy.asarray(self.model.ops.to_numpy(scores), dtype="f8")
        calibration = self.calibration
        if calibration is not None and not calibration.invertible:
            return self._model_scores(docs)[1]
        if calibration is not None:
            values = numpy.asarray(calibration.uncalibrate(values), dtype="f8")
        values = numpy.clip(values, _SCORE_EPS, 1.0 - _SCORE_EPS)
        return self._inverse_activation(values).astype("f")

    def _inverse_activation(self, scores: numpy.ndarray) -> numpy.ndarray:
        return numpy.log(scores)

    def rehearse(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """A rehearsal update, as spaCy's textcat makes: after
        `nlp.resume_training()`, which keeps a copy of the model as it was, learn
        to predict what that copy predicts for the examples' docs (their gold
        labels are not read), so that training on new data forgets less. The
        loss is the divergence of the current scores from the copy's
        (loss.rehearsal_loss; the copy predicts, without dropout, and reads
        long documents as prediction does). Without `nlp.resume_training()` it
        does nothing, as textcat. `sgd` may be a thinc optimizer or the gradient
        collector `nlp.rehearse` passes.
        """
        losses = {} if losses is None else losses
        losses.setdefault(self.name, 0.0)
        teacher = self._rehearsal_model
        if teacher is None:
            return losses
        validate_examples(examples, f"{type(self).__name__}.rehearse")
        docs = [eg.predicted for eg in examples if has_content(eg.predicted)]
        if docs:
            if self.decisions.calibration is not None:
                if not self._calibrated_in_training:  # calibrate_on_dev fits it again
                    warnings.warn(Warnings.BCW014.format(name=self.name))
                self.set_calibration(None)
                self._calibrated_in_training = False
            live, kept = get_shim(self.model), get_shim(teacher)
            if kept.device != live.device:  # parked on the CPU by resume_training
                kept.model.to(live.device)  # type: ignore[union-attr]
            target = self.model.ops.asarray2f(teacher.predict(docs))
            self._updated_since_scoring = True
            logits, backprop = self.model.begin_update(docs)
            loss, d_logits = rehearsal_loss(self.model.ops.xp, logits, target, exclusive=self.exclusive)
            backprop(d_logits)
            if math.isfinite(loss):
                losses[self.name] += loss
        if sgd is not None:
            self.finish_update(sgd)
        return losses

    @property
    def _rehearsal_model(self) -> Optional[Model]:
        """The copy of the model that spaCy's `nlp.resume_training()` keeps for
        `rehearse` (spaCy sets it where a component has this attribute; `spacy
        train` resumes sourced components so). The copy is parked on the CPU
        until the first rehearsal. A pipeline optimized for serving cannot
        train: asking for the attribute raises BC065, so that resume_training
        stops before it copies the model."""
        try:
            get_shim(self.model).refuse_training()
        except ValueError as e:
            raise config_error(str(e), ["components", self.name], title=f"Cannot train component '{self.name}'") from e
        return self._rehearsal

    @_rehearsal_model.setter
    def _rehearsal_model(self, model: Optional[Model]) -> None:
        if model is not None and get_shim(model).model is not None:
            model.to_cpu()
        self._rehearsal = model

    def _loss(self, logits: Floats2d, truth: numpy.ndarray, mask: numpy.ndarray) -> Tuple[float, Floats2d]:
        ops = self.model.ops
        return self._loss_fn(ops.xp, logits, ops.asarray2f(truth), ops.asarray2f(mask), self.cfg["label_weights"])  # type: ignore[arg-type]

    @property
    def _loss_fn(self) -> Callable:
        return softmax_cross_entropy

    def finish_update(self, sgd: Optimizer) -> None:
        """One optimizer step (layers/shim.py). `sgd` may also be a bare gradient
        collector such as `nlp.rehearse` passes: it is handed each parameter, as
        thinc's PyTorchShim does."""
        self.model.finish_update(sgd)
        shim = get_shim(self.model)
        if shim.last_step is not None and shim.last_step.skipped:
            hint = (
                "Lower the learning rate or check the data."
                if not shim.loss_scale.enabled
                else "The float16 loss scale was lowered."
            )
            warnings.warn(
                Warnings.BCW003.format(
                    name=self.name,
                    norm=shim.last_step.grad_norm,
                    step=shim.n_steps,
                    n_skipped=shim.n_skipped,
                    hint=hint,
                )
            )
            shim.last_step = None

    @property
    def encoder_map(self):
        """RETURNS (EncoderMap): Which parameters are the embeddings, each encoder
        layer, the shared encoder tensors and the head (see layers/encoder_map.py)."""
        return get_shim(self.model).encoder_map

    def set_trainable_top_layers(self, n: Optional[int]) -> None:
        """Train only the head and the top n encoder layers (gradual unfreezing)."""
        get_shim(self.model).set_trainable_top_layers(n)

    def score(self, examples: Iterable[Example], **kwargs) -> Dict[str, Any]:
        """Score with the component's scorer; during training (each evaluation of
        `spacy train`) also log how many training documents were truncated so far,
        and with `calibrate_on_dev`, first calibrate on these (dev) examples."""
        examples = list(examples)
        if self.exclusive and self.cfg.get("calibrate_on_dev") and self._updated_since_scoring and in_training_loop():
            self._calibrate_on_dev(examples)
            self._updated_since_scoring = False
        stats = self.truncation_stats
        if stats["train_docs"]:
            logger.info(
                f"{self.name}: {stats['train_truncated']} of {stats['train_docs']} training documents seen so far "
                f"were truncated by the chunking strategy '{self.model.attrs['chunking'].name}'"
            )
        return super().score(examples, **kwargs)

    def to_disk(self, path: Union[str, Path], *, exclude=tuple()) -> None:
        """Save like TrainablePipe.to_disk, but write each file atomically, so an
        interrupted save (a killed `spacy train`) leaves the previous file whole."""
        write_component(self, path, exclude)

    def from_disk(self, path: Union[str, Path], *, exclude=tuple()) -> "BertCat":
        """Load like TrainablePipe.from_disk; a damaged or unreadable file is named
        in the error."""
        read_component(self, path, exclude)
        self._check_head()
        remember_component(self)  # a sourced or loaded component's batches count its wordpieces too
        return self

    def from_bytes(self, bytes_data: bytes, *, exclude=tuple()) -> "BertCat":
        super().from_bytes(bytes_data, exclude=exclude)
        self._check_head()
        remember_component(self)
        return self

    def _check_head(self) -> None:
        n_outputs = get_shim(self.model).num_labels
        if n_outputs is not None and n_outputs != len(self.labels):
            raise ValueError(
                Errors.BC013.format(
                    name=self.name,
                    n_labels=len(self.labels),
                    labels=list(self.labels),
                    n_outputs=n_outputs,
                )
            )

    def _truth(self, examples: Iterable[Example], skipped: Optional[List[int]] = None):
        """RETURNS: Truth and mask (see loss.examples_to_truth); the indices of
        exclusive docs that belong to another classifier go to `skipped`."""
        ignore = set(self.cfg.get("other_labels") or ()) | self._other_classifier_labels()
        return examples_to_truth(
            examples, self.labels, exclusive=self.exclusive, name=self.name, ignore=ignore, skipped=skipped
        )

    def _warn_other_docs(self, examples: List[Example], skipped: List[int]) -> None:
        """Warn once (BCW031: at initialize, over the whole training data, or at
        the first update that meets one) about exclusive docs whose positive
        label is another classifier's: they are skipped, not an error."""
        if not skipped or self._warned_other_docs:
            return
        self._warned_other_docs = True
        labels = sorted({label for i in skipped for label, v in examples[i].reference.cats.items() if v == 1.0})
        warnings.warn(
            Warnings.BCW031.format(
                name=self.name, n=len(skipped), n_docs=len(examples), labels=labels, own=list(self.labels)
            )
        )

    def _other_classifier_labels(self) -> Set[str]:
        """RETURNS (Set[str]): The labels other text classifiers of the pipeline
        the component was initialized in predict and it does not (their gold
        labels are ignored in training, as spaCy's textcat ignores them)."""
        nlp = pipeline_of(self)
        if nlp is None:
            return set()
        labels: Set[str] = set()
        for other in cats_components(nlp).values():
            if other is not self:
                labels.update(getattr(other, "labels", ()))
        return labels - set(self.labels)

    def _warn_shared_labels(self, nlp: Language) -> None:
        """Warn when another text classifier of the pipeline predicts some of the
        component's labels (both write them to doc.cats)."""
        for name, other in cats_components(nlp).items():
            shared = sorted(set(getattr(other, "labels", ())) & set(self.labels)) if other is not self else []
            if shared:
                warnings.warn(Warnings.BCW009.format(name=self.name, other=name, labels=shared))

    def _activation(self, logits: Floats2d) -> Floats2d:
        return self.model.ops.softmax(logits)

    def _empty_score(self, n_labels: int) -> float:
        return 1.0 / n_labels if n_labels else 0.0
