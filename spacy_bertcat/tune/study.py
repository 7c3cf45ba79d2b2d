"""The study: Optuna's TPE proposes settings, Ray Tune runs the trials (each a
`spacy train`, see trial.py), ASHA stops the weak ones at the dev score of spaCy's
evaluations, and the study folder keeps everything:

    OUTPUT/.bertcat-tune.json   the marker: this command made the folder (and with what)
    OUTPUT/trials/trial-NNN/    a trial: config.cfg, train.log, scores.jsonl (model-best: the best's and the defaults')
    OUTPUT/trials.json, .csv    the trials table (trial 0: the config's own settings)
    OUTPUT/best-config.cfg      the best trial's config, runnable with `spacy train` as is
    OUTPUT/model-best/          the best trial's model-best
    OUTPUT/report.png           dev score against each setting, and the best so far
    OUTPUT/summary.json         the best trial, the defaults' score, the counts
    OUTPUT/ray/                 Ray Tune's own records

--resume continues a study from its table: the finished trials are not run again;
they are told to Optuna as evaluated points, and trials that were running when the
study was interrupted run again under new numbers (their folders are removed).
"""

import hashlib
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Set

from confection import Config

from ..data.atomic import atomic_write, check_output_folder, save_directory_atomically
from ..errors import Errors, Warnings
from .space import MAX_STEPS, TuneSettings, read_settings, setting_values
from .table import (
    COMPLETED,
    FAILED,
    STOPPED_BUDGET,
    STOPPED_EARLY,
    TrialRecord,
    best_record,
    read_table,
    write_table,
)
from .trial import (
    DEFAULTS_KEY,
    ERROR_NAME,
    FINISHED_NAME,
    NUMBER_KEY,
    TrialSetup,
    end_leftover,
    run_trial,
    trial_folder,
)

MARKER = ".bertcat-tune.json"


@dataclass
class StudyOptions:
    """The options of `spacy-bertcat tune` (see the command's help)."""

    config_path: Path
    output: Path
    trials: int
    overrides: Dict[str, Any] = field(default_factory=dict)
    concurrency: int = 1
    address: Optional[str] = None
    time_budget: Optional[float] = None
    resume: bool = False
    space_path: Optional[Path] = None
    code_path: Optional[Path] = None
    gpu: bool = False


@dataclass
class StudyResult:
    records: List[TrialRecord]
    best: Optional[TrialRecord]
    defaults: Optional[TrialRecord]
    ran: int
    budget_hit: bool
    seconds: float
    interrupted: bool


@dataclass
class Prepared:
    config: Config
    settings: TuneSettings
    records: List[TrialRecord]


def prepare(options: StudyOptions) -> Prepared:
    """Check the options, the space and the folder before anything runs (coded
    ValueErrors), and make or reopen the study folder."""
    from spacy.util import load_config

    if options.trials < 1 or options.concurrency < 1:
        name, value = ("--trials", options.trials) if options.trials < 1 else ("--concurrency", options.concurrency)
        raise ValueError(Errors.BC159.format(setting=name, value=value, detail="it must be at least 1"))
    if options.time_budget is not None and options.time_budget <= 0:
        detail = "it is the study's wall time in seconds"
        raise ValueError(Errors.BC159.format(setting="--time-budget", value=options.time_budget, detail=detail))
    config = load_config(options.config_path, overrides=options.overrides, interpolate=False)
    space = load_config(options.space_path, interpolate=False) if options.space_path else None
    settings = read_settings(config, space, str(options.config_path))
    fingerprint = {"config": _digest(config), "space": settings.describe()}
    output = options.output
    marker = output / MARKER
    if options.resume:
        if not marker.is_file():
            detail = "it does not exist" if not output.exists() else f"it holds no {MARKER}"
            raise ValueError(Errors.BC155.format(path=output, detail=detail, marker=MARKER))
        saved = json.loads(marker.read_text(encoding="utf-8"))
        for key, what in (("config", "config (or config overrides)"), ("space", "search space")):
            if saved.get(key) != fingerprint[key]:
                detail = "its fingerprint differs" if key == "config" else f"it was {saved.get(key)}"
                raise ValueError(Errors.BC156.format(path=output, what=what, detail=detail))
        # A trial the time budget stopped counts as not run: another runs in its place.
        return Prepared(config, settings, [r for r in read_table(output) if r.status != STOPPED_BUDGET])
    if marker.is_file():
        detail = "it holds a study already: add --resume to continue it, or give a new folder"
        raise ValueError(Errors.BC159.format(setting="--output", value=output, detail=detail))
    inputs = [options.config_path, options.space_path, options.code_path]
    check_output_folder(output, inputs=inputs, command="tune --output")
    output.mkdir(parents=True, exist_ok=True)
    atomic_write(marker, json.dumps(fingerprint, indent=2).encode("utf-8"))
    return Prepared(config, settings, [])


