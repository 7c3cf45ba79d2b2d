"""The seeded, stratified train/dev/test split of classification records.

Each label (or label combination, for multi-label data) is spread over the parts in
the given proportions; texts equal up to case and whitespace stay in one part.
"""

import random
from collections import Counter, defaultdict
from typing import Dict, List, Sequence, Tuple

from ..errors import Errors
from .records import Record


def parse_fractions(value: str) -> Tuple[float, ...]:
    """Parse "0.8,0.1,0.1" (train, dev, test) or "0.9,0.1" (train, dev).

    RETURNS (Tuple[float, ...]): The fractions.
    """
    try:
        fractions = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise ValueError(Errors.BC036.format(value=value, detail="use numbers separated by commas")) from None
    if not 2 <= len(fractions) <= 3:
        raise ValueError(
            Errors.BC036.format(value=value, detail="give two (train, dev) or three (train, dev, test) fractions")
        )
    if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(Errors.BC036.format(value=value, detail="each must be positive and they must add up to 1"))
    return fractions


def _dedup_key(text: str) -> str:
    return " ".join(text.lower().split())


def split_records(records: Sequence[Record], fractions: Sequence[float], *, seed: int = 0) -> List[List[Record]]:
    """Split records at random into parts of the given sizes, stratified by label.

    Stratified: each label (exclusive data) or label combination (multi-label data;
    combinations rarer than the number of parts count under their rarest label)
    is spread over the parts in the given proportions, to the nearest record.
    Texts that are the same up to case and whitespace stay in one part, so
    duplicates never leak from train into test. The result depends only on the
    records, their order and the seed.

    records (Sequence[Record]): The records.
    fractions (Sequence[float]): The share of each part, adding up to 1.
    seed (int): The random seed.
    RETURNS (List[List[Record]]): The records of each part, in input order.
    """
    groups: Dict[str, List[int]] = defaultdict(list)
    for i, record in enumerate(records):
        groups[_dedup_key(record.text)].append(i)
    label_freq = Counter(label for r in records for label in r.positives)
    combo_freq = Counter(tuple(r.positives) for r in records)

    def stratum(record: Record) -> str:
        combo = tuple(record.positives)
        if len(combo) <= 1 or combo_freq[combo] >= len(fractions):
            return "|".join(combo)
        return min(combo, key=lambda label: (label_freq[label], label))

    strata: Dict[str, List[List[int]]] = defaultdict(list)
    for members in groups.values():
        strata[stratum(records[members[0]])].append(members)
    rng = random.Random(seed)
    assignment = [0] * len(records)
    for key in sorted(strata):
        stratum_groups = strata[key]
        rng.shuffle(stratum_groups)
        targets = _largest_remainder(sum(len(g) for g in stratum_groups), fractions)
        filled = [0] * len(fractions)
        for members in stratum_groups:
            part = max(range(len(fractions)), key=lambda p: (targets[p] - filled[p], -p))
            filled[part] += len(members)
            for i in members:
                assignment[i] = part
    parts: List[List[Record]] = [[] for _ in fractions]
    for record, part in zip(records, assignment):
        parts[part].append(record)
    return parts


def _largest_remainder(n: int, fractions: Sequence[float]) -> List[int]:
    exact = [n * f for f in fractions]
    counts = [int(x) for x in exact]
    order = sorted(range(len(fractions)), key=lambda p: (-(exact[p] - counts[p]), p))
    for p in order[: n - sum(counts)]:
        counts[p] += 1
    return counts


def split_names(n: int) -> Tuple[str, ...]:
    return ("train", "dev", "test")[:n]
