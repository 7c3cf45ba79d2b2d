"""Token attributions of a bertcat component's score, on the doc's spaCy tokens.

The explained function is the component's own path from a document to the score of
one label: the document's wordpieces, the windows its chunking strategy reads at
prediction, the encoder on every window, the aggregation of window logits, the
calibration (where it is differentiable), then softmax (``bertcat``) or sigmoid
(``bertcat_multilabel``). All windows of the document are run together, so a
wordpiece read by several windows is credited through each of them, and its
token's attribution is the sum over the windows (with mean aggregation each
window counts 1/n; with max aggregation a label's score follows the window whose
logit is the largest, so gradient methods credit tokens through that window only,
and occlusion credits a token elsewhere only if hiding it changes which window
wins). Wordpieces not read by any window (a truncating strategy, or a document
over ``max_windows_predict``) get 0 (BCW040).

Methods (Captum):

- ``integrated_gradients``: Captum's LayerIntegratedGradients on the model's input
  embedding layer, from a baseline whose text wordpieces are the mask token
  (special tokens and positions kept) to the document, in ``n_steps`` steps; the
  completeness error (the attributions' sum against the score's change from the
  baseline) is reported as ``delta``.
- ``gradient_x_input``: the gradient of the score times the input embeddings
  (LayerGradientXActivation), one backward pass.
- ``occlusion``: each spaCy token's wordpieces replaced by the mask token, in every
  window (Captum's FeatureAblation, one group per token): the score's drop is the
  token's attribution. Needs no gradients, so it is the method for a pipeline
  optimized for serving (ONNX Runtime), where the others raise BC132.

Wordpiece attributions go to the spaCy tokens they overlap, through the
tokenizer's character offsets (a wordpiece spanning two tokens is shared by
characters).
"""

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, cast

import numpy
import torch
from spacy.tokens import Doc, Span, SpanGroup

from ..components.bertcat import BertCat
from ..components.extensions import ATTRIBUTIONS, EXPLANATIONS, set_component_value
from ..data.text import has_content
from ..errors import Errors, Warnings
from ..layers.batching import WindowBatch, make_batches
from ..layers.chunking import Chunker, DocWindows
from ..layers.classifier import get_shim
from ..layers.tokenizer import WordpieceTokenizer

METHODS = ("integrated_gradients", "gradient_x_input", "occlusion")
GRADIENT_METHODS = ("integrated_gradients", "gradient_x_input")
# The default method: the most faithful of the three on SST-2, AG News and BBC
# News (bench/explain.py, docs/benchmarks/explain.md).
DEFAULT_METHOD = "integrated_gradients"
DEFAULT_N_STEPS = 20
# Share of a doc's tokens (those with positive attribution) that form its rationale.
DEFAULT_RATIONALE = 0.1
# Wordpieces (windows x padded length) of one forward pass of the explanation.
BUDGET = 8192
# Completeness error (share of the score's change) above which BCW041 warns.
DELTA_WARNING = 0.1
_NONE = numpy.zeros(0, dtype="int64")


@dataclass
class Explanation:
    """A label's score of one doc, explained on the doc's tokens.

    component (str): The component.
    label (str): The label.
    method (str): The attribution method.
    score (float): The explained score: the label's probability (softmax or
        sigmoid), calibrated where `calibrated`.
    calibrated (bool): Whether the explained score is the calibrated one (a
        component without calibration, or whose calibration is not
        differentiable under a gradient method, is explained uncalibrated).
    attributions (List[float]): One value per spaCy token: its share of the
        score (positive: for the label; negative: against it).
    baseline_score (Optional[float]): The score of the baseline (the text masked;
        integrated gradients).
    delta (Optional[float]): Completeness error of integrated gradients: the
        score's change from the baseline minus the attributions' sum.
    n_windows (int): Windows the model read.
    truncated (bool): Whether some wordpieces were read by no window.
    aggregation (str): How the windows' logits were combined.
    n_steps (Optional[int]): Integration steps (integrated gradients).
    """

    component: str
    label: str
    method: str
    score: float
    calibrated: bool
    attributions: List[float]
    baseline_score: Optional[float] = None
    delta: Optional[float] = None
    n_windows: int = 0
    truncated: bool = False
    aggregation: str = "mean"
    n_steps: Optional[int] = None
    extra: Dict[str, Any] = field(default_factory=dict)

    def summary(self) -> Dict[str, Any]:
        """RETURNS (Dict[str, Any]): Everything but the attributions (what
        doc._.bertcat_explanations holds)."""
        data = asdict(self)
        data.pop("attributions")
        return data


