"""Windows into padded tensors: length-sorted batches under a wordpiece budget.

Windows of all documents in a batch are sorted by length and cut into groups whose
padded size (rows x longest row) stays within ``max_batch_wordpieces`` and whose rows
differ little in length, so a batch of short texts runs as a few dense matrices with
little padding, and a 100k-word document as many bounded ones. Each group is padded
only to its own longest window (dynamic padding).
"""

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy
import torch

from .chunking import DocWindows, Window
from .tokenizer import Ids, WordpieceTokenizer


@dataclass
class WindowBatch:
    """Padded windows ready for the model.

    input_ids (torch.Tensor): (rows, length) wordpiece ids, framed and padded.
    attention_mask (torch.Tensor): (rows, length), 1 for real wordpieces.
    rows (torch.Tensor): For each row, the window's index in document order.
    token_type_ids (Optional[torch.Tensor]): (rows, length) token types, for the
        families whose frame has types other than 0 (Funnel); else None.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    rows: torch.Tensor
    token_type_ids: Optional[torch.Tensor] = None

    @property
    def n_wordpieces(self) -> int:
        return int(self.input_ids.numel())


def window_ids(ids: Ids, window: Window, tokenizer: WordpieceTokenizer) -> List[int]:
    """RETURNS (List[int]): The window's wordpiece ids framed by the special tokens."""
    pieces = [ids[start:end].tolist() for start, end in window]
    return tokenizer.prefix + [i for piece in pieces for i in piece] + tokenizer.suffix


# Every forward call has a fixed cost (Python and kernel launches per layer):
# on a CPU, a MiniLM forward and backward costs about as much as 15-30 more
# wordpieces of work. So a row may always carry this much padding rather than open
# a group of its own: SST-2's 10-40-wordpiece sentences then run as one group per
# training batch instead of 2.7 (SST-2, 300 steps: 61 -> 45 s),
# while windows of hundreds of wordpieces are still grouped by `max_padding`.
MIN_PADDING = 32


def group_by_budget(
    lengths: Sequence[int], budget: int, max_padding: float = 0.2, min_padding: int = MIN_PADDING
) -> List[List[int]]:
    """Group indices, longest first, into groups of similar length within a budget.

    A row joins the current group if the group stays within the budget (rows x
    longest row) and the row is at most `max_padding` (a share of the group's
    longest) or `min_padding` wordpieces shorter, so no row carries more padding
    than that.

    lengths (Sequence[int]): Length of each row.
    budget (int): Most wordpieces (padding included) in a group; a row longer than
        the budget forms a group of its own.
    max_padding (float): Largest share of a row that may be padding, beyond
        `min_padding`.
    min_padding (int): Padding (wordpieces) a row may always carry (so a short row
        can be mostly padding: a few wordpieces of waste against a forward call).
    RETURNS (List[List[int]]): The indices of each group.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    groups: List[List[int]] = []
    for i in order:
        if groups:
            longest = lengths[groups[-1][0]]
            fits = (len(groups[-1]) + 1) * longest <= budget
            if fits and longest - lengths[i] <= max(longest * max_padding, min_padding):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def make_batches(
    doc_ids: Sequence[Ids],
    plans: Sequence[DocWindows],
    tokenizer: WordpieceTokenizer,
    budget: int,
    device: torch.device,
    max_padding: float = 0.2,
    min_padding: int = MIN_PADDING,
) -> Tuple[List[WindowBatch], List[int]]:
    """Frame, sort and pad the planned windows of a batch of documents.

    RETURNS (Tuple[List[WindowBatch], List[int]]): The batches and the number of
        windows of each document.
    """
    rows = [window_ids(ids, window, tokenizer) for ids, plan in zip(doc_ids, plans) for window in plan.windows]
    counts = [len(plan.windows) for plan in plans]
    batches = []
    for group in group_by_budget([len(r) for r in rows], budget, max_padding, min_padding):
        width = len(rows[group[0]])
        input_ids = numpy.full((len(group), width), tokenizer.pad_id, dtype="int64")
        mask = numpy.zeros((len(group), width), dtype="int64")
        for r, index in enumerate(group):
            input_ids[r, : len(rows[index])] = rows[index]
            mask[r, : len(rows[index])] = 1
        types = None
        if tokenizer.type_frame is not None:
            types = torch.from_numpy(_token_types(mask, tokenizer.type_frame)).to(device)
        batches.append(
            WindowBatch(
                torch.from_numpy(input_ids).to(device),
                torch.from_numpy(mask).to(device),
                torch.as_tensor(group, device=device),
                types,
            )
        )
    return batches, counts


def _token_types(mask: numpy.ndarray, type_frame: Tuple[List[int], int, List[int]]) -> numpy.ndarray:
    """RETURNS (numpy.ndarray): Token types of padded framed windows: the prefix's,
    the text's, the suffix's (right before each row's padding), 0 for padding."""
    prefix, text, suffix = type_frame
    types = mask * text
    types[:, : len(prefix)] = prefix
    if suffix:
        ends = mask.sum(axis=1)
        for r, end in enumerate(ends):
            types[r, end - len(suffix) : end] = suffix
    return types
