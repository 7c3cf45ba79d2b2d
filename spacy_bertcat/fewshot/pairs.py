"""Pairs of training documents for the contrastive warm-up, generated from labels.

The similarity target of a pair is 1 for two documents of the same class and 0 for
two of different classes (exclusive classes); for independent labels it is the
Jaccard overlap of the two label sets (|A & B| / |A | B|, 1 for two empty sets), so a
pair sharing one of two labels aims at 0.5. Pairs with a target above 0 are
positive, the others negative.

Generation is seeded, balanced and bounded: each document anchors
``pairs_per_example`` pairs, half positive and half negative (and ``max_pairs``
bounds the total), its partners drawn
without replacement from a seeded shuffle of its candidates and, where it has fewer
candidates than it needs, cycling through them again (SetFit's oversampling). Where
a document has no candidate of one kind, the other kind is trimmed to the same total
over all documents, so positives and negatives are always equal in number.
"""

import random
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy

from ..errors import Errors, SettingError


@dataclass(frozen=True)
class Pair:
    """Two documents (indices into the training data) and their similarity target."""

    first: int
    second: int
    target: float


def label_sets(truth: numpy.ndarray, mask: numpy.ndarray) -> List[Tuple[int, frozenset]]:
    """RETURNS (List[Tuple[int, frozenset]]): The documents that take part (index,
    the label columns observed positive): those with at least one observed label."""
    out = []
    for i, (row, observed) in enumerate(zip(truth, mask)):
        if observed.any():
            out.append((i, frozenset(int(j) for j in numpy.flatnonzero((row > 0.5) & (observed > 0)))))
    return out


def similarity(a: frozenset, b: frozenset) -> float:
    """RETURNS (float): The Jaccard overlap of two label sets (1.0 for two empty ones)."""
    union = a | b
    return len(a & b) / len(union) if union else 1.0


def check_examples(truth: numpy.ndarray, mask: numpy.ndarray, labels: List[str], exclusive: bool, name: str) -> None:
    """Raise BC140 (a SettingError of the warm-up) where a class (exclusive) or a
    label has fewer than 2 positive training examples."""
    observed = (truth > 0.5) & (mask > 0)
    counts = observed.sum(axis=0)
    few = {label: int(n) for label, n in zip(labels, counts) if n < 2}
    if few:
        kind = "class" if exclusive else "label"
        detail = ", ".join(f"'{label}' has {n}" for label, n in few.items())
        those = "those classes" if exclusive else "those labels"
        raise SettingError(Errors.BC140.format(name=name, kind=kind, detail=detail, those=those), "warmup")


def make_pairs(
    truth: numpy.ndarray, mask: numpy.ndarray, pairs_per_example: int, seed: int, max_pairs: Optional[int] = None
) -> Tuple[List[Pair], List[Pair]]:
    """Generate the positive and the negative pairs of a training set.

    truth (numpy.ndarray): Gold values (docs, labels), as the component's get_loss
        reads them (one positive per row for exclusive classes).
    mask (numpy.ndarray): Which values are observed (docs, labels).
    pairs_per_example (int): Pairs each document anchors, half of each kind.
    seed (int): The seed of the draw.
    max_pairs (Optional[int]): At most this many pairs in all (a seeded sample of
        half as many of each kind); None: no bound beyond pairs_per_example.
    RETURNS (Tuple[List[Pair], List[Pair]]): Positive and negative pairs, as many of
        each, at most len(docs) * pairs_per_example // 2 of each, in a seeded order.
    """
    rng = random.Random(seed)
    docs = label_sets(truth, mask)
    half = max(1, pairs_per_example // 2)
    positives: List[Pair] = []
    negatives: List[Pair] = []
    for a, (i, labels_i) in enumerate(docs):
        similar: List[Pair] = []
        different: List[Pair] = []
        for b, (j, labels_j) in enumerate(docs):
            if a == b:
                continue
            target = similarity(labels_i, labels_j)
            (similar if target > 0 else different).append(Pair(i, j, target))
        positives.extend(_draw(similar, half, rng))
        negatives.extend(_draw(different, half, rng))
    n = min(len(positives), len(negatives))
    if max_pairs is not None:
        n = min(n, max(1, max_pairs // 2))
    if len(positives) > n:
        positives = rng.sample(positives, n)
    if len(negatives) > n:
        negatives = rng.sample(negatives, n)
    return positives, negatives


def interleave(positives: List[Pair], negatives: List[Pair], seed: int) -> List[Pair]:
    """RETURNS (List[Pair]): All pairs in a seeded order (shuffled together)."""
    pairs = [*positives, *negatives]
    random.Random(seed).shuffle(pairs)
    return pairs


def _draw(candidates: List[Pair], k: int, rng: random.Random) -> List[Pair]:
    """k of the candidates: a seeded shuffle, cycled through again where k is larger."""
    if not candidates:
        return []
    out: List[Pair] = []
    while len(out) < k:
        order = list(candidates)
        rng.shuffle(order)
        out.extend(order[: k - len(out)])
    return out
