"""What differs between encoder families, and which models bertcat refuses.

Everything structural (layers, embeddings, head, position limit) is found from the
model itself (encoder_map.py). What remains is configuration: the names each
family's config gives its dropout rates, and the families the test matrix verifies
(tests/test_families.py; docs/guides/families.md's table is generated from it).
"""

import inspect
import warnings
from typing import Any, Dict, Optional, Tuple

from ..errors import Errors, SettingError, Warnings

# The families tests/test_families.py trains, saves, loads and checks option by
# option, under transformers 4.53 and 5 (the last group exists only in 5).
TESTED_FAMILIES = (
    "albert",
    "bert",
    "big_bird",
    "camembert",
    "convbert",
    "data2vec-text",
    "deberta",
    "deberta-v2",
    "distilbert",
    "electra",
    "ernie",
    "funnel",
    "longformer",
    "megatron-bert",
    "mobilebert",
    "modernbert",
    "mpnet",
    "roberta",
    "roberta-prelayernorm",
    "xlm-roberta",
    "xlm-roberta-xl",
    "eurobert",
    "gte",
    "jina_embeddings_v3",
    "nomic_bert",
)

DropoutNames = Dict[str, Tuple[str, ...]]
_BERT_DROPOUT: DropoutNames = {
    "hidden_dropout": ("hidden_dropout_prob",),
    "attention_dropout": ("attention_probs_dropout_prob",),
    "classifier_dropout": ("classifier_dropout",),
}
# Where a family's config calls them otherwise; () = the family has no such rate.
_DROPOUT_OVERRIDES: Dict[str, DropoutNames] = {
    "distilbert": {
        "hidden_dropout": ("dropout",),
        "attention_dropout": ("attention_dropout",),
        "classifier_dropout": ("seq_classif_dropout",),
    },
    "albert": {"classifier_dropout": ("classifier_dropout_prob",)},
    # DeBERTa's head reads cls_dropout (not declared by its config) and its pooler
    # pooler_dropout.
    "deberta": {"classifier_dropout": ("cls_dropout", "pooler_dropout")},
    "deberta-v2": {"classifier_dropout": ("cls_dropout", "pooler_dropout")},
    "mpnet": {"classifier_dropout": ()},
    "longformer": {"classifier_dropout": ()},
    "megatron-bert": {"classifier_dropout": ()},
    "funnel": {
        "hidden_dropout": ("hidden_dropout",),
        "attention_dropout": ("attention_dropout",),
        "classifier_dropout": (),
    },
    "modernbert": {
        "hidden_dropout": ("embedding_dropout", "mlp_dropout"),
        "attention_dropout": ("attention_dropout",),
    },
    "eurobert": {"hidden_dropout": (), "attention_dropout": ("attention_dropout",), "classifier_dropout": ()},
}


def dropout_names(model_type: str, config: Any) -> DropoutNames:
    """RETURNS (DropoutNames): The config attributes behind each dropout setting."""
    if model_type in _DROPOUT_OVERRIDES or model_type in TESTED_FAMILIES:
        return {**_BERT_DROPOUT, **_DROPOUT_OVERRIDES.get(model_type, {})}
    return {k: tuple(a for a in v if hasattr(config, a)) for k, v in _BERT_DROPOUT.items()}


def apply_dropout(config: Any, dropout: Dict[str, Optional[float]]) -> None:
    """Set the dropout rates that are not None on a HF config, under the names the
    model's family uses, or raise a clear error where it has no equivalent."""
    names = dropout_names(config.model_type, config)
    for setting, value in dropout.items():
        if value is None:
            continue
        if not 0.0 <= value < 1.0:
            detail = "a dropout rate must be at least 0 and below 1"
            raise SettingError(Errors.BC022.format(setting=setting, value=value, detail=detail), f"model.{setting}")
        if not names[setting]:
            hint = (
                "its classification head uses the hidden dropout: set hidden_dropout instead, "
                if setting == "classifier_dropout" and names["hidden_dropout"]
                else ""
            )
            raise SettingError(
                Errors.BC055.format(model_type=config.model_type, setting=setting, hint=hint), f"model.{setting}"
            )
        for attr in names[setting]:
            setattr(config, attr, float(value))


def check_encoder_config(config: Any, name: str) -> None:
    """Refuse models that are not bidirectional (BERT-family) encoders, before any
    weights are loaded; warn for encoders outside the tested families."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    model_type = config.model_type
    if getattr(config, "is_encoder_decoder", False) or getattr(config, "is_decoder", False):
        reason = "it is an encoder-decoder or decoder model"
    elif model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        reason = "it is not a bidirectional encoder (no masked-language-model form in transformers)"
    else:
        if model_type not in TESTED_FAMILIES:
            warnings.warn(
                Warnings.BCW006.format(model=name, model_type=model_type, families=", ".join(TESTED_FAMILIES))
            )
        return
    raise SettingError(Errors.BC051.format(model=name, model_type=model_type, reason=reason), "model.name")


def check_encoder_model(hf_model: Any, name: str) -> None:
    """Refuse a classifier that cannot be told which wordpieces are padding."""
    if "attention_mask" not in inspect.signature(hf_model.forward).parameters:
        reason = "its forward pass takes no attention mask, so it would read the padding of short windows as text"
        raise SettingError(
            Errors.BC051.format(model=name, model_type=hf_model.config.model_type, reason=reason), "model.name"
        )
