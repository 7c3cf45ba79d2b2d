"""The model's fast tokenizer, reduced to what chunking needs.

Documents are tokenized once, whole, without special tokens, truncation or padding;
chunking then slices the wordpiece ids and frames each window with the model's own
special tokens. Only the Rust ``tokenizers.Tokenizer`` is kept and serialized (as its
JSON), so a saved pipeline does not depend on transformers' tokenizer classes, which
differ between transformers 4 and 5.
"""
import os
from typing import Any, Dict, List, Sequence, Tuple

import numpy
import srsly
from tokenizers import Tokenizer

Ids = numpy.ndarray  # 1d int64 array of wordpiece ids
_PARALLELISM = "TOKENIZERS_PARALLELISM"
_set_for_fork = False


def _before_fork() -> None:
    """Forked workers (`nlp.pipe(n_process=2)`) must not use the Rust tokenizer's
    thread pool; saying so before the fork spares them its deadlock warning."""
    global _set_for_fork
    if _PARALLELISM not in os.environ:
        os.environ[_PARALLELISM] = "false"
        _set_for_fork = True


def _after_fork_in_parent() -> None:
    global _set_for_fork
    if _set_for_fork:
        os.environ.pop(_PARALLELISM, None)
        _set_for_fork = False


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)


class WordpieceTokenizer:
    """A fast tokenizer that encodes whole documents and knows the special-token frame.

    backend (tokenizers.Tokenizer): The Rust tokenizer of the model.
    pad_id (int): The id used to pad windows to the same length.
    """

    def __init__(self, backend: Tokenizer, *, pad_id: int) -> None:
        backend.no_truncation()
        backend.no_padding()
        self.backend = backend
        self.pad_id = int(pad_id)
        self.prefix, self.suffix = _special_frame(backend)

    @property
    def n_special(self) -> int:
        """RETURNS (int): The number of special tokens framing each window."""
        return len(self.prefix) + len(self.suffix)

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Sequence[str]) -> List[Ids]:
        """Encode texts into wordpiece ids, without special tokens.

        texts (Sequence[str]): The texts.
        RETURNS (List[numpy.ndarray]): One int64 id array per text.
        """
        encodings = self.backend.encode_batch(list(texts), add_special_tokens=False)
        return [numpy.asarray(enc.ids, dtype="int64") for enc in encodings]

    def to_bytes(self) -> bytes:
        return srsly.msgpack_dumps(
            {"tokenizer": self.backend.to_str(), "pad_id": self.pad_id}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> "WordpieceTokenizer":
        msg: Dict[str, Any] = srsly.msgpack_loads(data)
        return cls(Tokenizer.from_str(msg["tokenizer"]), pad_id=msg["pad_id"])


def _special_frame(backend: Tokenizer) -> Tuple[List[int], List[int]]:
    """Find the special tokens the model puts before and after a single sequence.

    Encodes a probe text with and without special tokens and locates the plain ids
    inside the framed ones, so no token id is hard-coded ([CLS]/[SEP] for BERT,
    <s>/</s> for RoBERTa, none for a model without a post-processor).
    """
    probe = "a b c"
    plain = backend.encode(probe, add_special_tokens=False).ids
    framed = backend.encode(probe, add_special_tokens=True).ids
    for start in range(len(framed) - len(plain) + 1):
        if framed[start : start + len(plain)] == plain:
            return framed[:start], framed[start + len(plain) :]
    return [], []