def run_study(
    options: StudyOptions, prepared: Prepared, log: Callable[[str], None], warn: Callable[[str], None]
) -> StudyResult:
    """Run the trials still to run, then write the outputs (also after a time
    budget ran out or an interruption: Ctrl-C). `log` and `warn` print.
    RETURNS (StudyResult)."""
    ray, tune, OptunaSearch, ASHAScheduler = _import_tune()
    from ..predict.ray_dataset import init_ray

    start = time.time()
    output = options.output.resolve()
    records = list(prepared.records)
    settings = prepared.settings
    first = _next_number(output, records)
    _clear_unfinished(output, records)
    todo = options.trials - len(records)
    budget_hit = False
    if todo > 0:
        started = init_ray(ray, options.address)
        try:
            # a trial runs on one node: the cores of the largest node, shared by the trials
            nodes = [n.get("Resources", {}).get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
            cores = max(nodes) if nodes else os.cpu_count() or 1
            threads = max(1, int(cores // options.concurrency))
            setup = TrialSetup(
                study=str(output),
                config=prepared.config.to_str(),
                settings=settings,
                cwd=os.getcwd(),
                code=str(Path(options.code_path).resolve()) if options.code_path else None,
                threads=threads,
                gpu=options.gpu,
            )
            log(f"Running {todo} trial(s), {options.concurrency} at a time, {threads} thread(s) each")
            for attempt in range(1, _ATTEMPTS + 1):
                budget = None if options.time_budget is None else max(1.0, options.time_budget - (time.time() - start))
                stopped: Set[str] = set()  # the trials ASHA stopped (the scheduler tells the recorder)
                recorder = _recorder(
                    tune, output, prepared.config, settings, records, options.time_budget, start, stopped
                )
                error = _fit(
                    tune,
                    OptunaSearch,
                    ASHAScheduler,
                    options,
                    settings,
                    setup,
                    threads,
                    recorder,
                    records,
                    first,
                    budget,
                )
                budget_hit = recorder.finish()
                if error is None or budget_hit or len(records) >= options.trials:
                    break
                if attempt == _ATTEMPTS:
                    warn(Warnings.BCW052.format(error=error, done=len(records), path=output))
                    break
                # Ray Tune gave up (e.g. its memory monitor killed a worker as it started): the
                # trials that were running end, and the rest run in a new session
                warn(
                    f"Ray Tune stopped ({error[:200]}...); running the remaining trials again ({attempt + 1} of {_ATTEMPTS})"
                )
                for folder in sorted((output / "trials").glob("trial-*")):
                    end_leftover(folder)
                first = _next_number(output, records)
                _clear_unfinished(output, records)
        finally:
            if started:
                ray.shutdown()
            for folder in sorted((output / "trials").glob("trial-*")):
                end_leftover(folder)
    elapsed = time.time() - start
    if budget_hit:
        warn(Warnings.BCW051.format(budget=options.time_budget, done=len(records), trials=options.trials))
    write_outputs(output, records, warn)
    interrupted = len(records) < options.trials and not budget_hit
    return StudyResult(
        records, best_record(records), _defaults(records), max(todo, 0), budget_hit, elapsed, interrupted
    )


_ATTEMPTS = 3  # Ray Tune sessions a study tries before it stops (BCW052)


def _fit(
    tune: Any,
    OptunaSearch: Any,
    ASHAScheduler: Any,
    options: StudyOptions,
    settings: TuneSettings,
    setup: TrialSetup,
    threads: int,
    recorder: Any,
    records: List[TrialRecord],
    first: int,
    budget: Optional[float],
) -> Optional[str]:
    """Run one Ray Tune session of the trials still to run. RETURNS (Optional[str]):
    None, or why Ray Tune stopped with an error."""
    output = Path(setup.study)
    searcher = _searcher(OptunaSearch, settings, records, first)
    scheduler = _scheduler(ASHAScheduler, recorder.stopped)(
        time_attr="step",
        metric="score",
        mode="max",
        max_t=settings.max_steps + 1,  # not settings.max_steps: ASHA would stop each trial at its last step
        grace_period=settings.grace_period,
        reduction_factor=settings.reduction_factor,
    )
    resources = {"cpu": threads, "gpu": 1 if options.gpu else 0}
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), resources)
    sessions = len(list((output / "ray").glob("session-*"))) if (output / "ray").exists() else 0
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=options.trials - len(records),
            max_concurrent_trials=options.concurrency,
            time_budget_s=budget,
        ),
        run_config=tune.RunConfig(
            name=f"session-{sessions}",
            storage_path=str(output / "ray"),
            callbacks=[recorder],
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
        ),
    )
    try:
        tuner.fit()
    except Exception as e:  # e.g. Ray's memory monitor killed a trial's worker as it started
        return " ".join(str(e).split())[:600]
    return None


