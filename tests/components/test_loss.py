"""Exact values of the losses and their gradients, checked against torch's own
implementations (autograd gives the reference gradient)."""

import numpy
import pytest
import spacy
import torch
from numpy.testing import assert_allclose

from spacy_bertcat.components.loss import (
    examples_to_truth,
    resolve_class_weights,
    sigmoid_binary_cross_entropy,
    softmax_cross_entropy,
)

from ..support import make_examples

LOGITS = numpy.asarray([[2.0, -1.0, 0.5], [-0.3, 0.2, 4.0], [1.0, 1.0, -2.0], [0.0, -5.0, 30.0]], dtype="f")


def torch_reference(loss_fn):
    logits = torch.tensor(LOGITS, dtype=torch.float64, requires_grad=True)
    loss = loss_fn(logits)
    loss.backward()
    return float(loss.detach()), logits.grad.numpy()


def test_cross_entropy_matches_torch():
    truth = numpy.eye(3, dtype="f")[[0, 2, 1, 1]]
    mask = numpy.ones_like(truth)
    loss, d_logits = softmax_cross_entropy(numpy, LOGITS, truth, mask, None)
    target = torch.tensor([0, 2, 1, 1])
    ref_loss, ref_grad = torch_reference(lambda x: torch.nn.functional.cross_entropy(x, target))
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_allclose(d_logits, ref_grad, rtol=1e-5, atol=1e-7)


def test_cross_entropy_class_weights_are_sample_weights():
    truth = numpy.eye(3, dtype="f")[[0, 2, 1, 1]]
    weights = [1.0, 3.0, 0.5]
    loss, d_logits = softmax_cross_entropy(numpy, LOGITS, truth, numpy.ones_like(truth), weights)
    target = torch.tensor([0, 2, 1, 1])
    w = torch.tensor(weights, dtype=torch.float64)[target]
    ref_loss, ref_grad = torch_reference(
        lambda x: (w * torch.nn.functional.cross_entropy(x, target, reduction="none")).sum() / 4
    )
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_allclose(d_logits, ref_grad, rtol=1e-5, atol=1e-7)


def test_cross_entropy_skips_unannotated_rows():
    truth = numpy.eye(3, dtype="f")[[0, 2, 1, 1]]
    mask = numpy.ones_like(truth)
    mask[1] = 0.0
    loss, d_logits = softmax_cross_entropy(numpy, LOGITS, truth, mask, None)
    keep = [0, 2, 3]
    ref = torch.nn.functional.cross_entropy(torch.tensor(LOGITS[keep], dtype=torch.float64), torch.tensor([0, 1, 1]))
    assert loss == pytest.approx(float(ref), rel=1e-5)
    assert not d_logits[1].any()


def test_binary_cross_entropy_matches_torch():
    truth = numpy.asarray([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]], dtype="f")
    loss, d_logits = sigmoid_binary_cross_entropy(numpy, LOGITS, truth, numpy.ones_like(truth), None)
    y = torch.tensor(truth, dtype=torch.float64)
    ref_loss, ref_grad = torch_reference(lambda x: torch.nn.functional.binary_cross_entropy_with_logits(x, y))
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_allclose(d_logits, ref_grad, rtol=1e-5, atol=1e-7)


def test_binary_cross_entropy_pos_weight_and_mask():
    truth = numpy.asarray([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1]], dtype="f")
    mask = numpy.ones_like(truth)
    mask[0, 1] = mask[2, 2] = 0.0  # two missing labels
    weights = [2.0, 0.5, 4.0]
    loss, d_logits = sigmoid_binary_cross_entropy(numpy, LOGITS, truth, mask, weights)
    y = torch.tensor(truth, dtype=torch.float64)
    m = torch.tensor(mask, dtype=torch.float64)
    pw = torch.tensor(weights, dtype=torch.float64)
    ref_loss, ref_grad = torch_reference(
        lambda x: (
            (m * torch.nn.functional.binary_cross_entropy_with_logits(x, y, pos_weight=pw, reduction="none")).sum() / 12
        )
    )
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert_allclose(d_logits, ref_grad, rtol=1e-5, atol=1e-7)
    assert d_logits[0, 1] == 0.0 and d_logits[2, 2] == 0.0


def test_losses_are_stable_for_extreme_logits():
    logits = numpy.asarray([[1000.0, -1000.0]], dtype="f")
    for loss_fn, truth in ((softmax_cross_entropy, [[0.0, 1.0]]), (sigmoid_binary_cross_entropy, [[0.0, 1.0]])):
        loss, d = loss_fn(numpy, logits, numpy.asarray(truth, dtype="f"), numpy.ones((1, 2), dtype="f"), None)
        assert numpy.isfinite(loss) and numpy.isfinite(d).all()


def test_balanced_class_weights():
    truth = numpy.eye(3, dtype="f")[[0, 0, 0, 1, 2, 2]]
    mask = numpy.ones_like(truth)
    exclusive = resolve_class_weights("balanced", "abc", truth, mask, exclusive=True, name="x")
    assert exclusive == pytest.approx([6 / 9, 6 / 3, 6 / 6])  # n / (n_labels * n_c)
    multi = resolve_class_weights("balanced", "abc", truth, mask, exclusive=False, name="x")
    assert multi == pytest.approx([3 / 3, 5 / 1, 4 / 2])  # negatives / positives
    explicit = resolve_class_weights({"b": 2.0}, "abc", truth, mask, exclusive=True, name="x")
    assert explicit == [1.0, 2.0, 1.0]


@pytest.mark.parametrize("setting", ["inverse", {"z": 1.0}, {"a": -1.0}, {"a": "high"}])
def test_bad_class_weights(setting):
    truth = numpy.eye(3, dtype="f")
    with pytest.raises(ValueError, match="BC011"):
        resolve_class_weights(setting, "abc", truth, numpy.ones_like(truth), exclusive=True, name="x")


@pytest.mark.parametrize(
    "cats,exclusive,code",
    [
        ({"a": 0.7, "b": 0.3}, True, "BC002"),
        ({"a": 2.0}, False, "BC002"),
        ({"a": 1.0, "b": 1.0}, True, "BC003"),
        ({"a": 0.0, "b": 0.0}, True, "BC004"),
        ({"a": 1.0, "zzz": 0.0}, False, "BC005"),
    ],
)
def test_bad_gold_labels(cats, exclusive, code):
    nlp = spacy.blank("en")
    examples = make_examples(nlp, [("some text", cats)])
    with pytest.raises(ValueError, match=code):
        examples_to_truth(examples, ["a", "b"], exclusive=exclusive, name="bertcat")


def test_truth_and_mask():
    nlp = spacy.blank("en")
    examples = make_examples(nlp, [("x", {"a": 1.0}), ("y", {}), ("z", {"b": 0.0})])
    truth, mask = examples_to_truth(examples, ["a", "b"], exclusive=False, name="m")
    assert truth.tolist() == [[1, 0], [0, 0], [0, 0]]
    assert mask.tolist() == [[1, 0], [0, 0], [0, 1]]
    truth, mask = examples_to_truth(examples[:2], ["a", "b"], exclusive=True, name="m")
    assert mask.tolist() == [[1, 1], [0, 0]]  # exclusive: the other classes are implied 0
