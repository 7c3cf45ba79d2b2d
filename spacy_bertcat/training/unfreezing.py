"""Gradual unfreezing: a [training.before_update] callback that trains the head first,
then the encoder layers from the top down (the freezing itself: layers/freezing.py)."""

from typing import Callable, Dict, List, Optional

from spacy.language import Language
from spacy.util import registry

from ..components.pipes import bertcat_components
from ..errors import invalid_setting


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
        for name, pipe in bertcat_components(nlp).items():
            if components is None or name in components:
                pipe.set_trainable_top_layers(top)

    return before_update