def write_outputs(output: Path, records: List[TrialRecord], log: Callable[[str], None]) -> None:
    """Write the table, the best trial's config and model-best, the summary and the
    picture. Raises BC158 where no trial scored."""
    from .plots import draw_report

    write_table(output, records)
    best = best_record(records)
    counts = {s: sum(r.status == s for r in records) for s in (COMPLETED, STOPPED_EARLY, STOPPED_BUDGET, FAILED)}
    defaults = _defaults(records)
    summary = {
        "best_trial": best.number if best else None,
        "best_score": best.score if best else None,
        "defaults_score": defaults.score if defaults else None,
        "best_settings": best.settings if best else None,
        "trials": len(records),
        "statuses": counts,
    }
    atomic_write(output / "summary.json", json.dumps(summary, indent=2).encode("utf-8"))
    if best is None:
        detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trial ran"
        raise ValueError(Errors.BC158.format(path=output, counts=detail))
    folder = output / best.folder
    atomic_write(output / "best-config.cfg", (folder / "config.cfg").read_bytes())
    if (folder / "model-best").is_dir():

        def copy(tmp: Path) -> None:
            shutil.copytree(folder / "model-best", tmp, dirs_exist_ok=True)

        save_directory_atomically(output / "model-best", copy)
    if not draw_report(output / "report.png", records):
        log(Warnings.BCW050)


def _searcher(OptunaSearch: Any, settings: TuneSettings, records: List[TrialRecord], first: int) -> Any:
    """Optuna's TPE over the space, told the finished trials; the config's own
    settings first if they have not run; each suggestion numbered (its folder)."""
    import optuna

    class NumberedSearch(OptunaSearch):  # type: ignore[misc, valid-type]
        number = first

        def suggest(self, trial_id: str) -> Optional[Dict]:
            config = super().suggest(trial_id)
            if isinstance(config, dict):
                defaults = {k: config.get(k) for k in settings.defaults} == settings.defaults
                config = {**config, NUMBER_KEY: NumberedSearch.number, DEFAULTS_KEY: defaults}
                NumberedSearch.number += 1
            return config

    space = {setting: dist.optuna() for setting, dist in settings.space.items()}
    ran_defaults = any(r.defaults and r.status != FAILED for r in records)  # a failed one runs again
    points = [dict(settings.defaults)] if not ran_defaults else None
    sampler = optuna.samplers.TPESampler(seed=settings.seed + len(records))
    searcher = NumberedSearch(space=space, metric="score", mode="max", points_to_evaluate=points, sampler=sampler)
    for r in records:  # a failed trial is a failed Optuna trial: TPE samples from the others
        if set(r.params) == set(space):
            failed = r.status == FAILED or r.score is None
            searcher.add_evaluated_point(r.params, 0.0 if failed else r.score, error=failed)
    return searcher


