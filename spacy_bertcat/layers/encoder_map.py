"""One map of the encoder, found from its structure: what every parameter is.

Freezing, gradual unfreezing, learning-rate scales, weight decay and the position
limit all read this map, so an option means the same thing for every family:

- ``embeddings``: what the model computes before its first layer: token, position
  and type embeddings, their norm, and projections to the hidden size (ELECTRA,
  ConvBERT);
- ``layers``: the stack of encoder layers, in the order the model applies them
  (``encoder.layer.i``, ``transformer.layer.i``, ``layers.i``, Funnel's
  ``blocks.i.j``, ...). Tensors the model applies after the last layer (a final
  norm: ModernBERT's ``final_norm``, EuroBERT's ``norm``) belong to the top layer,
  tensors applied between two layers to the lower one;
- ``shared``: pretrained tensors of the encoder outside every layer that the layers
  read: relative-position tables and their norm (DeBERTa's ``rel_embeddings``, MPNet's
  ``relative_attention_bias``), ALBERT's embedding projection. They follow the
  embeddings in every rule (frozen with them, unfrozen with them, same rate);
- ``head``: everything outside the encoder (the classifier, DistilBERT's
  ``pre_classifier``, DeBERTa's and ModernBERT's pooling heads, the window attention)
  and the encoder's ``pooler``.

The stack is found by running the model once on a few wordpieces and recording,
for every parameter, when it is first used and, for every module of a ``ModuleList``
of the encoder, when it is called: no family's parameter names are spelled out. A
shared-layer model (ALBERT applies one layer 12 times) is recognised by a layer
called more than once. The same pass finds the position table and its offset
(RoBERTa-style models start positions after the padding id), so the model's true
position limit comes from the model itself.
"""

import itertools
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import Errors, SettingError

EMBEDDINGS, LAYER, SHARED, HEAD = "embeddings", "layer", "shared", "head"
_PROBE_LENGTH = 16


@dataclass(frozen=True)
class EncoderMap:
    """Where every parameter of a WindowClassifier sits (names as in
    ``named_parameters()``).

    model_type (str): The Hugging Face model type.
    embeddings (Tuple[str, ...]): The input side, applied before the first layer.
    layers (Tuple[Tuple[str, ...], ...]): Each distinct encoder layer's parameters,
        bottom first.
    shared (Tuple[str, ...]): Encoder tensors outside the layers that they read.
    head (Tuple[str, ...]): The classification head and the encoder's pooler.
    applications (int): Layer applications per forward pass (more than
        len(layers) when layers are shared, as in ALBERT).
    position_limit (Optional[int]): Most wordpieces per window the model can read:
        its position table minus the offset; for relative or rotary positions
        (no table) the length it was trained for, max_position_embeddings.
    position_offset (int): The first position id (2 for RoBERTa-style models).
    position_table (bool): Whether the model has an absolute position table.
    """

    model_type: str
    embeddings: Tuple[str, ...]
    layers: Tuple[Tuple[str, ...], ...]
    shared: Tuple[str, ...]
    head: Tuple[str, ...]
    applications: int
    position_limit: Optional[int]
    position_offset: int
    position_table: bool = True

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def shares_layers(self) -> bool:
        """Whether some layer's weights are applied more than once (ALBERT)."""
        return self.applications != len(self.layers)

    def positions(self) -> Dict[str, Tuple[str, int]]:
        """RETURNS (Dict[str, Tuple[str, int]]): Each parameter's kind and layer
        index (-1 unless the kind is "layer")."""
        out = {name: (EMBEDDINGS, -1) for name in self.embeddings}
        out.update({name: (SHARED, -1) for name in self.shared})
        out.update({name: (HEAD, -1) for name in self.head})
        for i, names in enumerate(self.layers):
            out.update({name: (LAYER, i) for name in names})
        return out

    def summary(self) -> Dict[str, int]:
        """RETURNS (Dict[str, int]): Parameter tensors per kind, for messages."""
        return {
            EMBEDDINGS: len(self.embeddings),
            "layers": self.n_layers,
            "layer_applications": self.applications,
            SHARED: len(self.shared),
            HEAD: len(self.head),
        }


