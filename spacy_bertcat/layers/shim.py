"""The torch shim: runs the WindowClassifier for thinc and steps its optimizer; its
serialization is in layers/shim_io.py.

Public surface: ``model`` (the WindowClassifier), ``hf_model``, ``tokenizer``,
``predict`` / ``begin_update`` on window batches, ``finish_update(optimizer)``,
``set_trainable_top_layers`` and ``to_bytes`` / ``from_bytes``.

Gradient accumulation: backprop receives the gradient of a *mean* over the
documents of its batch and accumulates it weighted by the batch's size relative to
the first batch since the last step; the optimizer step divides by the total
weight. So spaCy's ``accumulate_gradient`` (whose sub-batches can differ in size)
gives exactly the gradient of the whole batch, as one pass would, and the float16
loss scale multiplies a mean, not a sum over documents.

LoRA adapters (layers/adapter.py): with an adapter setting, the adapter is injected
when the model is installed for training (at initialize, or at the first update of a
loaded pipeline whose adapter was merged into its weights), the map is rebuilt, and
only the adapter and the head train. ``to_bytes`` stores merged weights or the
adapter alone, as the setting says.

Parameter averaging (thinc's ``use_averages``): the optimizer step keeps an
exponential moving average of the weights in ``optimizer.averages``, and
``use_params`` swaps it in, so spaCy evaluates and saves the averaged weights.
"""

import contextlib
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, cast

import torch
from thinc.api import Optimizer, PyTorchShim, get_torch_default_device

from ..errors import Errors, Warnings, config_error
from .adapter import LoraAdapter, base_fingerprint, is_injected
from .batching import WindowBatch
from .encoder_map import EncoderMap, build_encoder_map
from .freezing import apply_freezing, check_layer_options
from .hf_loading import is_local_dir
from .onnx_runtime import describe
from .optim import LossScale, OptimizerStep, StepResult, averages_key
from .param_groups import param_groups
from .shim_io import shim_from_bytes, shim_to_bytes
from .tokenizer import WordpieceTokenizer
from .torch_model import WindowClassifier

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _one_torch_thread_in_forked_child() -> None:
    """`nlp.pipe(n_process=2)` forks workers. torch's CPU build runs its intra-op
    threads on GNU OpenMP, which is not fork-safe: once the parent has run a parallel
    region, the child's next one waits forever for threads that were not copied. A
    forked worker therefore runs torch on one thread, as torch's own DataLoader
    workers do (and n workers on one thread each is the right split anyway)."""
    torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_torch_thread_in_forked_child)


