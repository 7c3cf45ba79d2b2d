"""Loading Hugging Face models and tokenizers: from a name at initialize, from a
stored config on deserialization (no network, no pickle)."""
import contextlib
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import Errors
from .tokenizer import WordpieceTokenizer

# Our dropout settings, and the config attribute each model family uses for them.
DROPOUT_ATTRS = {
    "hidden_dropout": ("hidden_dropout_prob", "dropout", "hidden_dropout"),
    "attention_dropout": ("attention_probs_dropout_prob", "attention_dropout"),
    "classifier_dropout": ("classifier_dropout", "seq_classif_dropout"),
}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports and progress bars while loading."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def load_pretrained_config(
    name: str, labels: List[str], dropout: Dict[str, Optional[float]]
) -> Any:
    """Load a model's config with the label mapping and dropout settings applied."""
    from transformers import AutoConfig

    if looks_like_path(name) and not Path(name).expanduser().is_dir():  # don't ask the Hub
        raise ValueError(Errors.BC006.format(model=name, reason="no such directory"))
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ValueError(Errors.BC006.format(model=name, reason=_reason(e))) from e
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    apply_dropout(config, dropout)
    return config


def apply_dropout(config: Any, dropout: Dict[str, Optional[float]]) -> None:
    """Set the dropout rates that are not None on a HF config, whatever its family."""
    for setting, value in dropout.items():
        if value is None:
            continue
        attrs = [a for a in DROPOUT_ATTRS[setting] if hasattr(config, a)]
        if not attrs:
            detail = f"models of type '{config.model_type}' have no {setting} setting"
            raise ValueError(Errors.BC022.format(setting=setting, value=value, detail=detail))
        setattr(config, attrs[0], float(value))


def load_pretrained_model(name: str, config: Any, attn_implementation: Optional[str]) -> Any:
    """Load pretrained weights; a head of another size is re-initialized."""
    from transformers import AutoModelForSequenceClassification

    def load(attn: Optional[str]) -> Any:
        with quiet_transformers():
            return AutoModelForSequenceClassification.from_pretrained(
                name, config=config, ignore_mismatched_sizes=True, attn_implementation=attn
            )

    try:
        try:
            return load(attn_implementation)
        except ValueError as e:  # this model type does not support SDPA
            if attn_implementation is None or "attn" not in str(e).lower():
                raise
            return load(None)
    except OSError as e:
        raise ValueError(Errors.BC006.format(model=name, reason=_reason(e))) from e


def model_from_config(config_dict: Dict[str, Any], attn_implementation: Optional[str]) -> Any:
    """Build a sequence classifier with random weights from a stored config dict."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config_dict = dict(config_dict)
    with quiet_transformers():
        config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
        try:
            return AutoModelForSequenceClassification.from_config(
                config, attn_implementation=attn_implementation
            )
        except ValueError:
            return AutoModelForSequenceClassification.from_config(config)


def load_tokenizer(
    name: str, tokenizer_config: Dict[str, Any], pad_token_id: Optional[int]
) -> Tuple[WordpieceTokenizer, Optional[int]]:
    """Load the fast tokenizer of a model, for the wordpiece ids of whole documents.

    RETURNS (Tuple[WordpieceTokenizer, Optional[int]]): The tokenizer and the
        tokenizer's model_max_length, if it states one.
    """
    from transformers import AutoTokenizer

    try:
        with quiet_transformers():
            hf_tokenizer = AutoTokenizer.from_pretrained(name, **tokenizer_config)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(Errors.BC021.format(model=name, reason=_reason(e))) from e
    if not getattr(hf_tokenizer, "is_fast", False):
        raise ValueError(Errors.BC007.format(model=name))
    pad_id = hf_tokenizer.pad_token_id
    if pad_id is None:
        pad_id = pad_token_id if pad_token_id is not None else 0
    limit = getattr(hf_tokenizer, "model_max_length", None)
    return WordpieceTokenizer(hf_tokenizer.backend_tokenizer, pad_id=pad_id), limit


def looks_like_path(name: str) -> bool:
    """Whether a name can only be a path (Hub ids are "name" or "org/name")."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
