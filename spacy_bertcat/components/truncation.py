"""What a classifier component reports about the text its chunking strategy leaves
unread: counts of truncated documents in training and prediction, the warnings
(BCW001 at prediction, BCW005 over the training data), and the training length by
which `spacy-bertcat.wordpiece_length.v1` groups batches.

``TruncationReports`` is a mixin of ``BertCat``; the counts live in the model's
``truncation`` attribute (layers/classifier.py).
"""

import logging
import warnings
from typing import TYPE_CHECKING, Dict, List

from spacy.tokens import Doc
from thinc.api import Model

from ..data.text import text_length
from ..errors import Warnings
from ..layers.classifier import get_shim

logger = logging.getLogger("spacy.bertcat")


class TruncationReports:
    """Truncation counts and warnings of a classifier component."""

    if TYPE_CHECKING:  # what the component provides (BertCat)
        name: str
        model: Model
        _warned_truncation: bool

    @property
    def truncation_stats(self) -> Dict[str, int]:
        """RETURNS (Dict[str, int]): Documents seen in training and prediction since
        the component was created, and how many were truncated."""
        stats = self.model.attrs["truncation"]
        return {
            key: getattr(stats, key) for key in ("train_docs", "train_truncated", "predict_docs", "predict_truncated")
        }

    def _warn_truncation(self, n_docs: int) -> None:
        truncated = sum(self.model.attrs["truncation"].last_batch)
        if truncated and not self._warned_truncation:
            self._warned_truncation = True
            chunking = self.model.attrs["chunking"]
            detail = chunking.describe(self.model.attrs["window"], is_train=False)
            warnings.warn(
                Warnings.BCW001.format(
                    name=self.name,
                    n_truncated=truncated,
                    n_docs=n_docs,
                    strategy=chunking.name,
                    detail=detail,
                    hint=chunking.hint(),
                )
            )

    def training_length(self, doc: Doc) -> int:
        """RETURNS (int): The wordpieces of the doc's text, up to one window: the
        length by which `spacy-bertcat.wordpiece_length.v1` groups training batches."""
        shim = get_shim(self.model)
        if shim.tokenizer is None:
            return text_length(doc)
        window = self.model.attrs["window"]
        text = doc.text
        # Long documents are not tokenized whole for a length: 50 characters per
        # wordpiece of the window is far more than any text needs to fill it.
        return min(len(shim.tokenizer.encode([text[: 50 * window]])[0]), window)

    def _report_training_truncation(self, docs: List[Doc]) -> None:
        shim = get_shim(self.model)
        assert shim.tokenizer is not None
        lengths = [len(ids) for ids in shim.tokenizer.encode([doc.text for doc in docs])]
        chunking, window = self.model.attrs["chunking"], self.model.attrs["window"]
        n_truncated = sum(chunking.truncates(n, window, is_train=True) for n in lengths)
        if n_truncated:
            logger.warning(
                Warnings.BCW005.format(
                    name=self.name,
                    n_truncated=n_truncated,
                    n_docs=len(docs),
                    share=n_truncated / len(docs),
                    strategy=chunking.name,
                    detail=chunking.describe(window, is_train=True),
                )
            )
