"""`tune`: hyperparameter search over a `spacy train` config on Ray Tune (see tune/)."""

from pathlib import Path
from typing import List, Optional

import typer
from wasabi import msg

from ._util import Arg, Opt, app, divider


@app.command("tune", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def tune_cli(
    # fmt: off
    ctx: typer.Context,  # the config overrides (--paths.train ...), as in spacy train
    config_path: Path = Arg(
        ...,
        help="Path to the training config (its [tune] block is the search space, if it has one)",
        exists=True,
        dir_okay=False,
    ),
    output: Path = Opt(
        ..., "--output", "-o", help="The study folder: new or empty, or (with --resume) a study of this command"
    ),
    trials: int = Opt(12, "--trials", "-n", help="Trials in all, the config's own settings (trial 0) included"),
    concurrency: int = Opt(
        1, "--concurrency", "-j", help="Trials at a time; each gets the cores divided by this, as its torch threads"
    ),
    address: Optional[str] = Opt(
        None,
        "--address",
        help="A Ray cluster to run on (ray://HOST:10001 or 'auto'); default: a local Ray. The output folder, the data and the model must have the same paths on every node",
    ),
    time_budget: Optional[float] = Opt(
        None,
        "--time-budget",
        help="Seconds the study may run; then the running trials stop and the outputs are written",
    ),
    resume: bool = Opt(False, "--resume", help="Continue the study in --output: finished trials are not run again"),
    space_path: Optional[Path] = Opt(
        None,
        "--space",
        help="A config file whose [tune] block is the search space (default: the config's [tune] block, else the shipped space of a bertcat component)",
        exists=True,
        dir_okay=False,
    ),
    code_path: Optional[Path] = Opt(
        None,
        "--code",
        "-c",
        help="Path to Python file with additional code (registered functions) to be imported, by the trials too",
        exists=True,
        dir_okay=False,
    ),
    gpu: bool = Opt(False, "--gpu", help="Give each trial one GPU (Ray's) and train on it"),
    # fmt: on
):
    """
    Tune the hyperparameters of a `spacy train` config: Optuna's TPE proposes
    settings from the search space, each trial is a real `spacy train` in its own
    process and folder, and ASHA stops the weak trials at spaCy's evaluations. The
    config's own settings are always trial 0, so the best trial is never worse on the
    dev set. Writes the best trial's config (best-config.cfg, runnable with spacy
    train) and model-best, the trials table (trials.csv, trials.json) and a report
    picture into --output. Config overrides (--paths.train ...) as in spacy train.
    """
    from spacy.cli._util import import_code, parse_config_overrides

    from ..tune.study import StudyOptions, prepare, run_study

    overrides = parse_config_overrides(list(ctx.args))
    import_code(code_path)
    options = StudyOptions(
        config_path=config_path,
        output=output,
        trials=trials,
        overrides=overrides,
        concurrency=concurrency,
        address=address,
        time_budget=time_budget,
        resume=resume,
        space_path=space_path,
        code_path=code_path,
        gpu=gpu,
    )
    try:
        prepared = prepare(options)
        if prepared.records:
            msg.info(f"Resuming: {len(prepared.records)} finished trial(s) in {output}")
        result = run_study(options, prepared, msg.info, msg.warn)
    except ValueError as e:
        msg.fail(str(e), exits=1)
        return
    divider("Study")
    if result.defaults is not None and result.defaults.score is not None:
        msg.info(f"Trial {result.defaults.number} (the config's settings): dev score {100 * result.defaults.score:.2f}")
    best = result.best
    assert best is not None  # run_study raises BC158 otherwise
    statuses = ", ".join(
        f"{sum(r.status == s for r in result.records)} {s}" for s in sorted({r.status for r in result.records})
    )
    msg.good(
        f"Best: trial {best.number}, dev score {100 * (best.score or 0.0):.2f} ({len(result.records)} trials: {statuses}; {result.seconds:.0f} s)"
    )
    for setting, value in best.settings.items():
        print(f"  {setting} = {value}")
    msg.info(
        f"Best config: {output / 'best-config.cfg'}; model: {output / 'model-best'}; table: {output / 'trials.csv'}"
    )
    if result.interrupted:
        msg.warn(
            f"The study stopped after {len(result.records)} of {trials} trials: run the command again with --resume to finish it"
        )
        raise typer.Exit(130)  # as an interrupted command: a script does not go on


__all__: List[str] = ["tune_cli"]
