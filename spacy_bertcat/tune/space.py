"""The search space: a config's [tune] block, checked before any trial starts.

```ini
[tune]
seed = 0                  # Optuna's sampler
grace_period = null       # steps before ASHA may stop a trial (null: a quarter of the fewest steps)
reduction_factor = 2      # ASHA keeps the best 1/reduction_factor at each rung

[tune.space]
training.optimizer.learn_rate.initial_rate = "loguniform(1e-5, 1e-4)"
training.optimizer.learn_rate.warmup_steps = "share(0.0, 0.2)"
training.max_steps = "choice(1000, 2000, 3000)"
```

Each entry is a setting path, as on the `spacy train` command line, and a
distribution: ``uniform(LOW, HIGH)``, ``loguniform(LOW, HIGH)``, ``int(LOW, HIGH)``
(both ends included), ``choice(A, B, ...)`` or ``share(LOW, HIGH)`` (a whole number
of steps: the sampled share of the trial's training.max_steps). Two settings follow
others: the schedule's ``total_steps`` follows a sampled ``training.max_steps``
where the config has them equal, and a ``share`` is taken of the trial's steps.
spaCy ignores the [tune] block; the trial configs are written without it.
"""

import ast
import copy
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from confection import Config

from ..errors import Errors

KINDS = ("uniform", "loguniform", "int", "choice", "share")
MAX_STEPS = "training.max_steps"
TOTAL_STEPS = "training.optimizer.learn_rate.total_steps"
_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}

# The default space of a bertcat component ({name}): the settings that decide most
# of a fine-tune's accuracy, around the shipped defaults (configs/tune_space.cfg).
DEFAULT_SPACE_STR = """
[tune]
seed = 0
grace_period = null
reduction_factor = 2

[tune.space]
training.optimizer.learn_rate.initial_rate = "loguniform(1e-5, 1.5e-4)"
training.optimizer.learn_rate.warmup_steps = "share(0.0, 0.2)"
training.max_steps = "choice(1000, 2000, 3000)"
components.{name}.model.head_lr_scale = "loguniform(1.0, 30.0)"
components.{name}.model.layer_lr_decay = "uniform(0.7, 1.0)"
"""


@dataclass(frozen=True)
class Distribution:
    """One entry of the space. kind (str): One of KINDS. args (Tuple): Its bounds
    or choices. text (str): As written in the config."""

    kind: str
    args: Tuple[Any, ...]
    text: str

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return any(value == arg and type(value) is type(arg) for arg in self.args)
        low, high = self.args
        return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high

    def optuna(self) -> Any:
        """RETURNS: The Optuna distribution of the sampled parameter."""
        from optuna import distributions as d

        if self.kind == "choice":
            return d.CategoricalDistribution(list(self.args))
        if self.kind == "int":
            return d.IntDistribution(int(self.args[0]), int(self.args[1]))
        return d.FloatDistribution(float(self.args[0]), float(self.args[1]), log=self.kind == "loguniform")


@dataclass
class TuneSettings:
    """The checked [tune] block of a config.

    space (Dict[str, Distribution]): Setting path -> distribution.
    defaults (Dict[str, Any]): The config's own values as parameters (trial 0).
    seed (int): Optuna's seed. grace_period (int): ASHA's, in steps.
    reduction_factor (int): ASHA's. max_steps (int): The most steps a trial runs.
    eval_frequency (int): Steps between spaCy's evaluations.
    """

    space: Dict[str, Distribution]
    defaults: Dict[str, Any]
    seed: int
    grace_period: int
    reduction_factor: int
    max_steps: int
    eval_frequency: int
    ties: List[str] = field(default_factory=list)

    def describe(self) -> Dict[str, str]:
        return {setting: dist.text for setting, dist in self.space.items()}


