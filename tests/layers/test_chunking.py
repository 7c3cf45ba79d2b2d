"""Chunking strategies, window framing and batching, and the window aggregations."""

import numpy
import pytest
import torch
from spacy.util import registry

from spacy_bertcat.layers.aggregation import build_aggregation
from spacy_bertcat.layers.batching import group_by_budget, make_batches
from spacy_bertcat.layers.chunking import DocWindows

from ..support import WORDS, make_nlp


def chunker(name, **settings):
    return registry.misc.get(f"spacy-bertcat.{name}.v1")(**settings)


def covered(windows):
    return sorted({i for window in windows for start, end in window for i in range(start, end)})


def test_head():
    [short, long] = chunker("head")([5, 100], 10, is_train=False)
    assert short == DocWindows([((0, 5),)], truncated=False)
    assert long == DocWindows([((0, 10),)], truncated=True)


def test_head_tail():
    head_tail = chunker("head_tail", head=3)
    [short, exact, long] = head_tail([7, 10, 100], 10, is_train=False)
    assert short.windows == [((0, 7),)] and not short.truncated
    assert exact.windows == [((0, 10),)] and not exact.truncated
    assert long.windows == [((0, 3), (93, 100))] and long.truncated
    with pytest.raises(ValueError, match="BC009"):
        chunker("head_tail", head=11).validate(10)


@pytest.mark.parametrize("n", [1, 9, 10, 11, 17, 18, 19, 20, 101])
@pytest.mark.parametrize("stride", [1, 4, 8, 10])
def test_sliding_windows_cover_every_wordpiece(n, stride):
    [plan] = chunker("sliding_window", stride=stride, max_windows=None)([n], 10, is_train=True)
    assert covered(plan.windows) == list(range(n)) and not plan.truncated
    lengths = [end - start for ((start, end),) in plan.windows]
    assert all(length == min(n, 10) for length in lengths)  # every window is full
    starts = [start for ((start, _),) in plan.windows]
    assert starts == sorted(set(starts)) and starts[0] == 0 and plan.windows[-1][0][1] == n
    assert all(b - a <= stride for a, b in zip(starts, starts[1:]))


def test_sliding_window_exact_boundaries():
    sliding = chunker("sliding_window", stride=4)
    assert sliding.starts(10, 10) == [0]
    assert sliding.starts(11, 10) == [0, 1]
    assert sliding.starts(14, 10) == [0, 4]
    assert sliding.starts(15, 10) == [0, 4, 5]
    assert chunker("sliding_window").starts(40, 8) == [0, 6, 12, 18, 24, 30, 32]  # default stride 3/4


def test_sliding_window_limits():
    train_plan = chunker("sliding_window", stride=10, max_windows=3, seed=1)
    [a] = train_plan([100], 10, is_train=True)
    [b] = train_plan([100], 10, is_train=True)
    assert len(a.windows) == 3 and a.truncated and a.windows == sorted(a.windows)
    assert a.windows != b.windows  # resampled at each update, from a seeded generator
    [again] = chunker("sliding_window", stride=10, max_windows=3, seed=1)([100], 10, is_train=True)
    assert again.windows == a.windows
    [predicted] = train_plan([100], 10, is_train=False)  # max_windows_predict = None: all
    assert len(predicted.windows) == 10 and not predicted.truncated
    [spread] = chunker("sliding_window", stride=10, max_windows_predict=4)([100], 10, is_train=False)
    assert [w[0][0] for w in spread.windows] == [0, 30, 60, 90] and spread.truncated


@pytest.mark.parametrize(
    "settings,code",
    [
        ({"stride": 0}, "BC008"),
        ({"stride": 11}, "BC008"),
        ({"max_windows": 0}, "BC014"),
        ({"aggregation": "sum"}, "BC015"),
    ],
)
def test_sliding_window_bad_settings(settings, code):
    with pytest.raises(ValueError, match=code):
        chunker("sliding_window", **settings).validate(10)


def test_group_by_budget():
    groups = group_by_budget([5, 50, 7, 50, 6, 100, 45, 41], budget=110, max_padding=0.2, min_padding=0)
    # longest first; rows x longest <= budget; rows at most 20% shorter than the longest
    assert groups == [[5], [1, 3], [6, 7], [2, 4], [0]]
    # short rows may always carry min_padding wordpieces: one forward call, not three
    assert group_by_budget([12, 30, 20, 15], budget=1000, max_padding=0.2, min_padding=32) == [[1, 2, 3, 0]]
    assert group_by_budget([12, 30, 20, 15], budget=1000, max_padding=0.2, min_padding=0) == [[1], [2], [3, 0]]
    assert group_by_budget([500, 300], budget=10_000, min_padding=32) == [[0], [1]]  # long windows: max_padding
    assert group_by_budget([300], budget=100) == [[0]]  # an over-long row stands alone
    assert group_by_budget([10, 1, 5], budget=100, max_padding=1.0) == [[0, 2, 1]]