def import_captum() -> Any:
    """RETURNS: Captum's attribution module; BC133 where captum is missing."""
    try:
        import captum.attr
    except ImportError as e:
        raise ImportError(Errors.BC133.format(reason=e)) from e
    return captum.attr


@dataclass
class DocInputs:
    """One doc's windows as one padded block, in document order.

    input_ids, attention_mask (torch.Tensor): (1, windows, length).
    token_type_ids (Optional[torch.Tensor]): (1, windows, length) or None.
    positions (numpy.ndarray): (windows, length): the doc wordpiece each position
        holds, -1 for special tokens and padding.
    plan (DocWindows): The chunking strategy's plan.
    offsets (numpy.ndarray): (wordpieces, 2) character spans of the doc's wordpieces.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    token_type_ids: Optional[torch.Tensor]
    positions: numpy.ndarray
    plan: DocWindows
    offsets: numpy.ndarray

    @property
    def n_windows(self) -> int:
        return int(self.input_ids.shape[1])

    def baseline_ids(self, baseline_id: int) -> torch.Tensor:
        """RETURNS (torch.Tensor): The ids with every text wordpiece replaced."""
        text = torch.as_tensor(self.positions >= 0, device=self.input_ids.device)[None]
        return torch.where(text, torch.full_like(self.input_ids, baseline_id), self.input_ids)


def doc_inputs(pipe: BertCat, text: str) -> DocInputs:
    """Tokenize a text and lay out the windows the component reads at prediction."""
    shim = get_shim(pipe.model)
    tokenizer = cast(WordpieceTokenizer, shim.tokenizer)
    ids, offsets = tokenizer.encode_with_offsets(text)
    chunking: Chunker = pipe.model.attrs["chunking"]
    window = pipe.model.attrs["window"]
    plan = chunking([len(ids)], window, is_train=False)[0]
    # One group, all windows padded to the longest (no budget, no length sorting).
    batches, _ = make_batches([ids], [plan], tokenizer, 10**12, shim.device, max_padding=1.0, min_padding=10**9)
    batch = batches[0]
    order = torch.argsort(batch.rows)
    positions = numpy.full(tuple(batch.input_ids.shape), -1, dtype="int64")
    for w, win in enumerate(plan.windows):
        pieces = numpy.concatenate([numpy.arange(start, end, dtype="int64") for start, end in win] or [_NONE])
        positions[w, len(tokenizer.prefix) : len(tokenizer.prefix) + len(pieces)] = pieces
    types = batch.token_type_ids[order][None] if batch.token_type_ids is not None else None
    return DocInputs(batch.input_ids[order][None], batch.attention_mask[order][None], types, positions, plan, offsets)


class ScoreFunction:
    """The component's score of one label as a function of a block of windows:
    (k, windows, length) ids -> (k,) scores, through the real aggregation,
    calibration and activation. `calibrated` says whether the calibration is in."""

    def __init__(self, pipe: BertCat, label_index: int, use_calibration: bool, gradients: bool) -> None:
        self.model = get_shim(pipe.model).model
        self.label_index = label_index
        self.exclusive = pipe.exclusive
        calibration = pipe.calibration
        self.calibration = None
        if calibration is not None and use_calibration:
            if not gradients or getattr(calibration, "differentiable", True):
                self.calibration = calibration
        self.gradients = gradients

    @property
    def calibrated(self) -> bool:
        return self.calibration is not None

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        k, n_windows, length = input_ids.shape
        rows = torch.arange(k * n_windows, device=input_ids.device)
        types = token_type_ids.reshape(k * n_windows, length) if token_type_ids is not None else None
        batch = WindowBatch(
            input_ids.reshape(k * n_windows, length), attention_mask.reshape(k * n_windows, length), rows, types
        )
        logits = cast(Any, self.model)([batch], [n_windows] * k)
        if self.calibration is not None:
            if self.gradients:
                logits = self.calibration.apply(_TorchOn(logits.device), logits)
            else:  # any calibration, also one that is not differentiable
                values = self.calibration.apply(numpy, logits.detach().cpu().numpy())
                logits = torch.as_tensor(numpy.asarray(values), dtype=logits.dtype, device=logits.device)
        scores = torch.softmax(logits, dim=-1) if self.exclusive else torch.sigmoid(logits)
        return scores[:, self.label_index]


class _TorchOn:
    """torch as the array module of Calibration.apply, with the arrays it makes
    (`asarray`) on the logits' device (a calibration's slopes on a GPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def asarray(self, value: Any, dtype: Any = None) -> torch.Tensor:
        return torch.as_tensor(value, dtype=dtype, device=self.device)

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