def layer_modules(base: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The candidate encoder layers: the outermost modules with parameters held in a
    ``ModuleList`` of the encoder (nested lists are flattened: Funnel's blocks)."""
    found: List[Tuple[str, nn.Module]] = []

    def visit(module: nn.Module, prefix: str, in_list: bool) -> None:
        for name, child in module.named_children():
            path = f"{prefix}.{name}" if prefix else name
            if isinstance(child, nn.ModuleList):
                visit(child, path, True)
            elif in_list and any(True for _ in child.parameters()):
                found.append((path, child))
            elif not in_list:
                visit(child, path, False)

    visit(base, "", False)
    return found


class _UseRecorder(TorchFunctionMode):
    """Counts torch calls; records each parameter's first use and the indices
    passed to embedding lookups."""

    def __init__(self, params: Dict[int, str]) -> None:
        super().__init__()
        self.params = params
        self.first_use: Dict[str, int] = {}
        self.lookups: List[Tuple[str, torch.Tensor]] = []
        self.tick = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.tick += 1
        for arg in itertools.chain(args, kwargs.values()):
            for value in arg if isinstance(arg, (list, tuple)) else (arg,):
                name = self.params.get(id(value)) if isinstance(value, torch.Tensor) else None
                if name is not None:
                    self.first_use.setdefault(name, self.tick)
        if func is torch.nn.functional.embedding and id(args[1]) in self.params:
            self.lookups.append((self.params[id(args[1])], args[0].detach()))
        return func(*args, **kwargs)


def build_encoder_map(model: nn.Module, hf_model: nn.Module, probe_id: int) -> EncoderMap:
    """Map the parameters of `model` (a module holding `hf_model`).

    model (nn.Module): The module whose parameter names the map uses.
    hf_model (nn.Module): The Hugging Face sequence classifier inside it.
    probe_id (int): A wordpiece id that is not a special token, for the probe pass.
    RETURNS (EncoderMap): The map.
    """
    from .hf_loading import quiet_transformers

    base = cast(nn.Module, hf_model.base_model)
    names: Dict[int, str] = {}
    for name, param in model.named_parameters():
        names.setdefault(id(param), name)
    module_names = {id(m): n for n, m in model.named_modules()}
    base_prefix = module_names[id(base)] + "."
    candidates = [(base_prefix + path, module) for path, module in layer_modules(base)]

    recorder = _UseRecorder(names)
    calls: List[Tuple[str, str, int]] = []  # (start|end, module path, tick)

    def mark(kind: str, path: str) -> None:
        recorder.tick += 1
        calls.append((kind, path, recorder.tick))

    hooks = []
    for path, module in candidates:
        hooks.append(module.register_forward_pre_hook(lambda m, a, p=path: mark("start", p)))
        hooks.append(module.register_forward_hook(lambda m, a, o, p=path: mark("end", p)))
    device = next(hf_model.parameters()).device
    input_ids = torch.full((1, _PROBE_LENGTH), probe_id, dtype=torch.long, device=device)
    attention_mask = torch.ones_like(input_ids)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), quiet_transformers(), recorder:
            hf_model(input_ids=input_ids, attention_mask=attention_mask)
    except Exception as e:
        model_type = cast(Any, hf_model.config).model_type
        raise SettingError(Errors.BC050.format(model_type=model_type, reason=repr(e)[:300]), "model.name") from e
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)

    starts = [(path, tick) for kind, path, tick in calls if kind == "start"]
    order = list(dict.fromkeys(path for path, _ in starts))
    modules = dict(candidates)
    layer_of: Dict[str, int] = {}
    for i, path in enumerate(order):
        for name, _ in modules[path].named_parameters(prefix=path):
            layer_of.setdefault(name, i)
    intervals = _layer_intervals(calls, order)
    stack_parent = _list_owner(model, order[0]) if order else base_prefix
    first, last = (intervals[0][0], intervals[-1][1]) if intervals else (0, 0)

    embeddings: List[str]
    embeddings, shared, head = [], [], []
    layers: List[List[str]] = [[] for _ in order]
    for name in dict.fromkeys(names.values()):
        if name in layer_of:
            layers[layer_of[name]].append(name)
            continue
        if not name.startswith(base_prefix) or name[len(base_prefix) :].startswith("pooler"):
            head.append(name)
            continue
        tick = recorder.first_use.get(name)
        if tick is None or not order:
            shared.append(name)
        elif tick > last:
            layers[-1].append(name)  # a final norm: part of the top layer
        elif tick < first:
            in_encoder = stack_parent != base_prefix and name.startswith(stack_parent)
            (shared if in_encoder else embeddings).append(name)
        else:
            between = [i for i, (_, end) in enumerate(intervals) if end < tick]
            inside = any(start < tick < end for start, end in intervals)
            if inside or not between:
                shared.append(name)
            else:
                layers[between[-1]].append(name)
    limit, offset = _position_table(recorder.lookups, model, _PROBE_LENGTH)
    has_table = limit is not None
    if limit is None:
        limit = getattr(hf_model.config, "max_position_embeddings", None)
        limit = limit if isinstance(limit, int) and limit > 0 else None
    return EncoderMap(
        model_type=cast(Any, hf_model.config).model_type,
        embeddings=tuple(embeddings),
        layers=tuple(tuple(names) for names in layers),
        shared=tuple(shared),
        head=tuple(head),
        applications=len(starts),
        position_limit=limit,
        position_offset=offset,
        position_table=has_table,
    )


def _list_owner(model: nn.Module, path: str) -> str:
    """RETURNS (str): The name (with a trailing dot) of the module that holds the
    outermost ModuleList on the way to the module at `path`."""
    parts = path.split(".")
    module = model
    for i, part in enumerate(parts):
        module = getattr(module, part)
        if isinstance(module, nn.ModuleList):
            return ".".join(parts[:i]) + "."
    return path + "."


def _layer_intervals(calls: Sequence[Tuple[str, str, int]], order: List[str]) -> List[Tuple[int, int]]:
    """RETURNS (List[Tuple[int, int]]): Per distinct layer, its first start and its
    last end tick."""
    spans: Dict[str, List[int]] = {}
    for kind, path, tick in calls:
        span = spans.setdefault(path, [tick, tick])
        if kind == "start":
            span[0] = min(span[0], tick)
        else:
            span[1] = max(span[1], tick)
    return [(spans[p][0], spans[p][1]) for p in order]


def _position_table(
    lookups: Sequence[Tuple[str, torch.Tensor]], model: nn.Module, length: int
) -> Tuple[Optional[int], int]:
    """Find the absolute position table among the embedding lookups of the probe
    (a run of one repeated wordpiece): the table looked up with consecutive
    indices, arange(length) + offset (padding the model adds after them aside).

    RETURNS (Tuple[Optional[int], int]): Positions the table can index from the
        offset on (None without a table), and the offset.
    """
    params = dict(model.named_parameters())
    expected = torch.arange(length)
    found: List[Tuple[int, int]] = []
    for name, indices in lookups:
        if indices.dim() == 0 or indices.shape[-1] < length:
            continue
        rows = indices.reshape(-1, indices.shape[-1])[:, :length].cpu() - expected
        if bool((rows == rows[:, :1]).all()):
            offset = int(rows[0, 0])
            found.append((params[name].shape[0] - offset, offset))
    if not found:
        return None, 0
    return min(found)
