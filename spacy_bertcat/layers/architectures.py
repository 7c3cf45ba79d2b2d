"""Registered model architectures (the ``[components.*.model]`` block)."""

from typing import Any, Dict, List, Optional

from spacy.tokens import Doc
from spacy.util import SimpleFrozenDict, registry
from thinc.api import Model
from thinc.types import Floats2d

from ..errors import invalid_setting
from .adapter import LoraAdapter
from .chunking import Chunker
from .classifier import BertClassifierModel

# Attention implementations bertcat accepts (transformers' own names; null: its default).
ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flex_attention", None)
# What the classifier reads of a window (layers/torch_model.py).
POOLINGS = ("first", "mean", "normalized_mean")


@registry.architectures("spacy-bertcat.BertClassifier.v1")
def build_bert_classifier_v1(
    name: str,
    chunking: Chunker,
    *,
    max_length: int = 512,
    max_batch_wordpieces: int = 16384,
    mixed_precision: bool = False,
    amp_dtype: str = "bfloat16",
    tokenizer_name: Optional[str] = None,
    tokenizer_config: Dict[str, Any] = SimpleFrozenDict(),
    attn_implementation: Optional[str] = "sdpa",
    freeze_embeddings: bool = False,
    freeze_layers: int = 0,
    head_lr_scale: float = 1.0,
    layer_lr_decay: float = 1.0,
    hidden_dropout: Optional[float] = None,
    attention_dropout: Optional[float] = None,
    classifier_dropout: Optional[float] = None,
    adapter: Optional[LoraAdapter] = None,
    pooling: str = "first",
    nO: Optional[int] = None,
) -> Model[List[Doc], Floats2d]:
    """A Hugging Face sequence classifier (AutoModelForSequenceClassification) over
    wordpiece windows of each document, returning one row of logits per document.

    name (str): Hub id or local directory of a BERT-family model (BERT, DistilBERT,
        RoBERTa, MiniLM, ...). Loaded at initialize; a trained pipeline stores the
        weights and never needs the name again.
    chunking (Chunker): Which wordpieces are read, see spacy-bertcat.head.v1,
        spacy-bertcat.head_tail.v1 and spacy-bertcat.sliding_window.v1.
    max_length (int): Wordpieces per window, special tokens included; capped at
        the model's limit.
    max_batch_wordpieces (int): Most wordpieces (padding included) per forward
        pass; bounds memory for long documents and large batches.
    mixed_precision (bool): Autocast to amp_dtype on a CUDA device.
    amp_dtype (str): "bfloat16" (no loss scaling needed) or "float16" (with
        dynamic loss scaling).
    tokenizer_name (Optional[str]): Load the tokenizer from here instead of name.
    tokenizer_config (Dict[str, Any]): Keyword arguments for
        AutoTokenizer.from_pretrained, e.g. {"do_lower_case": true}.
    attn_implementation (Optional[str]): "sdpa" (fused attention where the model
        supports it), "eager", or null for transformers' default.
    freeze_embeddings (bool): Never train the embeddings.
    freeze_layers (int): Never train the bottom N encoder layers.
    head_lr_scale (float): Learning-rate multiplier of the new head (classifier,
        pooler, window attention); 2-10 helps a fresh head catch up.
    layer_lr_decay (float): Each encoder layer learns this factor times the rate
        of the layer above (the top layer at the base rate; Sun et al. 2019: 0.95).
    hidden_dropout (Optional[float]): The encoder's hidden dropout (BERT's
        hidden_dropout_prob, DistilBERT's dropout); null keeps the model's.
    attention_dropout (Optional[float]): The encoder's attention dropout; null
        keeps the model's.
    classifier_dropout (Optional[float]): Dropout before the classifier; null keeps
        the model's.
    adapter (Optional[LoraAdapter]): Train LoRA adapters instead of the encoder
        (spacy-bertcat.lora.v1, needs peft); null trains the encoder itself.
    pooling (str): What the classifier reads of a window: "first", the Hugging
        Face head (BERT: the pooler on the first token); "mean", one linear layer
        on the mean of the last hidden states, the sentence-transformers embedding
        (what the few-shot warm-up trains, see docs/guides/few-shot.md);
        "normalized_mean", the same on that embedding scaled to unit length (as
        sentence-transformers bodies with a Normalize module give it).
    nO (Optional[int]): Number of labels, set at initialize.
    """

    def invalid(setting: str, value: Any, detail: str) -> ValueError:
        return invalid_setting(setting, value, detail, "model")

    if freeze_layers < 0:
        raise invalid("freeze_layers", freeze_layers, "it must be 0 or more")
    value: Any
    for setting, value in (("max_length", max_length), ("max_batch_wordpieces", max_batch_wordpieces)):
        if value < 8:
            raise invalid(setting, value, "it must be at least 8 wordpieces")
    for setting, value in (("head_lr_scale", head_lr_scale), ("layer_lr_decay", layer_lr_decay)):
        if value <= 0:
            raise invalid(setting, value, "it must be positive")
    for setting, value in (
        ("hidden_dropout", hidden_dropout),
        ("attention_dropout", attention_dropout),
        ("classifier_dropout", classifier_dropout),
    ):
        if value is not None and not 0.0 <= value < 1.0:
            raise invalid(setting, value, "a dropout rate must be at least 0 and below 1")
    if pooling not in POOLINGS:
        raise invalid("pooling", pooling, f"use one of {POOLINGS}")
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise invalid("attn_implementation", attn_implementation, f"use one of {ATTN_IMPLEMENTATIONS}")
    return BertClassifierModel(
        name,
        chunking=chunking,
        max_length=max_length,
        max_batch_wordpieces=max_batch_wordpieces,
        tokenizer_name=tokenizer_name,
        tokenizer_config=tokenizer_config,
        dropout={
            "hidden_dropout": hidden_dropout,
            "attention_dropout": attention_dropout,
            "classifier_dropout": classifier_dropout,
        },
        adapter=adapter,
        pooling=pooling,
        shim_cfg={
            "name": name,
            "freeze_embeddings": freeze_embeddings,
            "freeze_layers": freeze_layers,
            "head_lr_scale": head_lr_scale,
            "layer_lr_decay": layer_lr_decay,
            "mixed_precision": mixed_precision,
            "amp_dtype": amp_dtype,
            "attn_implementation": attn_implementation,
        },
        nO=nO,
    )