def explain_doc(
    pipe: BertCat,
    doc: Doc,
    label: Optional[str] = None,
    *,
    method: Optional[str] = None,
    n_steps: int = DEFAULT_N_STEPS,
    calibrated: bool = True,
    rationale: float = DEFAULT_RATIONALE,
    store: bool = True,
) -> Explanation:
    """Explain a component's score of a doc for a label on the doc's tokens
    (what `pipe.explain(doc, ...)` runs).

    pipe (BertCat): A bertcat component (either factory), initialized.
    doc (Doc): The doc; it need not have been through the pipeline.
    label (Optional[str]): The label; None for the predicted one (bertcat: the top
        class; bertcat_multilabel: the label with the highest score).
    method (Optional[str]): One of METHODS; None for DEFAULT_METHOD.
    n_steps (int): Integration steps of integrated gradients.
    calibrated (bool): Explain the calibrated score where the component is
        calibrated (and, for gradient methods, its calibration differentiable).
    rationale (float): Share of the doc's tokens kept as its rationale spans
        (the highest positive attributions, at least one token).
    store (bool): Write the result to the doc (doc._.bertcat_attributions,
        doc._.bertcat_explanations, doc.spans[f"{name}_rationale"]).
    RETURNS (Explanation): The attributions and what they explain.
    """
    method = default_method(pipe) if method is None else method
    check_settings(pipe, method, n_steps, rationale)
    shim = get_shim(pipe.model)
    if label is not None and label not in pipe.labels:
        raise ValueError(Errors.BC130.format(name=pipe.name, label=label, labels=list(pipe.labels)))
    aggregation = pipe.model.attrs["chunking"].aggregation
    if not has_content(doc):  # no text: the model never runs, nothing to attribute
        n = len(pipe.labels)
        empty = 1.0 / n if pipe.exclusive and n else 0.0
        result = Explanation(
            pipe.name,
            label if label is not None else pipe.labels[0],
            method,
            empty,
            pipe.calibration is not None,
            [0.0] * len(doc),
            aggregation=aggregation,
            n_steps=n_steps if method == "integrated_gradients" else None,
        )
        if store:
            store_explanation(doc, result, rationale)
        return result
    inputs = doc_inputs(pipe, doc.text)
    model = cast(torch.nn.Module, shim.model)
    was_training = model.training
    model.eval()
    try:
        if label is None:  # the top class, or the multi-label label scored highest
            with torch.no_grad():
                probe = ScoreFunction(pipe, 0, calibrated, gradients=False)
                logits = cast(Any, probe.model)([_flat(inputs)], [inputs.n_windows])
                if probe.calibration is not None:
                    logits = torch.as_tensor(numpy.asarray(probe.calibration.apply(numpy, logits.cpu().numpy())))
            label = pipe.labels[int(torch.argmax(logits[0]))]
        index = pipe.labels.index(label)
        function = ScoreFunction(pipe, index, calibrated, gradients=method in GRADIENT_METHODS)
        baseline_id = _baseline_id(shim.tokenizer)
        with torch.no_grad():
            score = float(function(*_args(inputs))[0])
        result = Explanation(
            pipe.name,
            label,
            method,
            score,
            function.calibrated,
            [],
            n_windows=inputs.n_windows,
            truncated=inputs.plan.truncated,
            aggregation=aggregation,
            n_steps=n_steps if method == "integrated_gradients" else None,
        )
        if method == "occlusion":
            per_token = _occlusion(function, inputs, doc, baseline_id)
        else:
            per_position = _gradient_attributions(function, inputs, method, baseline_id, n_steps, result)
            per_token = to_tokens(per_position, inputs, doc)
    finally:
        model.train(was_training)
    result.attributions = [float(v) for v in per_token]
    if inputs.plan.truncated or _unread(inputs):
        _warn_unread(pipe, inputs, doc)
    if store:
        store_explanation(doc, result, rationale)
    return result


