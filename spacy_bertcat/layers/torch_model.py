"""The torch module: a Hugging Face sequence classifier run over windows.

``WindowClassifier`` holds an ``AutoModelForSequenceClassification`` (kept as is, so
its weights are a valid Hugging Face classifier) and the aggregation of window logits
into document logits. With ``pooling="mean"`` a window is represented as
sentence-transformers represent a text, by the mean of its last hidden states over its
wordpieces (padding excluded), and classified by one linear layer on that
(``mean_head``); the Hugging Face head is then unused. When a training batch needs several window batches, each is
checkpointed: only one window batch's activations are alive at a time, so memory
stays bounded for any document length, at the cost of recomputing the forward pass.
"""

import threading
from typing import Any, List, Optional, Tuple, cast

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .aggregation import build_aggregation
from .batching import WindowBatch

# The first-token hidden states of the last encoder call, per thread: written by a
# forward hook on the encoder, so concurrent predictions don't see each other's.
_captured = threading.local()
# The poolings with a linear head on the mean of the last hidden states (mean_head).
MEAN_POOLINGS = ("mean", "normalized_mean")


def _capture_first_token(module: nn.Module, args, output) -> None:
    _captured.hidden = output[0][:, 0]


class WindowClassifier(nn.Module):
    """Classify windows with a HF model and aggregate their logits per document.

    hf_model (PreTrainedModel): A sequence classification model.
    aggregation (str): "mean", "max" or "attention".
    pooling (str): "first": the Hugging Face head (its first-token pooling);
        "mean": a linear layer on the mean of the last hidden states;
        "normalized_mean": the same on that mean scaled to unit length (what
        sentence-transformers bodies with a Normalize module, such as
        all-MiniLM-L6-v2, give their users, and what SetFit's head reads).
    """

    def __init__(self, hf_model: nn.Module, aggregation: str, pooling: str = "first") -> None:
        super().__init__()
        self.hf_model = hf_model
        self.aggregation_name = aggregation
        config = cast(Any, hf_model.config)
        self.aggregation = build_aggregation(aggregation, config.hidden_size)
        self.pooling = pooling
        if pooling in MEAN_POOLINGS:
            rate = getattr(config, "classifier_dropout", None)
            if rate is None:
                rate = getattr(config, "hidden_dropout_prob", 0.1)
            self.mean_dropout = nn.Dropout(float(rate or 0.0))
            self.mean_head = nn.Linear(config.hidden_size, config.num_labels)
            with torch.no_grad():
                self.mean_head.weight.normal_(0.0, float(getattr(config, "initializer_range", 0.02) or 0.02))
                self.mean_head.bias.zero_()
        elif pooling != "first":
            raise ValueError(f"unknown pooling {pooling!r}: use 'first', 'mean' or 'normalized_mean'")
        if self.aggregation.needs_hidden:
            cast(nn.Module, hf_model.base_model).register_forward_hook(_capture_first_token)

    def embed_windows(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """RETURNS (torch.Tensor): Each window's mean-pooled last hidden state
        (windows, hidden): the sentence-transformers embedding."""
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        hidden = cast(nn.Module, self.hf_model.base_model)(**inputs)[0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def head_input(self, embeddings: torch.Tensor) -> torch.Tensor:
        """RETURNS (torch.Tensor): What the mean-pooling head reads of the windows'
        embeddings: themselves, or scaled to unit length ("normalized_mean")."""
        if self.pooling == "normalized_mean":
            return nn.functional.normalize(embeddings, dim=-1)
        return embeddings

    def classify_windows(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """RETURNS (Tuple[torch.Tensor, Optional[torch.Tensor]]): The windows' logits
        and, if the aggregation needs them, their first-token hidden states."""
        if self.pooling in MEAN_POOLINGS:
            embedding = self.head_input(self.embed_windows(input_ids, attention_mask, token_type_ids))
            logits = self.mean_head(self.mean_dropout(embedding))
        else:
            inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                inputs["token_type_ids"] = token_type_ids
            logits = self.hf_model(**inputs).logits
        hidden = _captured.__dict__.pop("hidden", None) if self.aggregation.needs_hidden else None
        return logits, hidden

    def forward(self, batches: List[WindowBatch], counts: List[int], *, recompute: bool = False) -> torch.Tensor:
        """Document logits (docs, labels) in float32.

        batches (List[WindowBatch]): The windows of the documents.
        counts (List[int]): Windows per document, in document order.
        recompute (bool): Checkpoint each window batch (training on batches larger
            than the wordpiece budget).
        """
        logits, hidden, rows = [], [], []
        for batch in batches:
            if recompute:
                out = checkpoint(
                    self.classify_windows,
                    batch.input_ids,
                    batch.attention_mask,
                    batch.token_type_ids,
                    use_reentrant=False,
                )
            else:
                out = self.classify_windows(batch.input_ids, batch.attention_mask, batch.token_type_ids)
            logits.append(out[0].float())
            hidden.append(out[1])
            rows.append(batch.rows)
        order = torch.cat(rows)
        inverse = torch.empty_like(order)
        inverse[order] = torch.arange(len(order), device=order.device)
        window_logits = torch.cat(logits)[inverse]
        window_hidden = None
        if self.aggregation.needs_hidden:
            window_hidden = torch.cat(hidden)[inverse].float()  # type: ignore[arg-type]
        if len(counts) == len(window_logits):  # one window per document
            return window_logits
        return self.aggregation(window_logits, window_hidden, counts)
