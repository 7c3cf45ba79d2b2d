"""Chunking strategies: which wordpieces of a long document the model reads.

A strategy maps each document's wordpiece count to a list of *windows*; a window is a
tuple of ``(start, end)`` segments of the document's wordpiece ids, holding at most
``window`` wordpieces of text (the model's ``max_length`` minus its special tokens).
Strategies are registered functions, chosen in the model block of the config:

    [components.bertcat.model.chunking]
    @misc = "spacy-bertcat.sliding_window.v1"
    stride = 384
    aggregation = "attention"

Window logits of a document are combined by its ``aggregation`` (see aggregation.py).
"""

import random
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from spacy.util import registry

from ..errors import Errors, SettingError, config_error

Segment = Tuple[int, int]
Window = Tuple[Segment, ...]
AGGREGATIONS = ("mean", "max", "attention")


@dataclass
class DocWindows:
    """The windows read from one document.

    windows (List[Window]): The windows, in document order.
    truncated (bool): Whether some wordpieces are in no window.
    """

    windows: List[Window]
    truncated: bool


class Chunker:
    """Base class of chunking strategies (one window per document)."""

    name = "chunker"
    aggregation = "mean"

    def validate(self, window: int) -> None:
        """Check the settings against the window size, raising a ValueError."""

    def describe(self, window: int, is_train: bool) -> str:
        """RETURNS (str): Which wordpieces are read, for messages."""
        raise NotImplementedError

    def truncates(self, n: int, window: int, is_train: bool) -> bool:
        """RETURNS (bool): Whether a document of n wordpieces is not read whole."""
        return n > window

    def hint(self) -> str:
        """RETURNS (str): How to read whole documents, for messages."""
        return "Use `spacy-bertcat.sliding_window.v1` to read whole documents."

    def doc_windows(self, n: int, window: int, is_train: bool) -> DocWindows:
        raise NotImplementedError

    def __call__(self, lengths: Sequence[int], window: int, *, is_train: bool) -> List[DocWindows]:
        """Plan the windows for documents of the given wordpiece counts.

        lengths (Sequence[int]): Wordpieces per document.
        window (int): Wordpieces of text per window.
        is_train (bool): Whether the plan is for a training update.
        RETURNS (List[DocWindows]): The windows of each document.
        """
        return [self.doc_windows(n, window, is_train) for n in lengths]


class HeadChunker(Chunker):
    """The first ``window`` wordpieces."""

    name = "head"

    def describe(self, window: int, is_train: bool) -> str:
        return f"the first {window} wordpieces"

    def doc_windows(self, n: int, window: int, is_train: bool) -> DocWindows:
        return DocWindows([((0, min(n, window)),)], truncated=self.truncates(n, window, is_train))


class HeadTailChunker(Chunker):
    """The first ``head`` and the last ``window - head`` wordpieces, in one window."""

    name = "head_tail"

    def __init__(self, head: int) -> None:
        self.head = head

    def validate(self, window: int) -> None:
        if not 0 <= self.head <= window:
            raise SettingError(Errors.BC009.format(head=self.head, window=window), "model.chunking.head")

    def describe(self, window: int, is_train: bool) -> str:
        return f"the first {self.head} and the last {window - self.head} wordpieces"

    def doc_windows(self, n: int, window: int, is_train: bool) -> DocWindows:
        if n <= window:
            return DocWindows([((0, n),)], truncated=False)
        tail = window - self.head
        return DocWindows([((0, self.head), (n - tail, n))], truncated=True)