def parse_distribution(setting: str, value: Any) -> Distribution:
    """RETURNS (Distribution): The entry `setting = value`, or raises BC151."""

    def bad(problem: str) -> ValueError:
        return ValueError(Errors.BC151.format(setting=setting, value=value, problem=problem))

    if not isinstance(value, str):
        raise bad("is not a distribution written as a string")
    try:
        node = ast.parse(value.strip(), mode="eval").body
    except SyntaxError:
        raise bad("cannot be read") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.keywords:
        raise bad("is not a call of a distribution with plain arguments")
    kind = node.func.id
    if kind not in KINDS:
        raise bad(f"names the distribution '{kind}', which is not one of {', '.join(KINDS)}")
    args: List[Any] = []
    for arg in node.args:
        if isinstance(arg, ast.Name) and arg.id in _NAMES:
            args.append(_NAMES[arg.id])
            continue
        try:
            args.append(ast.literal_eval(arg))
        except ValueError:
            raise bad(f"has an argument that is not a plain value ({ast.unparse(arg)})") from None
    if kind == "choice":
        if len(args) < 2 or len({repr(a) for a in args}) < len(args):
            raise bad("needs at least two different choices")
        return Distribution(kind, tuple(args), value)
    if len(args) != 2 or not all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args):
        raise bad("needs two numbers, LOW and HIGH")
    low, high = args
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise bad("needs finite bounds with LOW < HIGH")
    if kind == "loguniform" and low <= 0:
        raise bad("needs 0 < LOW (a log scale)")
    if kind == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise bad("needs whole-number bounds")
    if kind == "share" and not (0 <= low and high <= 1):
        raise bad("needs 0 <= LOW < HIGH <= 1 (a share of the steps)")
    if kind == "int":
        low, high = int(low), int(high)
    return Distribution(kind, (low, high), value)


def default_space(config: Config) -> Config:
    """RETURNS (Config): The shipped space for the config's bertcat component, or
    raises BC154 where it has none or several."""
    components = config.get("components", {})
    names = [
        name for name, block in components.items() if isinstance(block, dict) and block.get("factory") == "bertcat"
    ]
    if len(names) != 1:
        found = f"{len(names)} ({', '.join(names)})" if names else "none"
        detail = f"the config has no [tune.space] block, and the default space is for one 'bertcat' component; it has {found}"
        raise ValueError(Errors.BC154.format(detail=detail))
    return Config().from_str(DEFAULT_SPACE_STR.replace("{name}", names[0]), interpolate=False)


