"""spacy-bertcat: fine-tune BERT-family sequence classifiers inside spaCy pipelines.

Importing the package registers the factories (``bertcat``, ``bertcat_multilabel``),
the architecture, the chunking strategies, the LoRA adapter setting, the scorer, the batcher, the training
callbacks and the tune logger; spaCy also finds them through entry points, so users need not import it.
"""

from .about import __version__
from .components import loss, scorers  # noqa: F401  (registrations)
from .components.bertcat import BertCat, make_bertcat
from .components.multilabel import BertCatMultilabel, make_bertcat_multilabel
from .explain import explaining  # the room installs what pipe.explain calls
from .layers.adapter import configure_lora_v1
from .layers.architectures import build_bert_classifier_v1
from .layers.chunking import configure_head_tail_v1, configure_head_v1, configure_sliding_window_v1
from .training.batching import configure_batch_by_length_v1
from .training.checkpoint import create_atomic_save_v1
from .training.unfreezing import create_gradual_unfreezing_v1
from .tune.logger import create_tune_logger_v1

__all__ = [
    "__version__",
    "BertCat",
    "BertCatMultilabel",
    "make_bertcat",
    "make_bertcat_multilabel",
    "explaining",
    "build_bert_classifier_v1",
    "configure_head_v1",
    "configure_head_tail_v1",
    "configure_sliding_window_v1",
    "configure_lora_v1",
    "create_gradual_unfreezing_v1",
    "configure_batch_by_length_v1",
    "create_atomic_save_v1",
    "create_tune_logger_v1",
]
