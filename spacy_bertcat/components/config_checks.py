"""Checks of a training config that spaCy cannot make, run at initialize."""

import warnings
from typing import Any, Dict

from ..errors import Warnings


def check_schedule_length(config: Dict[str, Any]) -> None:
    """Warn when the learning-rate schedule's `total_steps` differs from
    `[training] max_steps` (the shipped configs write both as literals, so that the
    optimizer block resolves on its own outside `spacy train`): a schedule that ends
    early trains the remaining steps at a rate of 0, one that ends late never decays."""
    training = config.get("training") or {}
    schedule = (training.get("optimizer") or {}).get("learn_rate")
    max_steps = training.get("max_steps")
    if not isinstance(schedule, dict) or not isinstance(max_steps, int) or max_steps <= 0:
        return
    total = schedule.get("total_steps")
    if isinstance(total, int) and total != max_steps:
        warnings.warn(Warnings.BCW008.format(total=total, max_steps=max_steps, schedule=schedule.get("@schedules")))


def uses_gradual_unfreezing(config: Dict[str, Any], component: str) -> bool:
    """Whether the training config's [training.before_update] runs
    spacy-bertcat.gradual_unfreezing.v1 on the component."""
    callback = (config.get("training") or {}).get("before_update")
    if not isinstance(callback, dict) or callback.get("@callbacks") != "spacy-bertcat.gradual_unfreezing.v1":
        return False
    components = callback.get("components")
    return components is None or component in components
