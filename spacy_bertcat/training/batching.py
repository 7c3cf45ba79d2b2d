"""Training batches of a fixed number of documents with similar lengths.

Random batches pad every document to the longest in its batch. Like Hugging Face's
``group_by_length``, this batcher sorts a buffer of ``buffer x size`` examples by
length, cuts it into batches of ``size`` and shuffles the batches, so each batch
holds documents of similar length and little padding, while batch size and the
examples of an epoch stay the same.
"""
import random
from typing import Callable, Iterable, Iterator, List, Optional, TypeVar

from spacy.util import registry

ItemT = TypeVar("ItemT")


def text_length(item) -> int:
    doc = item.predicted if hasattr(item, "predicted") else item
    return len(doc.text)


def batch_by_length(
    items: Iterable[ItemT], size: int, buffer: int, get_length: Callable[[ItemT], int]
) -> Iterator[List[ItemT]]:
    """Yield batches of `size` items of similar length (the last may be smaller)."""
    items = iter(items)
    while True:
        pool = [item for _, item in zip(range(size * buffer), items)]
        if not pool:
            return
        pool.sort(key=get_length)
        batches = [pool[i : i + size] for i in range(0, len(pool), size)]
        random.shuffle(batches)
        yield from batches


@registry.batchers("spacy-bertcat.batch_by_length.v1")
def configure_batch_by_length_v1(
    size: int, buffer: int = 50, get_length: Optional[Callable] = None
) -> Callable[[Iterable], Iterator[List]]:
    """Batches of `size` documents, grouped by length to cut padding.

    size (int): Documents per batch.
    buffer (int): Batches sorted together; larger means less padding, less mixing.
    get_length (Optional[Callable]): Length of an example; default: characters of
        its text (a good proxy for wordpieces).
    """
    length = get_length or text_length
    return lambda items: batch_by_length(items, size, buffer, length)