def test_batches_frame_windows_with_special_tokens(tiny_bert):
    nlp, _, _ = make_nlp(tiny_bert)
    tokenizer = nlp.get_pipe("bertcat").model.shims[0].tokenizer
    ids = tokenizer.encode(["good film " * 10, "bad"])
    plans = chunker("head_tail", head=2)([len(i) for i in ids], 6, is_train=False)
    batches, counts = make_batches(ids, plans, tokenizer, budget=1000, device=torch.device("cpu"))
    assert counts == [1, 1]
    rows = {int(r): (b.input_ids[i], b.attention_mask[i]) for b in batches for i, r in enumerate(b.rows)}
    first, mask = rows[0]
    assert first.tolist() == tokenizer.prefix + ids[0][:2].tolist() + ids[0][-4:].tolist() + tokenizer.suffix
    assert mask.tolist() == [1] * 8
    # a short window among longer ones is padded with the tokenizer's pad id
    ids.append(tokenizer.encode(["good film bad"])[0])
    plans = chunker("head")([len(i) for i in ids], 4, is_train=False)
    [batch] = make_batches(ids[1:], plans[1:], tokenizer, budget=1000, device=torch.device("cpu"), max_padding=1.0)[0]
    short, mask = batch.input_ids[list(batch.rows).index(0)], batch.attention_mask[list(batch.rows).index(0)]
    length = len(tokenizer.prefix) + len(ids[1]) + len(tokenizer.suffix)
    width = batch.input_ids.shape[1]
    assert mask.tolist() == [1] * length + [0] * (width - length)
    assert short[length:].tolist() == [tokenizer.pad_id] * (width - length)


@pytest.mark.parametrize("name", ["mean", "max", "attention"])
def test_aggregation_gradients_numerically(name):
    torch.manual_seed(0)
    aggregation = build_aggregation(name, hidden_size=6).double()
    if name == "attention":  # move off the zero init so the weights matter
        torch.nn.init.normal_(aggregation.score.weight)
    counts = [3, 1, 2]
    logits = torch.randn(6, 4, dtype=torch.double, requires_grad=True)
    hidden = torch.randn(6, 6, dtype=torch.double, requires_grad=True)
    inputs = (logits, hidden) if name == "attention" else (logits,)
    fn = (
        (lambda lg, h: aggregation(lg, h, counts))
        if name == "attention"
        else (lambda lg: aggregation(lg, None, counts))
    )
    assert torch.autograd.gradcheck(fn, inputs)
    params = [p for p in aggregation.parameters()]
    if params:
        out = aggregation(logits, hidden, counts).sum()
        grads = torch.autograd.grad(out, params)
        assert all(g.abs().sum() > 0 for g in grads)


def test_aggregation_values():
    logits = torch.tensor([[1.0, 4.0], [3.0, 0.0], [5.0, 5.0]])
    assert build_aggregation("mean", 2)(logits, None, [2, 1]).tolist() == [[2.0, 2.0], [5.0, 5.0]]
    assert build_aggregation("max", 2)(logits, None, [2, 1]).tolist() == [[3.0, 4.0], [5.0, 5.0]]
    fresh = build_aggregation("attention", 3)(logits, torch.randn(3, 3), [2, 1])  # zero init: the mean
    torch.testing.assert_close(fresh, torch.tensor([[2.0, 2.0], [5.0, 5.0]]))


@pytest.mark.parametrize("aggregation", ["mean", "max", "attention"])
@pytest.mark.parametrize("factory", ["bertcat", "bertcat_multilabel"])
def test_training_reaches_every_kept_window(tiny_bert, aggregation, factory):
    """Gradients flow through the aggregation to the encoder from every window."""
    rng = numpy.random.default_rng(0)
    filler = lambda n: " ".join(rng.choice(WORDS[:40], n))  # windows differ in content
    data = [(f"good {filler(60)} good", {"POS": 1.0, "NEG": 0.0}), (f"bad {filler(60)} bad", {"POS": 0.0, "NEG": 1.0})]
    chunking = {"@misc": "spacy-bertcat.sliding_window.v1", "stride": 10, "aggregation": aggregation, "max_windows": 4}
    nlp, examples, optimizer = make_nlp(tiny_bert, factory, data, chunking=chunking, max_batch_wordpieces=64)
    shim = nlp.get_pipe(factory).model.shims[0]
    seen = []
    embeddings = shim.hf_model.get_input_embeddings()
    handle = embeddings.register_forward_hook(
        lambda m, args, out: seen.append(out.shape[0]) if out.requires_grad else None
    )
    nlp.update(examples, sgd=False)
    handle.remove()
    # 2 docs x 4 kept windows in budgeted batches of 2 rows: 8 rows in the forward
    # pass, and the same 8 again when backward recomputes each checkpointed batch.
    assert seen == [2] * 8
    assert all(p.grad is not None for p in shim.hf_model.parameters() if p.requires_grad)
    if aggregation == "attention":
        assert all(p.grad is not None for p in shim.model.aggregation.parameters())
        assert shim.model.aggregation.score.weight.grad.abs().sum() > 0  # (project's is 0 at the zero init)
    if (factory, aggregation) == ("bertcat", "attention"):  # and it learns
        optimizer.learn_rate = 3e-3
        for _ in range(15):
            nlp.update(examples, sgd=optimizer)
        cats = [doc.cats for doc in nlp.pipe([text for text, _ in data])]
        assert cats[0]["POS"] > 0.5 > cats[1]["POS"]
