"""Layer freezing and gradual unfreezing, through ``requires_grad``.

A frozen parameter gets no gradient, so the optimizer never touches it (no update,
no weight decay) and autograd records nothing below the lowest trainable layer,
which also saves the backward pass through the frozen layers.
"""
from typing import Callable, Dict, List, Optional

from spacy.language import Language
from spacy.util import registry
from torch import nn

from ..errors import Errors
from .param_groups import EMBEDDINGS, LAYER, num_layers, param_position


def apply_freezing(
    module: nn.Module,
    *,
    freeze_embeddings: bool,
    freeze_layers: int,
    trainable_top: Optional[int] = None,
) -> None:
    """Set `requires_grad` on every parameter of the model.

    module (nn.Module): The model.
    freeze_embeddings (bool): Keep the embeddings fixed.
    freeze_layers (int): Keep the bottom N encoder layers fixed.
    trainable_top (Optional[int]): Gradual unfreezing's stage: only the top N
        layers (and the head) are trainable, the embeddings only once N reaches
        the number of layers; None when gradual unfreezing is not in use.
    """
    n_layers = num_layers(module)
    for name, param in module.named_parameters():
        kind, index = param_position(name)
        if kind == EMBEDDINGS:
            trainable = not freeze_embeddings and (
                trainable_top is None or trainable_top >= n_layers
            )
        elif kind == LAYER:
            trainable = index >= freeze_layers and (
                trainable_top is None or index >= n_layers - trainable_top
            )
        else:
            trainable = True
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
            raise ValueError(Errors.BC022.format(setting=setting, value=value, detail=detail))

    def before_update(nlp: Language, args: Dict) -> None:
        top = unfrozen_layers(args["step"], head_steps, unfreeze_every, layers_per_stage)
        for name, pipe in nlp.pipeline:
            if hasattr(pipe, "set_trainable_top_layers") and (
                components is None or name in components
            ):
                pipe.set_trainable_top_layers(top)

    return before_update