def _scheduler(ASHAScheduler: Any, stopped: Set[str]) -> Any:
    """ASHA, except that the trial of the config's own settings always runs to its
    end (its results still count at the rungs): the best trial is then never worse
    than the defaults, fully trained, on the dev set. The ids of the trials it stops
    go to `stopped` (what tells a trial ASHA stopped from one an interruption ended)."""
    from ray.tune.schedulers import TrialScheduler

    class DefaultsRunToEnd(ASHAScheduler):  # type: ignore[misc, valid-type]
        def on_trial_result(self, tune_controller: Any, trial: Any, result: Dict) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if trial.config.get(DEFAULTS_KEY):
                return TrialScheduler.CONTINUE
            if decision == TrialScheduler.STOP:
                stopped.add(trial.trial_id)
            return decision

    return DefaultsRunToEnd


def _recorder(
    tune: Any,
    output: Path,
    config: Config,
    settings: TuneSettings,
    records: List[TrialRecord],
    budget: Optional[float],
    start: float,
    stopped: Set[str],
) -> Any:
    """A Tune callback that records each trial as it finishes (the table written at
    once) and keeps model-best of the best trial and of the defaults only. A trial
    that ended unfinished, neither stopped by ASHA (`stopped`) nor by the time
    budget, was interrupted (Ctrl-C, Ray giving up): it is not recorded, so that a
    resumed study runs it again."""

    class Recorder(tune.Callback):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.started: Dict[str, float] = {}
            self.trials: Dict[str, Any] = {}
            self.stopped = stopped

        def on_trial_start(self, iteration: int, trials: List, trial: Any, **info: Any) -> None:
            self.started[trial.trial_id] = time.time()
            self.trials[trial.trial_id] = trial

        def on_trial_complete(self, iteration: int, trials: List, trial: Any, **info: Any) -> None:
            # Ray marks a stopped trial's last result done too: the trial's own file tells,
            # or its steps (a trial stopped at its last evaluation ran all its steps)
            finished = (trial_folder(output, int(trial.config[NUMBER_KEY])) / FINISHED_NAME).exists()
            params = {k: v for k, v in trial.config.items() if not k.startswith("_")}
            steps = setting_values(config, settings, params).get(MAX_STEPS, settings.max_steps)
            finished = finished or int((trial.last_result or {}).get("step", 0)) >= int(steps)
            over = budget is not None and time.time() - start >= budget
            if finished:
                self.record(trial, COMPLETED)
            elif trial.trial_id in stopped:
                self.record(trial, STOPPED_EARLY)
            elif over:
                self.record(trial, STOPPED_BUDGET)
            else:  # interrupted: it runs again on --resume
                self.started.pop(trial.trial_id, None)

        def on_trial_error(self, iteration: int, trials: List, trial: Any, **info: Any) -> None:
            self.record(trial, FAILED)

        def record(self, trial: Any, status: str) -> None:
            if trial.trial_id not in self.started and status != FAILED:
                return
            # a trial whose worker failed before it started (e.g. Ray's memory monitor) fails too
            started = self.started.pop(trial.trial_id, time.time())
            number = int(trial.config[NUMBER_KEY])
            params = {k: v for k, v in trial.config.items() if not k.startswith("_")}
            result = trial.last_result or {}
            folder = trial_folder(output, number)
            error = None
            if status == FAILED:
                error_file = folder / ERROR_NAME
                error = error_file.read_text(encoding="utf-8") if error_file.exists() else _worker_error(trial)
            record = TrialRecord(
                number=number,
                status=status,
                score=result.get("score"),
                params=params,
                settings=setting_values(config, settings, params),
                steps=int(result.get("step", 0)),
                evaluations=int(result.get("evaluations", 0)),
                seconds=time.time() - started,
                error=error,
                folder=str(folder.relative_to(output)),
                defaults=bool(trial.config.get(DEFAULTS_KEY)),
            )
            records.append(record)
            _prune(output, records)
            write_table(output, records)

        def finish(self) -> bool:
            """Record the trials the time budget stopped without telling (RETURNS
            whether the budget ran out)."""
            over = budget is not None and time.time() - start >= budget
            for trial_id in list(self.started):
                if over:
                    self.record(self.trials[trial_id], STOPPED_BUDGET)
            return over

    return Recorder()


