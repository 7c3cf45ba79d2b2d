"""The model's fast tokenizer, reduced to what chunking needs.

Documents are tokenized once, whole, without special tokens, truncation or padding;
chunking then slices the wordpiece ids and frames each window with the model's own
special tokens. Only the Rust ``tokenizers.Tokenizer`` is kept and serialized (as its
JSON), so a saved pipeline does not depend on transformers' tokenizer classes, which
differ between transformers 4 and 5.
"""

import os
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

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
        frame = _special_frame(backend)
        self.prefix, self.suffix = frame.prefix, frame.suffix
        # Token type ids of the frame and the text, where a family sets them (Funnel's
        # <cls> has type 2); None where all are 0, the models' default.
        self.type_frame: Optional[Tuple[List[int], int, List[int]]] = frame.types

    @staticmethod
    def check_serializable(backend: Tokenizer) -> None:
        """Raise if the tokenizer cannot be stored as JSON and read back (a custom
        Python pre-tokenizer, such as RoFormer's jieba, cannot)."""
        Tokenizer.from_str(backend.to_str())

    @property
    def probe_id(self) -> int:
        """RETURNS (int): The id of an ordinary (not special) wordpiece."""
        special = set(self.prefix) | set(self.suffix) | {self.pad_id}
        for text in ("a", "the", "1", "x"):
            for i in self.backend.encode(text, add_special_tokens=False).ids:
                if i not in special:
                    return i
        return next(i for i in range(self.vocab_size) if i not in special)

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

    def encode_with_offsets(self, text: str) -> Tuple[Ids, numpy.ndarray]:
        """Encode one text as `encode` does, with each wordpiece's character span.

        text (str): The text.
        RETURNS (Tuple[numpy.ndarray, numpy.ndarray]): The int64 ids and an int64
            (wordpieces, 2) array of (start, end) character offsets into `text`.
        """
        enc = self.backend.encode(text, add_special_tokens=False)
        offsets = numpy.asarray(enc.offsets, dtype="int64").reshape(-1, 2)
        return numpy.asarray(enc.ids, dtype="int64"), offsets

    @property
    def mask_id(self) -> Optional[int]:
        """RETURNS (Optional[int]): The id of the model's mask token ([MASK],
        <mask>, ...), if its vocabulary has one."""
        for token in ("[MASK]", "<mask>", "<|mask|>", "<MASK>"):
            found = self.backend.token_to_id(token)
            if found is not None:
                return int(found)
        return None

    def to_bytes(self) -> bytes:
        return srsly.msgpack_dumps({"tokenizer": self.backend.to_str(), "pad_id": self.pad_id})

    @classmethod
    def from_bytes(cls, data: bytes) -> "WordpieceTokenizer":
        msg: Dict[str, Any] = srsly.msgpack_loads(data)
        return cls(Tokenizer.from_str(msg["tokenizer"]), pad_id=msg["pad_id"])


class _Frame(NamedTuple):
    prefix: List[int]
    suffix: List[int]
    types: Optional[Tuple[List[int], int, List[int]]]


def _special_frame(backend: Tokenizer) -> _Frame:
    """Find the special tokens (and their token types) the model puts before and
    after a single sequence.

    Encodes a probe text with and without special tokens and locates the plain ids
    inside the framed ones, so no token id is hard-coded ([CLS]/[SEP] for BERT,
    <s>/</s> for RoBERTa, <cls>/<sep> with type 2 for Funnel, none for a model
    without a post-processor).
    """
    probe = "a b c"
    plain = backend.encode(probe, add_special_tokens=False).ids
    encoding = backend.encode(probe, add_special_tokens=True)
    framed, types = encoding.ids, encoding.type_ids
    for start in range(len(framed) - len(plain) + 1):
        if framed[start : start + len(plain)] == plain:
            end = start + len(plain)
            text_types = set(types[start:end]) or {0}
            frame_types: Optional[Tuple[List[int], int, List[int]]] = (types[:start], text_types.pop(), types[end:])
            if not any(types):
                frame_types = None
            return _Frame(framed[:start], framed[end:], frame_types)
    return _Frame([], [], None)
