"""Pair generation for the contrastive warm-up: seeded, balanced, bounded, and by
label-set overlap for independent labels."""

import numpy
import pytest

from spacy_bertcat.errors import SettingError
from spacy_bertcat.fewshot.pairs import check_examples, interleave, make_pairs, similarity


def exclusive_truth(counts):
    """One-hot rows: counts[j] documents of class j, classes interleaved."""
    labels = [j for j, n in enumerate(counts) for _ in range(n)]
    truth = numpy.zeros((len(labels), len(counts)), dtype="f")
    truth[numpy.arange(len(labels)), labels] = 1.0
    return truth, numpy.ones_like(truth)


def as_tuples(pairs):
    return [(p.first, p.second, p.target) for p in pairs]


def test_pairs_are_seeded_balanced_and_bounded():
    truth, mask = exclusive_truth([3, 5, 2])
    positives, negatives = make_pairs(truth, mask, pairs_per_example=8, seed=1)
    assert len(positives) == len(negatives) == 10 * 4  # every doc anchors 4 of each kind
    assert all(p.target == 1.0 and truth[p.first].argmax() == truth[p.second].argmax() for p in positives)
    assert all(p.target == 0.0 and truth[p.first].argmax() != truth[p.second].argmax() for p in negatives)
    assert all(p.first != p.second for p in positives + negatives)
    again = make_pairs(truth, mask, pairs_per_example=8, seed=1)
    assert as_tuples(again[0]) == as_tuples(positives) and as_tuples(again[1]) == as_tuples(negatives)
    other = make_pairs(truth, mask, pairs_per_example=8, seed=2)
    assert as_tuples(other[0]) != as_tuples(positives)
    # a class of 2 has one partner per document: it is drawn again (oversampling)
    for n in (2, 6, 40):
        pos, neg = make_pairs(truth, mask, pairs_per_example=n, seed=0)
        assert len(pos) == len(neg) <= len(truth) * n // 2
    mixed = interleave(positives, negatives, seed=0)
    assert sorted(as_tuples(mixed)) == sorted(as_tuples(positives + negatives))
    assert as_tuples(mixed) == as_tuples(interleave(positives, negatives, seed=0))


def test_multilabel_pairs_aim_at_the_label_set_overlap():
    truth = numpy.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [1, 1, 0]], dtype="f")
    mask = numpy.ones_like(truth)
    mask[1, 2] = 0.0  # an unobserved value is not a label of the doc
    positives, negatives = make_pairs(truth, mask, pairs_per_example=6, seed=0)
    assert len(positives) == len(negatives) > 0
    sets = [frozenset(numpy.flatnonzero(row)) for row in truth]
    for pair in positives + negatives:
        assert pair.target == pytest.approx(similarity(sets[pair.first], sets[pair.second]))
    assert {p.target for p in positives} >= {0.5, 1.0}
    assert all(p.target > 0 for p in positives) and all(p.target == 0 for p in negatives)
    assert similarity(frozenset(), frozenset()) == 1.0
    assert similarity(frozenset({0, 1}), frozenset({1, 2})) == pytest.approx(1 / 3)


def test_documents_without_observed_labels_take_no_part():
    truth, mask = exclusive_truth([2, 2])
    mask[0] = 0.0
    positives, negatives = make_pairs(truth, mask, pairs_per_example=4, seed=0)
    assert all(0 not in (p.first, p.second) for p in positives + negatives)


def test_a_class_with_fewer_than_two_examples_is_a_clear_error():
    truth, mask = exclusive_truth([3, 1, 0])
    with pytest.raises(SettingError, match=r"BC140.*'B' has 1, 'C' has 0") as info:
        check_examples(truth, mask, ["A", "B", "C"], exclusive=True, name="bertcat")
    assert info.value.setting == "warmup"
    check_examples(*exclusive_truth([2, 2]), ["A", "B"], exclusive=True, name="bertcat")


def test_max_pairs_bounds_the_total():
    truth, mask = exclusive_truth([6, 6])
    positives, negatives = make_pairs(truth, mask, pairs_per_example=10, seed=0, max_pairs=8)
    assert len(positives) == len(negatives) == 4
