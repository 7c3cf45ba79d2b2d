"""The contrastive warm-up (SetFit inside `spacy train`): the component's `warmup`
setting, run at initialize, after the pretrained weights are loaded and before
spaCy's supervised loop.

1. Pairs of training documents from their labels (pairs.py): seeded, balanced,
   bounded by ``pairs_per_example``.
2. Contrastive fine-tuning of the encoder, as sentence-transformers' cosine
   similarity loss does it: each document's embedding is the mean of its last
   hidden states over its wordpieces (the windows the chunking plans for training,
   averaged per document), and the squared error between the cosine similarity of
   the two embeddings of a pair and its target is minimized with AdamW (bias
   corrected, decoupled weight decay) under a linear warm-up and decay. Parameters
   the model freezes (freeze_layers, freeze_embeddings, a LoRA adapter's base) stay
   fixed.
3. With ``pooling = "mean"`` (the classifier reads that same embedding), the head
   starts as a logistic regression fitted on the warmed-up embeddings of the
   training documents (L2, C = 1, class weights applied), so the supervised loop
   starts from SetFit's classifier and fine-tunes it end to end.
"""

import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple, cast

import numpy
import torch
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model
from torch.utils.checkpoint import checkpoint

from ..errors import Errors, Warnings, config_error
from ..layers.classifier import get_shim, plan_batches
from ..layers.torch_model import MEAN_POOLINGS, WindowClassifier
from .pairs import Pair, check_examples, interleave, make_pairs

logger = logging.getLogger("spacy.bertcat")