class BertCatShim(PyTorchShim):
    """Holds the torch model, its tokenizer and its training state.

    cfg (Dict[str, Any]): The model settings (name, freezing, learning-rate scales,
        mixed precision, attention implementation) from the architecture's config.
    adapter (Optional[LoraAdapter]): LoRA settings, or None to train the encoder.
    """

    def __init__(self, cfg: Dict[str, Any], adapter: Optional[LoraAdapter] = None) -> None:
        if cfg["amp_dtype"] not in AMP_DTYPES:
            raise config_error(Errors.BC019.format(value=cfg["amp_dtype"]), ["model", "amp_dtype"])
        super().__init__(None, config=cfg, mixed_precision=False)
        self.tokenizer: Optional[WordpieceTokenizer] = None
        self.encoder_map: Optional[EncoderMap] = None
        self.trainable_top: Optional[int] = None
        self.loss_scale = LossScale(False)
        self.last_step: Optional[StepResult] = None
        self.n_steps = 0
        self.n_skipped = 0
        self._step: Optional[OptimizerStep] = None
        self._accumulated = 0.0  # batches' weights since the last step, see backprop
        self._first_docs = 0
        self.adapter = adapter
        self.adapter_targets: Optional[List[str]] = None
        self.adapter_base: Optional[str] = None  # fingerprint of the base the adapter was injected into
        # (name, absolute path) of the base where the model's name is a local folder:
        # an adapter-only save loads it from any working directory
        self.adapter_base_path: Optional[Tuple[str, str]] = None
        self._adapter_pending = False  # merged weights loaded: inject at the first update
        # Data-parallel training: (params, local_docs, grad_scale) -> total docs
        self.grad_reducer: Optional[Callable[[List[torch.nn.Parameter], float, float], float]] = None

    @property
    def model(self) -> Optional[WindowClassifier]:
        return self._model

    @property
    def hf_model(self) -> Any:
        return self._model.hf_model if self._model is not None else None

    @property
    def serving(self) -> Optional[Dict[str, Any]]:
        """RETURNS (Optional[Dict[str, Any]]): The serving runtime of a pipeline made
        by `spacy-bertcat optimize` (it predicts, it does not train), else None."""
        return getattr(self._model, "runtime", None)

    @property
    def num_labels(self) -> Optional[int]:
        """RETURNS (Optional[int]): The classifier's outputs (None before initialize)."""
        if self._model is None:
            return None
        if self.serving is not None:
            return self._model.num_labels
        return self.hf_model.config.num_labels

    @property
    def amp_enabled(self) -> bool:
        return bool(self.cfg["mixed_precision"]) and self.device.type == "cuda"

    def set_model(self, model: WindowClassifier, tokenizer: WordpieceTokenizer, inject_adapter: bool = True) -> None:
        """Install a model and tokenizer: move to the device, map the encoder, check
        the per-layer options against it and apply freezing. The model starts in
        eval mode (wrapper and Hugging Face model alike); the first training update
        switches the whole model to train mode, so dropout is on from step one.
        With an adapter setting, the adapter is injected now (`inject_adapter`) or
        at the first update."""
        self._model = model.to(get_torch_default_device())
        self._model.eval()
        self.tokenizer = tokenizer
        self._step = None
        self._accumulated = 0
        self._first_docs = 0
        if self.cfg["mixed_precision"] and self.device.type != "cuda":
            warnings.warn(Warnings.BCW004)
        fp16 = self.amp_enabled and self.cfg["amp_dtype"] == "float16"
        self.loss_scale = LossScale(fp16)
        self.encoder_map = build_encoder_map(self._model, self._model.hf_model, tokenizer.probe_id)
        self._adapter_pending = self.adapter is not None and not is_injected(self._model)
        if self._adapter_pending and inject_adapter:
            self.inject_adapter()
        check_layer_options(
            self.encoder_map,
            freeze_layers=self.cfg["freeze_layers"],
            layer_lr_decay=self.cfg["layer_lr_decay"],
            trainable_top=self.trainable_top,
        )
        self.apply_freezing()

    def set_serving_model(self, model: WindowClassifier) -> None:
        """Install a serving model (layers/onnx_runtime.py), keeping the tokenizer: no
        encoder map, nothing to train."""
        self._model = model.eval()
        self.encoder_map = None
        self._step = None
        self._accumulated = 0
        self._adapter_pending = False

    def refuse_training(self) -> None:
        """Raise BC065 for a serving model (it has no weights to train)."""
        if self.serving is not None:
            raise ValueError(Errors.BC065.format(runtime=describe(self.serving)))

    def inject_adapter(self, targets: Optional[List[str]] = None, base: Optional[str] = None) -> None:
        """Add the LoRA layers to the installed model (default targets: from the
        encoder map) and map it again; the optimizer step starts afresh. The base's
        fingerprint (`base`, if already known) is kept only where an adapter-only
        save needs it."""
        if targets is None:
            targets = self.adapter.targets(self._model, self.encoder_map)  # type: ignore[union-attr, arg-type]
        if base is None and self.adapter.save == "adapter":  # type: ignore[union-attr]
            base = base_fingerprint(self._model, cast(EncoderMap, self.encoder_map))
            name = str(self.cfg.get("name"))
            self.adapter_base_path = (name, str(Path(name).expanduser().resolve())) if is_local_dir(name) else None
        self.adapter_base = base
        self.adapter.inject(self._model.hf_model, targets)  # type: ignore[union-attr]
        self._model.to(get_torch_default_device())
        self.adapter_targets = list(targets)
        self.encoder_map = build_encoder_map(
            self._model, self._model.hf_model, cast(WordpieceTokenizer, self.tokenizer).probe_id
        )
        self._adapter_pending = False
        self._step = None
        self.apply_freezing()

    def resize_head(self, labels: List[str]) -> None:
        """Grow the classification head to one output per label, in place: the
        output layer (the head's linear layer with one output per label) keeps its
        rows, so the existing labels' logits are unchanged up to float rounding (a
        matrix product one output wider may round the last bit differently), and each new row
        starts as transformers starts a head (normal weights with the config's
        initializer_range, bias 0). The optimizer step starts afresh, as the head's
        parameters are new tensors. Raises a ValueError where that layer cannot be
        found, and BC065 for a serving model."""
        self.refuse_training()
        if self._model is None:
            return
        hf_model = self.hf_model
        n_old, n_new = hf_model.config.num_labels, len(labels)
        head = set(cast(EncoderMap, self.encoder_map).head)
        found = [
            (path, module)
            for path, module in hf_model.named_modules()
            if isinstance(module, torch.nn.Linear)
            and module.out_features == n_old
            and f"hf_model.{path}.weight" in head
        ]
        if not found:
            model_type = hf_model.config.model_type
            raise ValueError(f"no linear layer with {n_old} outputs in the head of this {model_type} model")
        path, old = found[-1]
        mean_head = getattr(self._model, "mean_head", None)
        if mean_head is not None:  # the mean-pooling head is the one in use: grow both
            self._model.mean_head = _grown_linear(mean_head, n_new, hf_model.config)
        new = torch.nn.Linear(
            old.in_features, n_new, bias=old.bias is not None, device=old.weight.device, dtype=old.weight.dtype
        )
        with torch.no_grad():
            std = float(getattr(hf_model.config, "initializer_range", 0.02) or 0.02)
            new.weight.normal_(0.0, std)
            new.weight[:n_old] = old.weight
            if old.bias is not None:
                new.bias.zero_()
                new.bias[:n_old] = old.bias
        new.weight.requires_grad_(old.weight.requires_grad)
        if old.bias is not None:
            new.bias.requires_grad_(old.bias.requires_grad)
        parent_path, _, attr = path.rpartition(".")
        setattr(hf_model.get_submodule(parent_path) if parent_path else hf_model, attr, new)
        hf_model.config.num_labels = n_new
        hf_model.config.id2label = dict(enumerate(labels))
        hf_model.config.label2id = {label: i for i, label in enumerate(labels)}
        if hasattr(hf_model, "num_labels"):
            hf_model.num_labels = n_new
        self.encoder_map = build_encoder_map(self._model, hf_model, cast(WordpieceTokenizer, self.tokenizer).probe_id)
        self._step = None
        self._accumulated = 0
        self.apply_freezing()

    def check_trainable_top_layers(self) -> None:
        """Raise a SettingError if gradual unfreezing cannot apply to this model
        (its layers share weights), before training starts."""
        check_layer_options(
            cast(EncoderMap, self.encoder_map),
            freeze_layers=self.cfg["freeze_layers"],
            layer_lr_decay=self.cfg["layer_lr_decay"],
            trainable_top=0,
        )

    def apply_freezing(self) -> None:
        apply_freezing(
            self._model,
            cast(EncoderMap, self.encoder_map),
            freeze_embeddings=self.cfg["freeze_embeddings"],
            freeze_layers=self.cfg["freeze_layers"],
            trainable_top=self.trainable_top,
            adapter_only=is_injected(self._model),
        )

    def set_trainable_top_layers(self, n: Optional[int]) -> None:
        """Train only the head and the top n encoder layers (None: no limit)."""
        if n != self.trainable_top:
            self.refuse_training()
            if self._model is not None:
                check_layer_options(
                    cast(EncoderMap, self.encoder_map),
                    freeze_layers=self.cfg["freeze_layers"],
                    layer_lr_decay=self.cfg["layer_lr_decay"],
                    trainable_top=n,
                )
            self.trainable_top = n
            if self._model is not None:
                self.apply_freezing()

    def _autocast(self):
        dtype = AMP_DTYPES[self.cfg["amp_dtype"]]
        return torch.autocast("cuda", dtype=dtype, enabled=self.amp_enabled)

    def predict(self, batches: List[WindowBatch], counts: List[int]) -> torch.Tensor:  # type: ignore[override]
        """RETURNS (torch.Tensor): Document logits, without autograd."""
        if self._model.training:  # switching walks every module: only when needed
            self._model.eval()
        with torch.inference_mode(), self._autocast():
            return self._model(batches, counts)

    def begin_update(  # type: ignore[override]
        self, batches: List[WindowBatch], counts: List[int], recompute: bool = False
    ) -> Tuple[torch.Tensor, Callable[[torch.Tensor], None]]:
        """Forward pass for training.

        recompute (bool): Keep only one window batch's activations at a time and
            recompute them in backward (for batches larger than the budget).
        RETURNS (Tuple[torch.Tensor, Callable]): Document logits, and a callback
            taking the gradient of the mean loss over these documents.
        """
        self.refuse_training()
        if self._adapter_pending:
            self.inject_adapter()
        if not self._model.training:
            self._model.train()
        with self._autocast():
            logits = self._model(batches, counts, recompute=recompute)
        n_docs = len(counts)

        def backprop(d_logits: torch.Tensor) -> None:
            # Backward gets the gradient of the batch's mean loss times the fp16 loss
            # scale (not of the sum over documents, which overflows n_docs times
            # sooner). Under accumulation each batch is weighted by its size relative
            # to the first batch since the last step; finish_update divides by the
            # total weight, which gives the exact mean over all documents.
            if self._accumulated == 0:
                self._first_docs = n_docs
            weight = n_docs / self._first_docs
            scale = weight * self.loss_scale.value
            torch.autograd.backward(logits, grad_tensors=d_logits.to(logits.dtype) * scale)
            self._accumulated += weight

        return logits, backprop

    def finish_update(self, optimizer: Optimizer) -> None:
        """Take one optimizer step over the gradients accumulated since the last.

        With a `grad_reducer` (data-parallel training, distributed/allreduce.py),
        every worker calls this at every step, also one that had no documents: the
        reducer sums the workers' gradients (each made a sum over its documents)
        and their document counts, so the step divides by the documents of all
        workers, as one worker with their whole batch would."""
        if self._model is None or (self._accumulated == 0 and self.grad_reducer is None):
            return
        if self._step is None:
            groups = param_groups(
                self._model, cast(EncoderMap, self.encoder_map), self.cfg["head_lr_scale"], self.cfg["layer_lr_decay"]
            )
            self._step = OptimizerStep(groups, self.id)
        if self.grad_reducer is not None:
            local_docs = round(self._accumulated * self._first_docs)  # a count, summed from ratios
            total_docs = self.grad_reducer(self._step.params, local_docs, self._first_docs)
            self._accumulated = 0
            if total_docs == 0:  # no worker had a document: no step, as on one worker
                self._step.zero_grad()
                return
            divisor = total_docs * self.loss_scale.value
        else:
            divisor = self._accumulated * self.loss_scale.value
        self.last_step = self._step(optimizer, grad_divisor=divisor)
        self.loss_scale.update(found_inf=self.last_step.skipped)
        self._accumulated = 0
        self.n_steps += 1
        self.n_skipped += int(self.last_step.skipped)

    @contextlib.contextmanager
    def use_params(self, params: Dict) -> Iterator[None]:
        """Swap in the averaged weights that the optimizer step keeps in `params`
        (a thinc optimizer's ``averages``), for the duration of the context."""
        averages = params.get(averages_key(self.id)) if self._model is not None else None
        if averages is None or not averages.averages:
            yield
            return
        named = dict(self._model.named_parameters())
        backup = {}
        with torch.no_grad():
            for name, average in averages.averages.items():
                backup[name] = named[name].detach().clone()
                named[name].copy_(average)
        try:
            yield
        finally:
            with torch.no_grad():
                for name, weights in backup.items():
                    named[name].copy_(weights)

    def to_bytes(self) -> bytes:
        """RETURNS (bytes): The model, tokenizer and settings (layers/shim_io.py)."""
        return shim_to_bytes(self)

    def from_bytes(self, data: bytes) -> "BertCatShim":
        """Load what `to_bytes` stored (layers/shim_io.py). RETURNS: self."""
        return shim_from_bytes(self, data)


def _grown_linear(old: torch.nn.Linear, n_new: int, config: Any) -> torch.nn.Linear:
    """RETURNS (torch.nn.Linear): `old` with n_new outputs: its rows kept, the new
    ones started as transformers starts a head."""
    n_old = old.out_features
    new = torch.nn.Linear(old.in_features, n_new, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        new.weight.normal_(0.0, float(getattr(config, "initializer_range", 0.02) or 0.02))
        new.weight[:n_old] = old.weight
        new.bias.zero_()
        new.bias[:n_old] = old.bias
    new.weight.requires_grad_(old.weight.requires_grad)
    new.bias.requires_grad_(old.bias.requires_grad)
    return new
