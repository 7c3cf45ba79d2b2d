"""`spacy-bertcat tune` through its command line, on a local Ray, with a tiny model:
one study shared by the assertions, run as a user would run it: started, one trial
failing on purpose, the driver killed (SIGKILL) after two trials finished, resumed
(the finished trials not run again), its best config trained again with plain
`spacy train` to the same dev score, then resumed with more trials and a time budget
that stops the new trial. Bad spaces fail with coded errors before Ray starts."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..support import CONFIGS, DATA, write_corpus

pytest.importorskip("ray.tune")
pytest.importorskip("optuna")

CONFIG = CONFIGS / "bertcat.cfg"
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
SPACE = """
[tune]
seed = 0
grace_period = 4
reduction_factor = 2

[tune.space]
training.optimizer.learn_rate.initial_rate = "loguniform(3e-4, 1e-2)"
training.optimizer.learn_rate.warmup_steps = "share(0.0, 0.5)"
training.max_steps = "choice(4, 6)"
components.bertcat.model.layer_lr_decay = "uniform(0.7, 1.0)"
"""
# Imported by every trial's `spacy train` (--code): trial 1 fails at start.
FAIL_CODE = """
import sys
if any("trial-001" in arg for arg in sys.argv):
    raise SystemExit("trial 1 fails on purpose")