@dataclass
class ContrastiveWarmup:
    """The warm-up's settings (see configure_contrastive_warmup_v1); called by the
    component at initialize."""

    pairs_per_example: int = 40
    max_pairs: Optional[int] = None
    epochs: int = 1
    learn_rate: float = 2e-5
    batch_size: int = 16
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    fit_head: bool = True
    head_l2: float = 1.0
    seed: int = 0

    def __call__(
        self,
        model: Model,
        docs: List[Doc],
        truth: numpy.ndarray,
        mask: numpy.ndarray,
        exclusive: bool,
        label_weights: Optional[List[float]] = None,
        *,
        name: str = "bertcat",
    ) -> None:
        """Warm the encoder up on pairs of `docs` and start the head (see the module
        docstring); the model is trained in place.

        model (Model): The component's classifier model, weights loaded.
        docs (List[Doc]): The training documents.
        truth (numpy.ndarray): Their gold values (docs, labels).
        mask (numpy.ndarray): Which values are observed (docs, labels).
        exclusive (bool): Whether the classes are mutually exclusive.
        label_weights (Optional[List[float]]): The resolved class weights.
        name (str): The component's name, for messages.
        """
        shim = get_shim(model)
        torch_model = cast(WindowClassifier, shim.model)
        labels = list(model.attrs["labels"])
        check_examples(truth, mask, labels, exclusive, name)
        positives, negatives = make_pairs(truth, mask, self.pairs_per_example, self.seed, self.max_pairs)
        if not positives or not negatives:
            kind, why = ("negative", "shares a label") if not negatives else ("positive", "shares no label")
            warnings.warn(Warnings.BCW046.format(name=name, kind=kind, why=why))
            return
        if torch_model.pooling not in MEAN_POOLINGS:
            warnings.warn(Warnings.BCW045.format(name=name, pooling=torch_model.pooling))
        texts = [doc.text for doc in docs]
        start = time.perf_counter()
        loss = self.train_encoder(model, torch_model, texts, positives, negatives)
        logger.info(
            "Contrastive warm-up: %d pairs, %d epoch(s), mean loss %.4f, %.1f s",
            2 * len(positives),
            self.epochs,
            loss,
            time.perf_counter() - start,
        )
        if self.fit_head and torch_model.pooling in MEAN_POOLINGS:
            rows = [i for i in range(len(docs)) if mask[i].any()]
            embeddings = embed(model, torch_model, [texts[i] for i in rows], is_train=False)
            embeddings = torch_model.head_input(embeddings)  # averaged over windows, then as the head reads
            weight, bias = fit_logistic_regression(
                embeddings, truth[rows], mask[rows], exclusive, label_weights, self.head_l2
            )
            with torch.no_grad():
                torch_model.mean_head.weight.copy_(weight)
                torch_model.mean_head.bias.copy_(bias)

    def train_encoder(
        self,
        model: Model,
        torch_model: WindowClassifier,
        texts: List[str],
        positives: List[Pair],
        negatives: List[Pair],
    ) -> float:
        """Contrastive fine-tuning of the encoder on the pairs. RETURNS (float): The
        mean loss of the last epoch."""
        torch.manual_seed(self.seed)
        encoder = cast(torch.nn.Module, torch_model.hf_model.base_model)
        params = [p for p in encoder.parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() > 1]
        no_decay = [p for p in params if p.dim() <= 1]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": self.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.learn_rate,
        )
        n_batches = math.ceil(2 * len(positives) / self.batch_size)
        total = max(1, n_batches * self.epochs)
        warmup_steps = int(total * self.warmup_ratio)

        def rate(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / (warmup_steps + 1)
            return max(0.0, (total - step) / max(1, total - warmup_steps))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
        was_training = torch_model.training
        torch_model.train()
        losses: List[float] = []
        try:
            for epoch in range(self.epochs):
                pairs = interleave(positives, negatives, self.seed + epoch)
                losses = []
                for start in range(0, len(pairs), self.batch_size):
                    batch = pairs[start : start + self.batch_size]
                    docs = sorted({i for pair in batch for i in (pair.first, pair.second)})
                    where = {i: k for k, i in enumerate(docs)}
                    vectors = embed(model, torch_model, [texts[i] for i in docs], is_train=True)
                    first = vectors[[where[p.first] for p in batch]]
                    second = vectors[[where[p.second] for p in batch]]
                    target = torch.tensor([p.target for p in batch], dtype=first.dtype, device=first.device)
                    loss = torch.nn.functional.mse_loss(torch.cosine_similarity(first, second, dim=-1), target)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    torch.nn.utils.clip_grad_norm_(params, 1.0)
                    optimizer.step()
                    schedule.step()
                    losses.append(float(loss.detach()))
        finally:
            optimizer.zero_grad(set_to_none=True)
            torch_model.train(was_training)
        return float(numpy.mean(losses)) if losses else 0.0


def embed(model: Model, torch_model: WindowClassifier, texts: Sequence[str], *, is_train: bool) -> torch.Tensor:
    """Each text's embedding: the mean-pooled last hidden states of its windows (the
    chunking's training plan where is_train, else its prediction plan), averaged
    over the windows. With is_train, gradients flow (window batches beyond the
    wordpiece budget are recomputed in the backward pass); else none are kept.

    RETURNS (torch.Tensor): (texts, hidden) in float32.
    """
    batches, counts, _ = plan_batches(model, list(texts), is_train)
    recompute = is_train and sum(b.n_wordpieces for b in batches) > model.attrs["max_batch_wordpieces"]
    outputs, rows = [], []
    with torch.set_grad_enabled(is_train):
        for batch in batches:
            args = (batch.input_ids, batch.attention_mask, batch.token_type_ids)
            if recompute:
                out = checkpoint(torch_model.embed_windows, *args, use_reentrant=False)
            else:
                out = torch_model.embed_windows(*args)
            outputs.append(out.float())
            rows.append(batch.rows)
        order = torch.cat(rows)
        windows = torch.empty_like(torch.cat(outputs))
        windows[order] = torch.cat(outputs)
        if len(counts) == len(windows):
            return windows
        doc_of = torch.repeat_interleave(torch.arange(len(counts), device=windows.device), torch.tensor(counts))
        sums = torch.zeros(len(counts), windows.shape[1], device=windows.device, dtype=windows.dtype)
        sums = sums.index_add(0, doc_of, windows)
        return sums / torch.tensor(counts, device=windows.device, dtype=windows.dtype).unsqueeze(1)


def fit_logistic_regression(
    embeddings: torch.Tensor,
    truth: numpy.ndarray,
    mask: numpy.ndarray,
    exclusive: bool,
    label_weights: Optional[List[float]],
    l2: float = 1.0,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fit the head on fixed embeddings: multinomial logistic regression (exclusive
    classes) or one binary logistic regression per label (its observed values
    only), minimizing the summed loss plus l2/2 times the squared weights (as
    scikit-learn's LogisticRegression with C = 1/l2), by L-BFGS.

    label_weights: Each class's weight (exclusive) or each label's positive weight.
    RETURNS (Tuple[torch.Tensor, torch.Tensor]): Weight (labels, hidden) and bias.
    """
    x = embeddings.detach()
    y = torch.as_tensor(truth, dtype=x.dtype, device=x.device)
    m = torch.as_tensor(mask, dtype=x.dtype, device=x.device)
    n_labels = y.shape[1]
    weights = torch.as_tensor(label_weights or [1.0] * n_labels, dtype=x.dtype, device=x.device)
    weight = torch.zeros(n_labels, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(n_labels, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        logits = x @ weight.T + bias
        if exclusive:
            target = y.argmax(1)
            loss = torch.nn.functional.cross_entropy(logits, target, weight=weights, reduction="none")
            loss = (loss * m.max(1).values).sum()
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=weights, reduction="none")
            loss = (loss * m).sum()
        loss = loss + 0.5 * l2 * (weight**2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


@registry.misc("spacy-bertcat.contrastive_warmup.v1")
def configure_contrastive_warmup_v1(
    pairs_per_example: int = 40,
    max_pairs: Optional[int] = None,
    epochs: int = 1,
    learn_rate: float = 2e-5,
    batch_size: int = 16,
    warmup_ratio: float = 0.1,
    weight_decay: float = 0.01,
    fit_head: bool = True,
    head_l2: float = 1.0,
    seed: int = 0,
) -> ContrastiveWarmup:
    """A contrastive warm-up of the encoder on pairs generated from the labels
    (SetFit), run by the component at initialize before the supervised updates.

    pairs_per_example (int): Pairs each training document anchors, half positive
        and half negative (40: SetFit's 20 iterations, one pair of each kind each).
    max_pairs (Optional[int]): At most this many pairs in all, so that the warm-up's
        cost stops growing with the data (null: no bound).
    epochs (int): Passes over the pairs.
    learn_rate (float): AdamW's peak learning rate for the encoder.
    batch_size (int): Pairs per optimizer step.
    warmup_ratio (float): Share of the steps over which the rate rises linearly
        (then it decays linearly to 0).
    weight_decay (float): AdamW's decoupled weight decay (not on biases and norms).
    fit_head (bool): Start the mean-pooling head as a logistic regression on the
        warmed-up embeddings (needs model pooling = "mean").
    head_l2 (float): The logistic regression's L2 strength (1/C).
    seed (int): Seed of the pairs and of the dropout during the warm-up.
    """
    checks: List[Tuple[str, Any, bool, str]] = [
        ("pairs_per_example", pairs_per_example, pairs_per_example >= 2, "an integer of at least 2"),
        ("max_pairs", max_pairs, max_pairs is None or max_pairs >= 2, "null or an integer of at least 2"),
        ("epochs", epochs, epochs >= 1, "an integer of at least 1"),
        ("learn_rate", learn_rate, learn_rate > 0, "a positive number"),
        ("batch_size", batch_size, batch_size >= 1, "an integer of at least 1"),
        ("warmup_ratio", warmup_ratio, 0 <= warmup_ratio < 1, "at least 0 and below 1"),
        ("weight_decay", weight_decay, weight_decay >= 0, "0 or more"),
        ("head_l2", head_l2, head_l2 > 0, "a positive number"),
    ]
    for setting, value, ok, expected in checks:
        if not ok:
            raise config_error(
                Errors.BC141.format(setting=setting, expected=expected, value=value), ["warmup", setting]
            )
    return ContrastiveWarmup(
        pairs_per_example=pairs_per_example,
        max_pairs=max_pairs,
        epochs=epochs,
        learn_rate=learn_rate,
        batch_size=batch_size,
        warmup_ratio=warmup_ratio,
        weight_decay=weight_decay,
        fit_head=fit_head,
        head_l2=head_l2,
        seed=seed,
    )