def _worker_error(trial: Any) -> str:
    """RETURNS (str): Why Ray says a trial's worker failed (its error file's end)."""
    try:
        text = Path(trial.error_file).read_text(encoding="utf-8")
    except (OSError, TypeError, AttributeError):
        return "the trial's Ray worker failed"
    return "the trial's Ray worker failed: " + " ".join(text.strip().splitlines()[-1:])[:500]


def _prune(output: Path, records: List[TrialRecord]) -> None:
    best = best_record(records)
    for r in records:
        folder = output / r.folder
        shutil.rmtree(folder / "model-last", ignore_errors=True)
        if not r.defaults and (best is None or r.number != best.number):
            shutil.rmtree(folder / "model-best", ignore_errors=True)


def _clear_unfinished(output: Path, records: List[TrialRecord]) -> None:
    """Remove the folders of trials that were running when the study stopped (they
    run again under new numbers). Only a folder a trial made is removed: named
    trial-NNN, and empty or holding the config the trial wrote first; anything else
    under trials/ (a user's notes, a copied model) is left as it is."""
    finished = {r.folder for r in records}
    trials = output / "trials"
    if trials.is_dir():
        for folder in trials.iterdir():
            if str(folder.relative_to(output)) in finished or not _made_by_a_trial(folder):
                continue
            shutil.rmtree(folder, ignore_errors=True)


def _made_by_a_trial(folder: Path) -> bool:
    """Whether `folder` is one run_trial made: trial-NNN, empty (killed right after
    its mkdir) or holding the config.cfg it writes next."""
    if folder.is_symlink() or not folder.is_dir() or re.fullmatch(r"trial-\d{3,}", folder.name) is None:
        return False
    return (folder / "config.cfg").is_file() or not any(folder.iterdir())


def _next_number(output: Path, records: List[TrialRecord]) -> int:
    """RETURNS (int): A number no trial of the study had (nor its folder)."""
    numbers = [r.number for r in records]
    if (output / "trials").is_dir():
        numbers += [int(p.name.split("-")[-1]) for p in (output / "trials").glob("trial-*") if p.name[6:].isdigit()]
    return max(numbers) + 1 if numbers else 0


def _defaults(records: List[TrialRecord]) -> Optional[TrialRecord]:
    return next((r for r in records if r.defaults), None)


def _digest(config: Config) -> str:
    text = Config(config).to_str()
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _import_tune() -> Any:
    # Ray Tune's old console output, which verbose=0 silences (the new one prints a
    # table of the experiment whatever the verbosity).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    try:
        import optuna
        import ray
        from ray import tune
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as e:
        missing = getattr(e, "name", None) or "Ray Tune"
        raise ValueError(Errors.BC150.format(missing=missing, reason=e)) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return ray, tune, OptunaSearch, ASHAScheduler


__all__ = ["StudyOptions", "StudyResult", "Prepared", "prepare", "run_study", "write_outputs", "MARKER"]
