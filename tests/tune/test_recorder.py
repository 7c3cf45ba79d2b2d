"""How the study records a trial that ended: finished, stopped by ASHA, stopped by
the time budget, or interrupted (Ctrl-C: not recorded, so that --resume runs it
again). Ray Tune's callback and scheduler with stand-in trials (no training)."""

import time
from types import SimpleNamespace

import pytest
from spacy.util import load_config

from spacy_bertcat.tune.space import read_settings
from spacy_bertcat.tune.study import _recorder, _scheduler
from spacy_bertcat.tune.table import COMPLETED, STOPPED_BUDGET, STOPPED_EARLY, read_table
from spacy_bertcat.tune.trial import NUMBER_KEY, trial_folder

from ..support import CONFIGS

tune = pytest.importorskip("ray.tune")


def trial(study, number, step):
    trial_folder(study, number).mkdir(parents=True)
    return SimpleNamespace(trial_id=f"t{number}", config={NUMBER_KEY: number}, last_result={"score": 0.5, "step": step})


@pytest.fixture
def setup(tmp_path):
    config = load_config(CONFIGS / "bertcat.cfg", interpolate=False)
    settings = read_settings(config, None, "bertcat.cfg")
    records = []
    stopped = set()
    recorder = _recorder(tune, tmp_path, config, settings, records, None, time.time(), stopped)
    return tmp_path, recorder, records, stopped


def test_an_interrupted_trial_is_not_recorded_and_asha_stops_are(setup):
    study, recorder, records, stopped = setup
    interrupted, asha = trial(study, 0, 200), trial(study, 1, 200)
    for t in (interrupted, asha):
        recorder.on_trial_start(0, [], t)
    stopped.add(asha.trial_id)  # what the scheduler does when ASHA stops a trial
    recorder.on_trial_complete(0, [], interrupted)  # Ray ends a running trial on Ctrl-C
    recorder.on_trial_complete(0, [], asha)
    assert [(r.number, r.status) for r in records] == [(1, STOPPED_EARLY)]
    assert [r.number for r in read_table(study)] == [1]
    assert not recorder.finish()  # nothing left to record


def test_finished_and_budget_stopped_trials_are_recorded(tmp_path):
    config = load_config(CONFIGS / "bertcat.cfg", interpolate=False)
    settings = read_settings(config, None, "bertcat.cfg")
    records = []
    recorder = _recorder(tune, tmp_path, config, settings, records, 0.0, time.time(), set())
    done, over = trial(tmp_path, 0, settings.max_steps), trial(tmp_path, 1, 200)
    for t in (done, over):
        recorder.on_trial_start(0, [], t)
        recorder.on_trial_complete(0, [], t)
    assert [(r.number, r.status) for r in records] == [(0, COMPLETED), (1, STOPPED_BUDGET)]


def test_the_scheduler_tells_which_trials_asha_stopped():
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    stopped = set()
    scheduler = _scheduler(ASHAScheduler, stopped)(
        time_attr="step", metric="score", mode="max", max_t=100, grace_period=1, reduction_factor=2
    )
    scheduler.set_search_properties("score", "max")
    decisions = {}
    for i, score in enumerate([0.9, 0.8, 0.1, 0.05]):
        t = SimpleNamespace(trial_id=f"t{i}", config={})
        scheduler.on_trial_add(None, t)
        decisions[t.trial_id] = scheduler.on_trial_result(None, t, {"step": 1, "score": score})
    assert stopped == {k for k, d in decisions.items() if d == TrialScheduler.STOP}
    assert stopped  # the worst trials were stopped at the first rung