def read_settings(config: Config, space: Optional[Config], config_name: str) -> TuneSettings:
    """Check the search space against the config, before any trial starts.

    config (Config): The training config (overrides applied, not interpolated).
    space (Optional[Config]): A config with the [tune] block to use (--space), else
        the config's own block, else the default space.
    RETURNS (TuneSettings): The checked settings; raises BC151-BC154 or BC159.
    """
    block = (space if space is not None else config).get("tune")
    if block is None and space is not None:
        raise ValueError(Errors.BC154.format(detail="the --space file has no [tune] block"))
    if block is None:
        block = default_space(config)["tune"]
    entries = block.get("space") or {}
    if not entries:
        raise ValueError(Errors.BC154.format(detail="the [tune.space] block is empty"))
    resolved = Config(config).interpolate()
    dists = {setting: parse_distribution(setting, value) for setting, value in entries.items()}
    defaults: Dict[str, Any] = {}
    for setting, dist in dists.items():
        current = _lookup(config, resolved, setting, config_name)
        if dist.kind == "share":
            current = _share_default(resolved, setting, current)
        elif dist.kind != "choice":
            if isinstance(current, bool) or not isinstance(current, (int, float)):
                raise ValueError(
                    Errors.BC151.format(
                        setting=setting, value=dist.text, problem=f"is numeric, and the config's value is {current!r}"
                    )
                )
            if isinstance(current, int) and dist.kind in ("uniform", "loguniform"):
                problem = (
                    f"samples fractions, and the setting is a whole number ({current}): use int(LOW, HIGH) or choice"
                )
                raise ValueError(Errors.BC151.format(setting=setting, value=dist.text, problem=problem))
        if not dist.contains(current):
            problem = "is not one of the choices of" if dist.kind == "choice" else "lies outside"
            raise ValueError(Errors.BC153.format(setting=setting, value=current, problem=problem, dist=dist.text))
        defaults[setting] = current
    training = resolved["training"]
    eval_frequency = int(training["eval_frequency"])
    steps = [int(v) for v in _values(dists.get(MAX_STEPS), training["max_steps"])]
    if min(steps) <= 0:
        detail = "a trial needs a number of steps, so that ASHA can compare the trials at the same step"
        raise ValueError(Errors.BC159.format(setting=MAX_STEPS, value=min(steps), detail=detail))
    if eval_frequency > min(steps):
        detail = (
            f"a trial of {min(steps)} steps would never be evaluated (eval_frequency = {eval_frequency}): "
            "lower training.eval_frequency or raise the fewest steps"
        )
        raise ValueError(Errors.BC159.format(setting="training.eval_frequency", value=eval_frequency, detail=detail))
    grace = block.get("grace_period")
    grace = max(eval_frequency, min(steps) // 4) if grace is None else grace
    factor = block.get("reduction_factor", 2)
    for name, value, low in (("grace_period", grace, 1), ("reduction_factor", factor, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            detail = f"it must be a whole number >= {low}"
            raise ValueError(Errors.BC159.format(setting=f"tune.{name}", value=repr(value), detail=detail))
    if grace > max(steps):
        detail = f"ASHA's first rung would come after the most steps a trial runs ({max(steps)}): lower it"
        raise ValueError(Errors.BC159.format(setting="tune.grace_period", value=grace, detail=detail))
    seed = block.get("seed", 0)
    ties = [TOTAL_STEPS] if MAX_STEPS in dists and _follows_steps(config, resolved) else []
    return TuneSettings(dists, defaults, int(seed or 0), grace, factor, max(steps), eval_frequency, ties)


def trial_config(config: Config, settings: TuneSettings, params: Dict[str, Any]) -> Config:
    """RETURNS (Config): The config of a trial: `params` (setting -> sampled value)
    applied to a copy of `config`, the tied settings following, without [tune]."""
    out = Config(copy.deepcopy(dict(config)), section_order=list(config.keys()))
    out.pop("tune", None)
    resolved = Config(config).interpolate()
    steps = int(params.get(MAX_STEPS, resolved["training"]["max_steps"]))
    for setting, value in params.items():
        dist = settings.space[setting]
        if dist.kind == "share":
            value = int(round(float(value) * steps))
        elif dist.kind == "int":
            value = int(value)
        _assign(out, setting, value)
    for setting in settings.ties:
        _assign(out, setting, steps)
    return out


def setting_values(config: Config, settings: TuneSettings, params: Dict[str, Any]) -> Dict[str, Any]:
    """RETURNS (Dict[str, Any]): The values the trial's config gets (a share as steps)."""
    trial = trial_config(config, settings, params)
    return {setting: _walk(trial, setting) for setting in params}


def _values(dist: Optional[Distribution], current: Any) -> List[Any]:
    return [current] if dist is None else list(dist.args)


def _follows_steps(config: Config, resolved: Config) -> bool:
    try:
        return _walk(resolved, TOTAL_STEPS) == _walk(resolved, MAX_STEPS) and _walk(config, TOTAL_STEPS) is not None
    except KeyError:
        return False


def _share_default(resolved: Config, setting: str, current: Any) -> float:
    steps = resolved["training"]["max_steps"]
    if isinstance(current, bool) or not isinstance(current, int) or not isinstance(steps, int) or steps <= 0:
        problem = f"takes a share of training.max_steps ({steps!r}) as a whole number of steps, and the setting is {current!r}"
        raise ValueError(Errors.BC151.format(setting=setting, value="share(...)", problem=problem))
    return current / steps


def _walk(config: Dict[str, Any], setting: str) -> Any:
    node: Any = config
    for part in setting.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(setting)
        node = node[part]
    return node


def _lookup(config: Config, resolved: Config, setting: str, config_name: str) -> Any:
    parts = setting.split(".")
    node: Any = config
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(parts[:i]) or "the top level"
            detail = f" (there is no '{part}' in [{where}])" if i else f" (no top-level section [{part}])"
            raise ValueError(Errors.BC152.format(setting=setting, detail=detail, config=config_name))
        node = node[part]
    if isinstance(node, dict):
        detail = f" as a value: [{setting}] is a section (a block of settings)"
        raise ValueError(Errors.BC152.format(setting=setting, detail=detail, config=config_name))
    return _walk(resolved, setting)


def _assign(config: Config, setting: str, value: Any) -> None:
    *sections, key = setting.split(".")
    node = config
    for part in sections:
        node = node[part]
    node[key] = value