"""


def settings(root, model):
    return {
        "paths.train": str(root / "train.spacy"),
        "paths.dev": str(root / "dev.spacy"),
        "components.bertcat.model.name": model,
        "components.bertcat.model.max_length": 32,
        "training.max_steps": 4,
        "training.optimizer.learn_rate.total_steps": 4,
        "training.optimizer.learn_rate.warmup_steps": 1,
        "training.optimizer.learn_rate.initial_rate": 0.003,
        "training.eval_frequency": 2,
        "training.batcher.size": 8,
        "training.batcher.buffer": 4,
    }


def overrides(root, model):
    return [part for key, value in settings(root, model).items() for part in (f"--{key}", str(value))]


def tune_args(root, model, *more):
    return [
        "-m",
        "spacy_bertcat",
        "tune",
        str(CONFIG),
        "--output",
        str(root / "study"),
        "--space",
        str(root / "space.cfg"),
    ] + [
        *more,
        *overrides(root, model),
    ]


def run(args, expect=0, timeout=400):
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=timeout)
    text = out.stdout + out.stderr
    assert out.returncode == expect, text[-4000:]
    return text


def table(study):
    path = study / "trials.json"
    return json.loads(path.read_text()) if path.exists() else []


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_bert):
    root = tmp_path_factory.mktemp("tune")
    write_corpus(root / "train.spacy", DATA, copies=3)
    write_corpus(root / "dev.spacy", DATA, copies=1)
    (root / "space.cfg").write_text(SPACE)
    (root / "fail.py").write_text(FAIL_CODE)
    return root


@pytest.fixture(scope="module")
def study(root, tiny_bert):
    """The study, killed after two finished trials and resumed: (folder, outputs)."""
    study = root / "study"
    args = tune_args(root, tiny_bert, "--trials", "3", "--code", str(root / "fail.py"))
    proc = subprocess.Popen(
        [sys.executable, *args], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.time() + 300
        while len(table(study)) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.5)
        assert proc.poll() is None, "the study ended before it could be killed"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        except ProcessLookupError:
            pass
        proc.wait()
    killed = table(study)
    assert [r["number"] for r in killed][:2] == [0, 1]
    # what a user put under trials/ is not a trial: resume leaves it alone
    (study / "trials" / "notes").mkdir()
    (study / "trials" / "notes" / "todo.txt").write_text("keep me", encoding="utf-8")
    (study / "trials" / "trial-999-copy").mkdir()
    (study / "trials" / "trial-998").mkdir()
    (study / "trials" / "trial-998" / "model.bin").write_text("a user's file", encoding="utf-8")
    resumed = run(tune_args(root, tiny_bert, "--trials", "3", "--code", str(root / "fail.py"), "--resume"))
    return study, killed, resumed


def test_study_resumes_without_repeating_finished_trials(study):
    folder, killed, resumed = study
    assert "Resuming: 2 finished trial(s)" in resumed
    rows = table(folder)
    assert len(rows) == 3
    assert rows[:2] == killed[:2]  # kept as they were, not run again
    assert len({r["number"] for r in rows}) == 3 and len({r["folder"] for r in rows}) == 3
    assert rows[0]["defaults"] and rows[0]["settings"]["training.optimizer.learn_rate.initial_rate"] == 0.003
    assert sum(r["defaults"] for r in rows) == 1
    users = {"notes", "trial-999-copy", "trial-998"}
    assert not any(
        p.name.startswith("trial-") and p.name not in {Path(r["folder"]).name for r in rows} | users
        for p in (folder / "trials").iterdir()
    )
    assert (folder / "trials" / "notes" / "todo.txt").read_text(encoding="utf-8") == "keep me"
    assert (folder / "trials" / "trial-999-copy").is_dir()
    assert (folder / "trials" / "trial-998" / "model.bin").is_file()


def test_failed_trial_is_recorded_and_the_study_goes_on(study):
    folder, _, _ = study
    rows = table(folder)
    failed = [r for r in rows if r["status"] == "failed"]
    assert [r["number"] for r in failed] == [1]
    assert failed[0]["error"].startswith("[BC157]") and "trial 1 fails on purpose" in failed[0]["error"]
    assert rows[-1]["status"] in ("completed", "stopped_early") and rows[-1]["score"] is not None


def test_outputs_and_best_is_not_worse_than_the_defaults(study):
    folder, _, _ = study
    summary = json.loads((folder / "summary.json").read_text())
    rows = table(folder)
    scores = [r["score"] for r in rows if r["score"] is not None]
    assert summary["best_score"] == max(scores) >= summary["defaults_score"]
    assert (folder / "report.png").stat().st_size > 0
    assert (folder / "trials.csv").read_text().count("\n") >= 4
    assert (folder / "model-best" / "config.cfg").exists()
    kept = {p.parent.name for p in (folder / "trials").glob("*/model-best")}
    assert kept == {Path(rows[n]["folder"]).name for n in (0, summary["best_trial"])}  # the others pruned
    assert not list((folder / "trials").glob("*/model-last"))


def test_best_config_trains_again_to_the_same_dev_score(study, tmp_path):
    folder, _, _ = study
    summary = json.loads((folder / "summary.json").read_text())
    config = (folder / "best-config.cfg").read_text()
    assert "[tune" not in config and "tune_logger" not in config
    run(["-m", "spacy", "train", str(folder / "best-config.cfg"), "--output", str(tmp_path / "again")])
    meta = json.loads((tmp_path / "again" / "model-best" / "meta.json").read_text())
    assert meta["performance"]["cats_score"] == pytest.approx(summary["best_score"], abs=1e-6)


def test_time_budget_stops_cleanly_and_writes_outputs(study, root, tiny_bert):
    folder, _, _ = study
    before = table(folder)
    text = run(tune_args(root, tiny_bert, "--trials", "6", "--resume", "--time-budget", "4"))
    assert "[BCW051]" in text
    rows = table(folder)
    assert rows[:3] == before and len(rows) < 6
    assert all(r["status"] == "stopped_budget" for r in rows[3:])
    assert json.loads((folder / "summary.json").read_text())["trials"] == len(rows)


def test_bad_space_fails_before_any_trial(root, tiny_bert, tmp_path):
    # every code of a bad space: test_space.py; here: through the command, before Ray
    (tmp_path / "space.cfg").write_text('[tune]\n\n[tune.space]\ntraining.optimizer.learnrate = "uniform(0.1, 0.2)"\n')
    args = tune_args(root, tiny_bert)
    args[args.index("--space") + 1] = str(tmp_path / "space.cfg")
    args[args.index("--output") + 1] = str(tmp_path / "study")
    text = run(args, expect=1, timeout=120)
    assert "[BC152]" in text and "learnrate" in text
    assert not (tmp_path / "study").exists()


def test_output_folder_is_guarded(root, tiny_bert, tmp_path):
    from spacy_bertcat.tune.study import StudyOptions, prepare

    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "notes.txt").write_text("mine")
    options = StudyOptions(
        CONFIG, tmp_path / "study", 3, overrides=settings(root, tiny_bert), space_path=root / "space.cfg"
    )
    for resume, code in ((False, "[BC081]"), (True, "[BC155]")):
        options.resume = resume
        with pytest.raises(ValueError) as error:
            prepare(options)
        assert str(error.value).startswith(code), str(error.value)
    assert [p.name for p in (tmp_path / "study").iterdir()] == ["notes.txt"]
