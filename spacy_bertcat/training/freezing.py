"""Layer freezing and gradual unfreezing, through ``requires_grad``.

A frozen parameter gets no gradient, so the optimizer never touches it (no update,
no weight decay) and autograd records nothing below the lowest trainable layer,
which also saves the backward pass through the frozen layers.
"""
from typing import Callable, Dict, List, Optional

from spacy.language import Language
from spacy.util import registry
from torch import nn

from ..errors import Errors, SettingError, invalid_setting
from ..layers.adapter import is_adapter_param
from ..layers.encoder_map import EMBEDDINGS, HEAD, LAYER, SHARED, EncoderMap


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
                    model_type=encoder_map.model_type, n_layers=encoder_map.n_layers,
                    applications=encoder_map.applications, settings=", ".join(used),
                ),
                "model." + used[0] if not used[0].startswith("spacy-") else "training.before_update",
            )
    if freeze_layers > encoder_map.n_layers:
        raise SettingError(
            Errors.BC053.format(
                value=freeze_layers, model_type=encoder_map.model_type, n_layers=encoder_map.n_layers
            ),
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
            trainable = not freeze_embeddings and (
                trainable_top is None or trainable_top >= n_layers
            )
        elif kind == LAYER:
            trainable = index >= freeze_layers and (
                trainable_top is None or index >= n_layers - trainable_top
            )
        else:
            trainable = True
        if adapter_only and kind != HEAD:
            trainable = trainable and is_adapter_param(name)
        param.requires_grad_(trainable)


def unfrozen_layers(step: int, head_steps: int, unfreeze_every: int, layers_per_stage: int) -> int:
    """RETURNS (int): How many top encoder layers are trainable at a step."""
    if step < head_steps:
        return 0
    return layers_per_stage * (1 + (step - head_steps) // unfreeze_every)


@registry.callbacks("spacy-bertcat.gradual_unfreezing.v1")
def create_gradual_unfreezing_v1(
    head_steps: int = 500,
    unfreeze_every: int = 500,
    layers_per_stage: int = 2,
    components: Optional[List[str]] = None,
) -> Callable[[Language, Dict], None]:
    """A [training.before_update] callback that unfreezes the encoder top-down.

    Until `head_steps`, only the head trains; then every `unfreeze_every` steps the
    next `layers_per_stage` layers from the top join, and with the last layer the
    embeddings. Layers frozen by the model's freeze_layers / freeze_embeddings
    settings stay frozen.

    head_steps (int): Steps that train only the head (e.g. one epoch).
    unfreeze_every (int): Steps between two unfreezing stages.
    layers_per_stage (int): Encoder layers unfrozen per stage.
    components (Optional[List[str]]): Names of the bertcat components to unfreeze;
        null for all of them.
    """
    for setting, value, low in (
        ("head_steps", head_steps, 0),
        ("unfreeze_every", unfreeze_every, 1),
        ("layers_per_stage", layers_per_stage, 1),
    ):
        if value < low:
            detail = f"it must be at least {low}"
            raise invalid_setting(setting, value, detail, "gradual_unfreezing")

    def before_update(nlp: Language, args: Dict) -> None:
        top = unfrozen_layers(args["step"], head_steps, unfreeze_every, layers_per_stage)
        for name, pipe in nlp.pipeline:
            if hasattr(pipe, "set_trainable_top_layers") and (
                components is None or name in components
            ):
                pipe.set_trainable_top_layers(top)

    return before_update
