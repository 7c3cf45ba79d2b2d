"""Aggregation of window logits into document logits (torch, differentiable).

Every window of a document gets the classifier's logits; a document's logits are
their mean, their per-label max, or an attention-weighted mean whose weights a small
network computes from each window's first-token hidden state. The attention scorer
starts at zero, so a fresh attention aggregation equals the mean.
"""

from typing import List, Optional

import torch
from torch import nn


class Aggregation(nn.Module):
    """Combine window logits (windows, labels) into document logits (docs, labels)."""

    needs_hidden = False

    def forward(
        self,
        logits: torch.Tensor,
        hidden: Optional[torch.Tensor],
        counts: List[int],
    ) -> torch.Tensor:
        padded, mask = pad_windows(logits, counts)
        return self.pool(padded, mask, hidden, counts)

    def pool(self, padded, mask, hidden, counts) -> torch.Tensor:
        raise NotImplementedError


class MeanAggregation(Aggregation):
    def pool(self, padded, mask, hidden, counts):
        total = (padded * mask.unsqueeze(-1)).sum(dim=1)
        return total / mask.sum(dim=1, keepdim=True)


class MaxAggregation(Aggregation):
    def pool(self, padded, mask, hidden, counts):
        filled = padded.masked_fill(~mask.unsqueeze(-1), float("-inf"))
        return filled.max(dim=1).values


class AttentionAggregation(Aggregation):
    """Attention over a document's windows, scored from their first-token states."""

    needs_hidden = True

    def __init__(self, hidden_size: int, attention_size: int = 128) -> None:
        super().__init__()
        self.project = nn.Linear(hidden_size, attention_size)
        self.score = nn.Linear(attention_size, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)

    def pool(self, padded, mask, hidden, counts):
        scores = self.score(torch.tanh(self.project(hidden.to(padded.dtype))))
        padded_scores, _ = pad_windows(scores, counts)
        padded_scores = padded_scores.squeeze(-1).masked_fill(~mask, float("-inf"))
        weights = torch.softmax(padded_scores, dim=1)
        return (weights.unsqueeze(-1) * padded).sum(dim=1)


def pad_windows(values: torch.Tensor, counts: List[int]):
    """Scatter per-window rows into a (docs, max windows, ...) tensor and its mask.

    values (torch.Tensor): One row per window, documents' windows consecutive.
    counts (List[int]): Windows per document, each at least 1.
    RETURNS (Tuple[torch.Tensor, torch.Tensor]): The padded values (zeros where
        there is no window) and a boolean mask of real windows.
    """
    device = values.device
    counts_t = torch.as_tensor(counts, device=device)
    doc_index = torch.repeat_interleave(torch.arange(len(counts), device=device), counts_t)
    starts = torch.cumsum(counts_t, 0) - counts_t
    position = torch.arange(values.shape[0], device=device) - starts[doc_index]
    padded = values.new_zeros((len(counts), max(counts)) + tuple(values.shape[1:]))
    padded = padded.index_put((doc_index, position), values)
    mask = torch.zeros(len(counts), max(counts), dtype=torch.bool, device=device)
    mask[doc_index, position] = True
    return padded, mask


def build_aggregation(name: str, hidden_size: int) -> Aggregation:
    """Create the aggregation module called `name` ("mean", "max" or "attention")."""
    if name == "attention":
        return AttentionAggregation(hidden_size)
    if name == "max":
        return MaxAggregation()
    return MeanAggregation()
