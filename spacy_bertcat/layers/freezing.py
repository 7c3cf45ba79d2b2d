"""Layer freezing, through ``requires_grad`` (gradual unfreezing, the training
callback that moves the limit, is training/unfreezing.py).

A frozen parameter gets no gradient, so the optimizer never touches it (no update,
no weight decay) and autograd records nothing below the lowest trainable layer,
which also saves the backward pass through the frozen layers.
"""

from typing import Optional

from torch import nn

from ..errors import Errors, SettingError
from .adapter import is_adapter_param
from .encoder_map import EMBEDDINGS, HEAD, LAYER, SHARED, EncoderMap


def check_layer_options(
    encoder_map: EncoderMap, *, freeze_layers: int, layer_lr_decay: float, trainable_top: Optional[int] = None
) -> None:
    """Raise a clear error for per-layer options the model's layer stack cannot take:
    more frozen layers than it has, or any per-layer option on a model whose layers
    share weights (ALBERT), where "layer i" has no weights of its own."""
    if encoder_map.shares_layers:
        used = [
            setting
            for setting, active in (
                ("freeze_layers", freeze_layers > 0),
                ("layer_lr_decay", layer_lr_decay != 1.0),
                ("spacy-bertcat.gradual_unfreezing.v1", trainable_top is not None),
            )
            if active
        ]
        if used:
            raise SettingError(
                Errors.BC052.format(
                    model_type=encoder_map.model_type,
                    n_layers=encoder_map.n_layers,
                    applications=encoder_map.applications,
                    settings=", ".join(used),
                ),
                "model." + used[0] if not used[0].startswith("spacy-") else "training.before_update",
            )
    if freeze_layers > encoder_map.n_layers:
        raise SettingError(
            Errors.BC053.format(value=freeze_layers, model_type=encoder_map.model_type, n_layers=encoder_map.n_layers),
            "model.freeze_layers",
        )


def apply_freezing(
    module: nn.Module,
    encoder_map: EncoderMap,
    *,
    freeze_embeddings: bool,
    freeze_layers: int,
    trainable_top: Optional[int] = None,
    adapter_only: bool = False,
) -> None:
    """Set `requires_grad` on every parameter of the model.

    module (nn.Module): The model.
    encoder_map (EncoderMap): Where each of its parameters sits.
    freeze_embeddings (bool): Keep the embeddings (and the shared encoder tensors,
        which follow them) fixed.
    freeze_layers (int): Keep the bottom N encoder layers fixed.
    trainable_top (Optional[int]): Gradual unfreezing's stage: only the top N
        layers (and the head) are trainable, the embeddings only once N reaches
        the number of layers; None when gradual unfreezing is not in use.
    adapter_only (bool): The model has LoRA adapters: of the encoder, only their
        parameters train, in the layers the other settings leave trainable.
    """
    n_layers = encoder_map.n_layers
    positions = encoder_map.positions()
    for name, param in module.named_parameters():
        kind, index = positions[name]
        if kind in (EMBEDDINGS, SHARED):
            trainable = not freeze_embeddings and (trainable_top is None or trainable_top >= n_layers)
        elif kind == LAYER:
            trainable = index >= freeze_layers and (trainable_top is None or index >= n_layers - trainable_top)
        else:
            trainable = True
        if adapter_only and kind != HEAD:
            trainable = trainable and is_adapter_param(name)
        param.requires_grad_(trainable)
