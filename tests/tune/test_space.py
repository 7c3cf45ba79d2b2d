"""The search space of a config's [tune] block, checked before any trial starts, and
what a trial's config gets (no Ray, no training: fast)."""

import json
import sys

import pytest
from confection import Config
from spacy.util import load_config, registry

from spacy_bertcat.tune.space import DEFAULT_SPACE_STR, read_settings, setting_values, trial_config
from spacy_bertcat.tune.table import COMPLETED, FAILED, STOPPED_EARLY, TrialRecord, best_record, read_table, write_table

from ..support import CONFIGS

CONFIG = CONFIGS / "bertcat.cfg"


def space(**entries):
    lines = ["[tune]", "seed = 0", "", "[tune.space]"] + [f'{k.replace("__", ".")} = "{v}"' for k, v in entries.items()]
    return Config().from_str("\n".join(lines), interpolate=False)


@pytest.fixture(scope="module")
def config():
    return load_config(CONFIG, interpolate=False)


def code(error):
    return str(error.value)[:7]


@pytest.mark.parametrize(
    "entries,expected",
    [
        ({"training__max_steps": "choice(1000, 2000)"}, None),
        ({"training__optimizer__learn_rate__initial_rate": "loguniform(0, 1e-4)"}, "[BC151]"),
        ({"training__optimizer__learn_rate__initial_rate": "uniform(1e-4, 1e-5)"}, "[BC151]"),
        ({"training__optimizer__learn_rate__initial_rate": "normal(0, 1)"}, "[BC151]"),
        ({"training__optimizer__learn_rate__initial_rate": "uniform(1e-5"}, "[BC151]"),
        ({"training__optimizer__learn_rate__initial_rate": "uniform(a, b)"}, "[BC151]"),
        ({"training__max_steps": "uniform(1000, 3000)"}, "[BC151]"),  # a whole number
        ({"training__max_steps": "choice(1000)"}, "[BC151]"),
        ({"training__optimizer__learn_rate__warmup_steps": "share(0.1, 1.5)"}, "[BC151]"),
        ({"training__optimizer__learn_rate__initial_rate": "loguniform(1e-4, 3e-4)"}, "[BC153]"),  # 5e-5 outside
        ({"training__max_steps": "choice(1000, 3000)"}, "[BC153]"),
        ({"training__optimizer__learning_rate": "uniform(0.1, 0.2)"}, "[BC152]"),
        ({"training__optimizer": "uniform(0.1, 0.2)"}, "[BC152]"),  # a section
        ({"components__bertcat__model__layer_lr_decay": "uniform(0.5, 1.0)"}, None),
        ({"training__max_steps": "choice(100, 2000)"}, "[BC159]"),  # 100 steps < eval_frequency 200
    ],
)
def test_space_is_checked(config, entries, expected):
    if expected is None:
        read_settings(config, space(**entries), "bertcat.cfg")
        return
    with pytest.raises(ValueError) as error:
        read_settings(config, space(**entries), "bertcat.cfg")
    assert code(error) == expected, str(error.value)


def test_default_space_is_the_shipped_file_and_fits_the_shipped_config(config):
    shipped = load_config(CONFIGS / "tune_space.cfg", interpolate=False)
    assert shipped == Config().from_str(DEFAULT_SPACE_STR.replace("{name}", "bertcat"), interpolate=False)
    settings = read_settings(config, None, "bertcat.cfg")  # the config has no [tune]: the default space
    assert settings.defaults["training.optimizer.learn_rate.warmup_steps"] == pytest.approx(0.1)
    assert settings.defaults["components.bertcat.model.head_lr_scale"] == 1.0
    assert settings.ties == ["training.optimizer.learn_rate.total_steps"]


def test_no_space_for_a_config_without_one_bertcat(config):
    other = Config(config)
    other["components"] = {"textcat": {"factory": "textcat"}}
    with pytest.raises(ValueError) as error:
        read_settings(other, None, "x.cfg")
    assert code(error) == "[BC154]"


def test_trial_config_follows_steps_and_shares(config):
    settings = read_settings(config, None, "bertcat.cfg")
    params = dict(settings.defaults)
    params.update({"training.max_steps": 3000, "training.optimizer.learn_rate.warmup_steps": 0.15})
    trial = trial_config(config, settings, params)
    assert "tune" not in trial
    assert trial["training"]["max_steps"] == 3000
    assert trial["training"]["optimizer"]["learn_rate"]["total_steps"] == 3000
    assert trial["training"]["optimizer"]["learn_rate"]["warmup_steps"] == 450
    values = setting_values(config, settings, params)
    assert values["training.optimizer.learn_rate.warmup_steps"] == 450
    # the written config is a spaCy config still (references kept)
    assert Config().from_str(trial.to_str(), interpolate=False)["training"]["seed"] == "${system.seed}"


def test_table_round_trip_and_best(tmp_path):
    rows = [
        TrialRecord(0, COMPLETED, 0.8, {"a": 1}, {"a": 1}, defaults=True),
        TrialRecord(1, FAILED, None, {"a": 2}, {"a": 2}, error="[BC157] boom"),
        TrialRecord(2, STOPPED_EARLY, 0.8, {"a": 3}, {"a": 3}),
        TrialRecord(3, COMPLETED, 0.7, {"a": 4}, {"a": 4}),
    ]
    write_table(tmp_path, rows)
    assert read_table(tmp_path) == rows
    assert best_record(rows).number == 0  # a tie goes to the lower number: the defaults
    assert (tmp_path / "trials.csv").read_text().splitlines()[0].startswith("trial,status,dev_score")
    assert json.loads((tmp_path / "trials.json").read_text())[1]["error"] == "[BC157] boom"


def test_tune_logger_writes_each_evaluation_at_once(tmp_path):
    seen = []
    inner = lambda nlp, out, err: (seen.append, lambda: None)  # noqa: E731
    make = registry.loggers.get("spacy-bertcat.tune_logger.v1")(path=str(tmp_path / "s.jsonl"), logger=inner)
    log_step, finalize = make(None, sys.stdout, sys.stderr)
    log_step({"step": 4, "epoch": 1, "score": 0.5, "other_scores": {"cats_score": 0.5, "cats_f_per_type": {}}})
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert rows == [{"step": 4, "epoch": 1, "score": 0.5, "scores": {"cats_score": 0.5}}]  # before finalize
    log_step(None)
    finalize()
    assert len(seen) == 2


def test_missing_extra_is_a_coded_error(monkeypatch):
    from spacy_bertcat.tune.study import _import_tune

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ValueError) as error:
        _import_tune()
    assert code(error) == "[BC150]" and "spacy-bertcat[tune]" in str(error.value)


def test_grace_period_beyond_the_most_steps_is_refused(config):
    block = space(training__max_steps="choice(1000, 2000)")
    block["tune"]["grace_period"] = 2500
    with pytest.raises(ValueError) as error:
        read_settings(config, block, "bertcat.cfg")
    assert code(error) == "[BC159]" and "tune.grace_period" in str(error.value)


def test_trial_config_leaves_the_config_alone(config):
    settings = read_settings(config, None, "bertcat.cfg")
    before = config.to_str()
    trial_config(config, settings, {**settings.defaults, "training.max_steps": 3000})
    assert config.to_str() == before