class SlidingWindowChunker(Chunker):
    """Windows of ``window`` wordpieces every ``stride`` wordpieces.

    The last window ends at the end of the document, so every window is full and every
    wordpiece is read. ``max_windows`` bounds the windows per document in training
    (a seeded random subset, in document order); ``max_windows_predict`` bounds them at
    prediction (evenly spaced).
    """

    name = "sliding_window"

    def __init__(
        self,
        stride: Optional[int],
        aggregation: str,
        max_windows: Optional[int],
        max_windows_predict: Optional[int],
        seed: int,
    ) -> None:
        if aggregation not in AGGREGATIONS:
            options = ", ".join(AGGREGATIONS)
            raise config_error(
                Errors.BC015.format(value=aggregation, options=options), ["model", "chunking", "aggregation"]
            )
        for setting, value in (
            ("max_windows", max_windows),
            ("max_windows_predict", max_windows_predict),
        ):
            if value is not None and value < 1:
                raise config_error(Errors.BC014.format(setting=setting, value=value), ["model", "chunking", setting])
        self.stride = stride
        self.aggregation = aggregation
        self.max_windows = max_windows
        self.max_windows_predict = max_windows_predict
        self._rng = random.Random(seed)

    def step(self, window: int) -> int:
        return self.stride if self.stride is not None else max(1, window * 3 // 4)

    def validate(self, window: int) -> None:
        if self.stride is not None and not 1 <= self.stride <= window:
            raise SettingError(Errors.BC008.format(stride=self.stride, window=window), "model.chunking.stride")

    def limit(self, is_train: bool) -> Optional[int]:
        return self.max_windows if is_train else self.max_windows_predict

    def describe(self, window: int, is_train: bool) -> str:
        return f"at most {self.limit(is_train)} windows of {window} wordpieces"

    def truncates(self, n: int, window: int, is_train: bool) -> bool:
        limit = self.limit(is_train)
        return limit is not None and len(self.starts(n, window)) > limit

    def hint(self) -> str:
        return "Raise max_windows_predict (or set it to null) to read whole documents."

    def starts(self, n: int, window: int) -> List[int]:
        """RETURNS (List[int]): The start of each window in a document of n wordpieces."""
        if n <= window:
            return [0]
        step = self.step(window)
        starts = list(range(0, n - window, step))
        if starts[-1] != n - window:
            starts.append(n - window)
        return starts

    def doc_windows(self, n: int, window: int, is_train: bool) -> DocWindows:
        starts = self.starts(n, window)
        limit = self.limit(is_train)
        truncated = limit is not None and len(starts) > limit
        if limit is not None and truncated:
            if is_train:
                keep = sorted(self._rng.sample(range(len(starts)), limit))
            else:
                keep = _evenly_spaced(len(starts), limit)
            starts = [starts[i] for i in keep]
        windows: List[Window] = [((s, min(s + window, n)),) for s in starts]
        return DocWindows(windows, truncated=truncated)


def _evenly_spaced(n: int, k: int) -> List[int]:
    """RETURNS (List[int]): k indices of range(n), spread evenly, first and last kept."""
    if k == 1:
        return [0]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


@registry.misc("spacy-bertcat.head.v1")
def configure_head_v1() -> Chunker:
    """Read the first max_length wordpieces of each document (the usual truncation)."""
    return HeadChunker()


@registry.misc("spacy-bertcat.head_tail.v1")
def configure_head_tail_v1(head: int = 128) -> Chunker:
    """Read the first `head` and the last `max_length - head` wordpieces of long documents.

    head (int): Wordpieces taken from the start; the rest of the window comes from the
        end. Sun et al. (2019) found 128 + 382 best on IMDb.
    """
    return HeadTailChunker(head)


@registry.misc("spacy-bertcat.sliding_window.v1")
def configure_sliding_window_v1(
    stride: Optional[int] = None,
    aggregation: str = "mean",
    max_windows: Optional[int] = 8,
    max_windows_predict: Optional[int] = None,
    seed: int = 0,
) -> Chunker:
    """Read whole documents in overlapping windows and aggregate their predictions.

    stride (Optional[int]): Wordpieces between window starts (at most the window's
        text length); null for three quarters of the window.
    aggregation (str): How window logits combine into the document's: "mean", "max"
        or "attention" (a learned attention over windows).
    max_windows (Optional[int]): Windows per document in a training update, sampled
        at random (seeded) when a document has more; null for all.
    max_windows_predict (Optional[int]): Windows per document at prediction, evenly
        spaced when a document has more; null for all.
    seed (int): Seed of the training-window sampler.
    """
    return SlidingWindowChunker(stride, aggregation, max_windows, max_windows_predict, seed)