def default_method(pipe: BertCat) -> str:
    """RETURNS (str): The method used where none is given: DEFAULT_METHOD, or
    occlusion for a pipeline optimized for serving (it has no gradients)."""
    return "occlusion" if get_shim(pipe.model).serving is not None else DEFAULT_METHOD


def check_settings(pipe: BertCat, method: str, n_steps: int, rationale: float) -> None:
    """Raise the coded error of a bad method or setting for this component."""
    if method not in METHODS:
        raise ValueError(Errors.BC131.format(method=method, methods=", ".join(METHODS)))
    if not isinstance(n_steps, int) or isinstance(n_steps, bool) or n_steps < 1:
        raise ValueError(Errors.BC135.format(setting="n_steps", expected="a whole number of at least 1", value=n_steps))
    if not 0.0 <= rationale <= 1.0:
        raise ValueError(Errors.BC135.format(setting="rationale", expected="a share from 0 to 1", value=rationale))
    shim = get_shim(pipe.model)
    if shim.model is None:
        raise ValueError(Errors.BC134.format(name=pipe.name))
    if shim.serving is not None and method in GRADIENT_METHODS:
        from ..layers.onnx_runtime import describe

        raise ValueError(Errors.BC132.format(name=pipe.name, runtime=describe(shim.serving), method=method))
    import_captum()


def _flat(inputs: DocInputs) -> WindowBatch:
    _, n_windows, length = inputs.input_ids.shape
    types = inputs.token_type_ids[0] if inputs.token_type_ids is not None else None
    rows = torch.arange(n_windows, device=inputs.input_ids.device)
    return WindowBatch(inputs.input_ids[0], inputs.attention_mask[0], rows, types)


def _args(inputs: DocInputs) -> Tuple[torch.Tensor, ...]:
    if inputs.token_type_ids is None:
        return (inputs.input_ids, inputs.attention_mask)
    return (inputs.input_ids, inputs.attention_mask, inputs.token_type_ids)


def _baseline_id(tokenizer: Any) -> int:
    """The id that stands for a removed wordpiece: the mask token, else the
    unknown token, else padding."""
    mask = tokenizer.mask_id
    if mask is not None:
        return mask
    for token in ("[UNK]", "<unk>"):
        found = tokenizer.backend.token_to_id(token)
        if found is not None:
            return int(found)
    return int(tokenizer.pad_id)


def _gradient_attributions(
    function: ScoreFunction, inputs: DocInputs, method: str, baseline_id: int, n_steps: int, result: Explanation
) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): (windows, length) attributions of the positions."""
    attr = import_captum()
    layer = cast(Any, function.model).hf_model.get_input_embeddings()
    extra = _args(inputs)[1:]
    with torch.enable_grad():
        if method == "integrated_gradients":
            n_windows, length = inputs.n_windows, inputs.input_ids.shape[-1]
            per_call = max(1, BUDGET // (n_windows * length)) * n_windows
            ig = attr.LayerIntegratedGradients(function, layer)
            # The layer's output has one row per window, the input one per doc:
            # Captum's own delta check expects them alike, so delta is computed
            # here, as Captum defines it.
            values = ig.attribute(
                inputs.input_ids,
                baselines=inputs.baseline_ids(baseline_id),
                additional_forward_args=extra,
                n_steps=n_steps,
                internal_batch_size=per_call,
            )
            with torch.no_grad():
                baseline = float(function(inputs.baseline_ids(baseline_id), *extra)[0])
            result.baseline_score = baseline
            change = result.score - baseline
            result.delta = float(change - float(values.detach().double().sum()))
            if abs(result.delta) > DELTA_WARNING * max(abs(change), 1e-3):
                warnings.warn(
                    Warnings.BCW041.format(
                        n_steps=n_steps, delta=result.delta, share=abs(result.delta) / max(abs(change), 1e-3)
                    )
                )
        else:
            values = attr.LayerGradientXActivation(function, layer).attribute(
                inputs.input_ids, additional_forward_args=extra
            )
    # (windows, length', hidden); length' > length where the model pads its input
    # itself (Longformer, to a multiple of its attention window): the pads come last
    values = values.detach().float().sum(dim=-1).reshape(inputs.n_windows, -1)[:, : inputs.positions.shape[1]]
    return values.cpu().numpy() * (inputs.positions >= 0)


def token_of_characters(doc: Doc) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): For each character of doc.text, its token (-1 for
    the whitespace after a token)."""
    owner = numpy.full(len(doc.text), -1, dtype="int64")
    for token in doc:
        owner[token.idx : token.idx + len(token.text)] = token.i
    return owner


