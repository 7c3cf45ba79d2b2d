"""Loading Hugging Face models and tokenizers: from a name at initialize, from a
stored config on deserialization (no network, no pickle)."""

import contextlib
import copy
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from ..errors import Errors, SettingError
from .families import apply_dropout, check_encoder_config, check_encoder_model
from .tokenizer import WordpieceTokenizer


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


def load_pretrained_config(name: str, labels: List[str], dropout: Dict[str, Optional[float]]) -> Any:
    """Load a model's config with the label mapping and dropout settings applied."""
    from transformers import AutoConfig

    if looks_like_path(name) and not Path(name).expanduser().is_dir():  # don't ask the Hub
        raise SettingError(Errors.BC006.format(model=name, reason="no such directory"), "model.name")
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise SettingError(Errors.BC006.format(model=name, reason=_reason(e)), "model.name") from e
    check_encoder_config(config, name)
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    apply_dropout(config, dropout)
    return config


def load_pretrained_model(name: str, config: Any, attn_implementation: Optional[str]) -> Any:
    """Load pretrained weights; a head of another size is re-initialized."""
    from transformers import AutoModelForSequenceClassification

    def load(attn: Optional[str]) -> Any:
        kwargs = {} if attn is None else {"attn_implementation": attn}
        return AutoModelForSequenceClassification.from_pretrained(
            name, config=copy.deepcopy(config), ignore_mismatched_sizes=True, **kwargs
        )

    try:
        with quiet_transformers():
            hf_model = with_attention_fallback(load, attn_implementation)
    except OSError as e:
        raise SettingError(Errors.BC006.format(model=name, reason=_reason(e)), "model.name") from e
    check_encoder_model(hf_model, name)
    return hf_model


def model_from_config(config_dict: Dict[str, Any], attn_implementation: Optional[str]) -> Any:
    """Build a sequence classifier with random weights from a stored config dict.
    The attention implementation is a setting of this load, not of the saved
    pipeline: each attempt builds its config afresh (transformers 5 writes the
    implementation it tried into the config object)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    def build(attn: Optional[str]) -> Any:
        settings = dict(config_dict)
        settings.pop("_attn_implementation", None)
        config = AutoConfig.for_model(settings.pop("model_type"), **settings)
        kwargs = {} if attn is None else {"attn_implementation": attn}
        return AutoModelForSequenceClassification.from_config(config, **kwargs)

    with quiet_transformers():
        return with_attention_fallback(build, attn_implementation)


def base_model_from_pretrained(name: str, config_dict: Dict[str, Any], attn_implementation: Optional[str]) -> Any:
    """Load a pretrained encoder by name (local directory or the Hugging Face cache)
    into a classifier of the stored config (labels, dropout); the head is left
    random, for the stored one to replace."""
    from transformers import AutoConfig

    settings = dict(config_dict)
    settings.pop("_attn_implementation", None)
    config = AutoConfig.for_model(settings.pop("model_type"), **settings)
    return load_pretrained_model(name, config, attn_implementation)


def with_attention_fallback(build: Callable[[Optional[str]], Any], attn_implementation: Optional[str]) -> Any:
    """Build with the requested attention implementation; if this model type does
    not support it (DeBERTa, MPNet, Funnel have no SDPA), with transformers' default."""
    try:
        return build(attn_implementation)
    except (ValueError, ImportError) as e:
        message = str(e).lower()
        if attn_implementation is None or not ("attn" in message or "attention" in message):
            raise
        return build(None)


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
    except ImportError as e:  # a tokenizer with parts in another package (RoFormer: rjieba)
        detail = Errors.BC102.format(what="tokenizer", model=name, package=missing_package(e), reason=_reason(e))
        raise SettingError(detail, "model.tokenizer_name") from e
    except (OSError, ValueError, TypeError) as e:
        raise SettingError(Errors.BC021.format(model=name, reason=_reason(e)), "model.tokenizer_name") from e
    if not getattr(hf_tokenizer, "is_fast", False):
        raise SettingError(Errors.BC007.format(model=name), "model.tokenizer_name")
    pad_id = hf_tokenizer.pad_token_id
    if pad_id is None:
        pad_id = pad_token_id if pad_token_id is not None else 0
    limit = getattr(hf_tokenizer, "model_max_length", None)
    backend = hf_tokenizer.backend_tokenizer
    try:  # the pipeline stores the tokenizer as its JSON: find out now, not at the first save
        WordpieceTokenizer.check_serializable(backend)
    except Exception as e:
        raise SettingError(Errors.BC054.format(model=name, reason=_reason(e)), "model.tokenizer_name") from e
    return WordpieceTokenizer(backend, pad_id=pad_id), limit


def missing_package(error: ImportError) -> str:
    """RETURNS (str): The package an ImportError asks for: the module that was
    not found, or the one transformers' message names ("You need to install
    rjieba ...", "requires the protobuf library")."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        return error.name.split(".")[0]
    text = str(error)
    for pattern in (
        r"install `?([A-Za-z0-9_.\-]+)`? to",
        r"install `?([A-Za-z0-9_.\-]+)",
        r"requires the `?([A-Za-z0-9_.\-]+)`? library",
    ):
        found = re.search(pattern, text)
        if found:
            return found.group(1).rstrip(".").lower()
    return error.name or "named in the message"


def is_known_model_type(model_type: Optional[str]) -> bool:
    """Whether the installed transformers can build a model of this type."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    return model_type is not None and model_type in CONFIG_MAPPING


def is_local_dir(name: Optional[str]) -> bool:
    """Whether a model name is a folder from the working directory."""
    return bool(name) and Path(str(name)).expanduser().is_dir()


def looks_like_path(name: str) -> bool:
    """Whether a name can only be a path (Hub ids are "name" or "org/name")."""
    return name.startswith(("/", ".", "~")) or "\\" in name or name.count("/") > 1


def _reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
