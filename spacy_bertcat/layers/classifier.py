"""The thinc layer: ``Model[List[Doc], Floats2d]`` from documents to document logits.

forward: tokenize each document once (whole) -> plan windows with the chunking
strategy -> length-sorted, budgeted batches (``plan_batches``, also what the ONNX
export samples) -> the shim's torch model -> logits.
init: load the pretrained model and tokenizer by name (the only place that may touch
the network) and size the head from the labels.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import torch
from spacy.tokens import Doc
from thinc.api import Model, torch2xp, xp2torch
from thinc.types import Floats2d

from ..errors import Errors, SettingError, Warnings
from .adapter import LoraAdapter
from .batching import MIN_PADDING, WindowBatch, make_batches
from .chunking import Chunker, DocWindows
from .hf_loading import load_pretrained_config, load_pretrained_model, load_tokenizer
from .shim import BertCatShim
from .tokenizer import WordpieceTokenizer
from .torch_model import WindowClassifier

# The max_length of a model whose tokenizer states none (transformers' sentinel).
_NO_LIMIT = 10**6


@dataclass
class TruncationStats:
    """Documents seen in training and prediction, and those whose text the chunking
    did not read whole. Not serialized (thinc skips attrs msgpack cannot encode)."""

    train_docs: int = 0
    train_truncated: int = 0
    predict_docs: int = 0
    predict_truncated: int = 0
    last_batch: List[bool] = field(default_factory=list)

    def record(self, plans: List[DocWindows], is_train: bool) -> None:
        self.last_batch = [plan.truncated for plan in plans]
        prefix = "train" if is_train else "predict"
        setattr(self, f"{prefix}_docs", getattr(self, f"{prefix}_docs") + len(plans))
        setattr(self, f"{prefix}_truncated", getattr(self, f"{prefix}_truncated") + sum(self.last_batch))


def BertClassifierModel(
    name: str,
    *,
    chunking: Chunker,
    max_length: int,
    max_batch_wordpieces: int,
    tokenizer_name: Optional[str],
    tokenizer_config: Dict[str, Any],
    dropout: Dict[str, Optional[float]],
    shim_cfg: Dict[str, Any],
    adapter: Optional[LoraAdapter] = None,
    nO: Optional[int] = None,
    pooling: str = "first",
) -> Model[List[Doc], Floats2d]:
    """Build the classifier layer; weights are loaded by `initialize`."""
    return Model(
        "bertcat_classifier",
        forward,
        init=init,
        shims=[BertCatShim(shim_cfg, adapter)],
        dims={"nO": nO},
        attrs={
            "name": name,
            "tokenizer_name": tokenizer_name,
            "tokenizer_config": dict(tokenizer_config),
            "dropout": dict(dropout),
            "max_length": max_length,
            "max_batch_wordpieces": max_batch_wordpieces,
            "window": None,  # wordpieces of text per window, set at initialize
            "labels": [],  # set by the pipe before initialize, for id2label
            "chunking": chunking,
            "pooling": pooling,  # "first" (the Hugging Face head) or "mean" (torch_model.py)
            "truncation": TruncationStats(),
        },
    )


def get_shim(model: Model) -> BertCatShim:
    """RETURNS (BertCatShim): The shim of a bertcat classifier model."""
    for node in model.walk():
        for shim in node.shims:
            if isinstance(shim, BertCatShim):
                return shim
    raise ValueError(f"Model '{model.name}' holds no bertcat classifier.")


def resize_output(model: Model, labels: List[str]) -> Model:
    """Grow an initialized classifier to one output per label (spaCy's
    `resize_output`, for a label added after initialize): the head's output layer
    keeps its rows, so the existing labels' logits stay what they were (to float
    rounding), and the new
    rows start as a new head does (see BertCatShim.resize_head). Raises a ValueError
    saying why where the head cannot grow (a serving model: BC065).

    RETURNS (Model): The model, resized in place.
    """
    shim = cast(BertCatShim, model.shims[0])
    shim.resize_head(labels)
    model.set_dim("nO", len(labels), force=True)
    model.attrs["labels"] = list(labels)
    return model


def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[Floats2d, Callable]:
    shim = cast(BertCatShim, model.shims[0])
    if shim.model is None:
        raise ValueError(Errors.BC017.format(name=model.attrs["name"]))
    if not docs:
        return model.ops.alloc2f(0, model.get_dim("nO")), lambda d_logits: []
    batches, counts, plans = plan_batches(model, [doc.text for doc in docs], is_train)
    model.attrs["truncation"].record(plans, is_train)
    if not is_train:
        return cast(Floats2d, torch2xp(shim.predict(batches, counts))), lambda d_logits: []
    recompute = sum(batch.n_wordpieces for batch in batches) > model.attrs["max_batch_wordpieces"]
    logits, backprop_torch = shim.begin_update(batches, counts, recompute=recompute)

    def backprop(d_logits: Floats2d) -> List[Doc]:
        backprop_torch(xp2torch(d_logits, device=shim.device))
        return []

    return cast(Floats2d, torch2xp(logits.detach())), backprop


def plan_batches(
    model: Model,
    texts: List[str],
    is_train: bool,
    *,
    device: Optional[torch.device] = None,
    min_padding: int = MIN_PADDING,
) -> Tuple[List[WindowBatch], List[int], List[DocWindows]]:
    """The classifier's path from texts to window batches: tokenize each text once
    (whole), plan its windows with the chunking strategy (training's or
    prediction's plan, `is_train`), and group the windows into length-sorted padded
    batches within the wordpiece budget. Used by `forward` and by the ONNX export
    (serving/export.py), so both see the same windows.

    device (Optional[torch.device]): Where the batches go (default: the shim's).
    min_padding (int): Padding a row may always carry (see layers/batching.py).
    RETURNS (Tuple[List[WindowBatch], List[int], List[DocWindows]]): The batches,
        the number of windows of each text, and each text's plan.
    """
    shim = cast(BertCatShim, model.shims[0])
    doc_ids = shim.tokenizer.encode(texts)  # type: ignore[union-attr]
    chunking: Chunker = model.attrs["chunking"]
    plans = chunking([len(ids) for ids in doc_ids], model.attrs["window"], is_train=is_train)
    batches, counts = make_batches(
        doc_ids,
        plans,
        cast(WordpieceTokenizer, shim.tokenizer),
        model.attrs["max_batch_wordpieces"],
        shim.device if device is None else device,
        min_padding=min_padding,
    )
    return batches, counts, plans


def init(model: Model, X: Optional[List[Doc]] = None, Y: Optional[Floats2d] = None) -> None:
    shim = cast(BertCatShim, model.shims[0])
    if Y is not None:
        model.set_dim("nO", Y.shape[1], force=True)
    n_labels = model.get_dim("nO")
    labels = list(model.attrs["labels"]) or [f"LABEL_{i}" for i in range(n_labels)]
    name = model.attrs["name"]
    config = load_pretrained_config(name, labels, model.attrs["dropout"])
    hf_model = load_pretrained_model(name, config, shim.cfg["attn_implementation"])
    tokenizer_name = model.attrs["tokenizer_name"] or name
    tokenizer, tokenizer_limit = load_tokenizer(tokenizer_name, model.attrs["tokenizer_config"], config.pad_token_id)
    n_embed = hf_model.get_input_embeddings().num_embeddings
    if tokenizer.vocab_size > n_embed:
        raise SettingError(
            Errors.BC016.format(tokenizer=tokenizer_name, n_vocab=tokenizer.vocab_size, model=name, n_embed=n_embed),
            "model.tokenizer_name",
        )
    pooling = model.attrs.get("pooling", "first")
    shim.set_model(WindowClassifier(hf_model, model.attrs["chunking"].aggregation, pooling), tokenizer)
    limit = shim.encoder_map.position_limit  # type: ignore[union-attr]
    max_length = resolve_max_length(model.attrs["max_length"], limit, tokenizer_limit)
    window = max_length - tokenizer.n_special
    model.attrs["chunking"].validate(window)
    model.attrs["window"] = window


def resolve_max_length(requested: int, position_limit: Optional[int], tokenizer_limit: Optional[int]) -> int:
    """Cap max_length at the model's limit: the wordpieces its position table can
    index (offset included, see EncoderMap) and the tokenizer's stated maximum."""
    import warnings

    limit = position_limit or _NO_LIMIT
    if tokenizer_limit is not None and tokenizer_limit < _NO_LIMIT:
        limit = min(limit, tokenizer_limit)
    if requested > limit:
        warnings.warn(Warnings.BCW002.format(requested=requested, limit=limit))
        return limit
    return requested