def wordpiece_shares(offsets: numpy.ndarray, doc: Doc) -> List[List[Tuple[int, float]]]:
    """RETURNS (List[List[Tuple[int, float]]]): For each wordpiece, the tokens it
    overlaps and each one's share of its characters (empty for a wordpiece with
    no characters, which goes to the token at its offset, if any)."""
    owner = token_of_characters(doc)
    shares: List[List[Tuple[int, float]]] = []
    for start, end in offsets:
        tokens = owner[start:end]
        tokens = tokens[tokens >= 0]
        if len(tokens) == 0:
            at = owner[start] if start < len(owner) else -1
            shares.append([(int(at), 1.0)] if at >= 0 else [])
            continue
        found, counts = numpy.unique(tokens, return_counts=True)
        shares.append([(int(t), float(c) / len(tokens)) for t, c in zip(found, counts)])
    return shares


def to_tokens(per_position: numpy.ndarray, inputs: DocInputs, doc: Doc) -> numpy.ndarray:
    """Sum position attributions onto wordpieces (over the windows that read
    them), then onto the spaCy tokens they overlap.

    RETURNS (numpy.ndarray): One attribution per token.
    """
    n_pieces = len(inputs.offsets)
    per_piece = numpy.zeros(n_pieces, dtype="f8")
    mask = inputs.positions >= 0
    numpy.add.at(per_piece, inputs.positions[mask], per_position[mask])
    out = numpy.zeros(len(doc), dtype="f8")
    for piece, shares in enumerate(wordpiece_shares(inputs.offsets, doc)):
        for token, share in shares:
            out[token] += per_piece[piece] * share
    return out


def _occlusion(function: ScoreFunction, inputs: DocInputs, doc: Doc, baseline_id: int) -> numpy.ndarray:
    """Each token's wordpieces masked in every window at once (one feature group
    per token; positions of no token form one more group, whose ablation changes
    nothing, as the baseline keeps them)."""
    attr = import_captum()
    token_of_piece = numpy.full(len(inputs.offsets), -1, dtype="int64")
    for piece, shares in enumerate(wordpiece_shares(inputs.offsets, doc)):
        if shares:
            token_of_piece[piece] = max(shares, key=lambda s: s[1])[0]
    groups = numpy.where(inputs.positions >= 0, token_of_piece[numpy.maximum(inputs.positions, 0)], -1)
    present = sorted(set(int(g) for g in groups.reshape(-1)) - {-1})
    index = {t: i for i, t in enumerate(present)}
    feature = numpy.vectorize(lambda g: index.get(int(g), len(present)))(groups) if present else groups * 0
    feature_mask = torch.as_tensor(feature, device=inputs.input_ids.device)[None]
    n_windows, length = inputs.n_windows, inputs.input_ids.shape[-1]
    per_eval = max(1, BUDGET // (n_windows * length))
    with torch.no_grad():
        values = (
            attr.FeatureAblation(function)
            .attribute(
                inputs.input_ids,
                baselines=inputs.baseline_ids(baseline_id),
                additional_forward_args=_args(inputs)[1:],
                feature_mask=feature_mask,
                perturbations_per_eval=per_eval,
            )
            .float()
            .cpu()
            .numpy()[0]
        )
    out = numpy.zeros(len(doc), dtype="f8")
    for token in present:
        where = numpy.argwhere(groups == token)[0]
        out[token] = values[where[0], where[1]]
    return out


def _unread(inputs: DocInputs) -> int:
    read = numpy.zeros(len(inputs.offsets), dtype=bool)
    read[inputs.positions[inputs.positions >= 0]] = True
    return int((~read).sum())


def _warn_unread(pipe: BertCat, inputs: DocInputs, doc: Doc) -> None:
    read = numpy.zeros(len(inputs.offsets), dtype=bool)
    read[inputs.positions[inputs.positions >= 0]] = True
    unread_tokens: Set[int] = set()
    for piece, shares in enumerate(wordpiece_shares(inputs.offsets, doc)):
        if not read[piece]:
            unread_tokens.update(t for t, _ in shares)
    if not unread_tokens:
        return
    chunking = pipe.model.attrs["chunking"]
    warnings.warn(
        Warnings.BCW040.format(
            name=pipe.name,
            detail=chunking.describe(pipe.model.attrs["window"], is_train=False),
            n_unread=len(unread_tokens),
            hint=chunking.hint(),
        )
    )


def store_explanation(doc: Doc, result: Explanation, rationale: float = DEFAULT_RATIONALE) -> None:
    """Write an explanation to its doc: doc._.bertcat_attributions,
    doc._.bertcat_explanations and the rationale spans in
    doc.spans[f"{component}_rationale"] (those of other labels are kept)."""
    for extension, value in ((ATTRIBUTIONS, result.attributions), (EXPLANATIONS, result.summary())):
        by_label = (doc._.get(extension) or {}).get(result.component) or {}
        by_label[result.label] = value
        set_component_value(doc, extension, result.component, by_label)
    key = rationale_key(result.component)
    kept = [span for span in doc.spans.get(key, []) if span.label_ != result.label]
    doc.spans[key] = SpanGroup(doc, name=key, spans=kept + rationale_spans(doc, result, rationale))


def rationale_key(component: str) -> str:
    """RETURNS (str): The doc.spans key of a component's rationales."""
    return f"{component}_rationale"


def rationale_spans(doc: Doc, result: Explanation, share: float = DEFAULT_RATIONALE) -> List[Span]:
    """RETURNS (List[Span]): The runs of adjacent tokens among the top `share` of
    the doc's tokens by positive attribution (at least one token where any is
    positive), labelled with the explained label."""
    values = numpy.asarray(result.attributions, dtype="f8")
    positive = numpy.flatnonzero(values > 0)
    if not len(positive) or share <= 0:
        return []
    k = max(1, int(math.ceil(share * len(doc))))
    top = sorted(positive[numpy.argsort(-values[positive])][:k].tolist())
    spans: List[Span] = []
    start = prev = top[0]
    for i in top[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        spans.append(Span(doc, start, prev + 1, label=result.label))
        if i is not None:
            start = prev = i
    return spans


def explanations_of(doc: Doc, component: Optional[str] = None) -> List[Tuple[Dict[str, Any], List[float]]]:
    """RETURNS (List[Tuple[Dict[str, Any], List[float]]]): The doc's stored
    explanations (of one component, or all): each one's summary and
    attributions, in the order they were stored."""
    found = []
    attributions = doc._.get(ATTRIBUTIONS) or {}
    for name, by_label in (doc._.get(EXPLANATIONS) or {}).items():
        if component is not None and name != component:
            continue
        for label, summary in by_label.items():
            found.append((summary, list(attributions.get(name, {}).get(label, []))))
    return found


def install(function: Callable[..., Any]) -> None:
    """Install `function` as what `pipe.explain` calls (components/side_channels.py)."""
    from ..components.side_channels import set_explainer

    set_explainer(function)


__all__: Sequence[str] = [
    "DEFAULT_METHOD",
    "DEFAULT_N_STEPS",
    "Explanation",
    "METHODS",
    "explain_doc",
    "explanations_of",
    "rationale_spans",
    "store_explanation",
    "to_tokens",
]
