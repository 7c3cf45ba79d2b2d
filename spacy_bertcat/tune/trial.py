"""One trial: a real `spacy train` of the config with the sampled settings, in its
own process and its own folder, whose evaluations are reported to Ray Tune.

This function runs in a Ray worker. The `spacy train` process is started in a
session of its own (so that the whole group can be ended) and with a parent-death
signal (Linux), so that it ends with the worker when Ray kills the worker (ASHA's
stop, a time budget, a killed driver). Its threads are capped by OMP_NUM_THREADS.
"""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from confection import Config

from ..errors import Errors
from .space import TuneSettings, trial_config

NUMBER_KEY = "_trial_number"
DEFAULTS_KEY = "_defaults"  # the trial of the config's own settings (ASHA lets it finish)
SCORES_NAME, LOG_NAME, ERROR_NAME = "scores.jsonl", "train.log", "error.txt"
FINISHED_NAME = "finished"  # written when `spacy train` ran to its end (not stopped)
PID_NAME = "pid"  # the process (group) of the trial's `spacy train`
_POLL_S = 0.5

# Started by the trial with the real command as its arguments: asks the kernel to
# send SIGTERM when the thread that started it ends (Linux prctl PR_SET_PDEATHSIG,
# kept across exec), then becomes the command.
_WRAPPER = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
except (AttributeError, OSError):
    pass
if os.getppid() != int(os.environ.pop("BERTCAT_TUNE_PARENT")):
    sys.exit(143)
os.execv(sys.argv[1], sys.argv[1:])
"""


@dataclass
class TrialSetup:
    """What every trial of a study shares.

    study (str): The study folder (absolute). config (str): The base config's
    text (overrides applied, not interpolated). settings (TuneSettings): The space.
    cwd (str): Where `spacy train` runs (relative paths in the config start there).
    code (Optional[str]): A --code file for `spacy train`. threads (int): Its
    torch/OpenMP threads. gpu (bool): Whether it trains on its GPU (Ray's).
    """

    study: str
    config: str
    settings: TuneSettings
    cwd: str
    code: Optional[str]
    threads: int
    gpu: bool


class TrialFailed(RuntimeError):
    pass


def trial_folder(study: Path, number: int) -> Path:
    return study / "trials" / f"trial-{number:03d}"


def run_trial(config: Dict[str, Any], setup: TrialSetup) -> None:
    """The Ray Tune function trainable: train one trial and report each evaluation
    as {"score": best dev score so far, "last_score", "step", "evaluations"}."""
    from ray import tune

    params = {key: value for key, value in config.items() if not key.startswith("_")}
    folder = trial_folder(Path(setup.study), int(config[NUMBER_KEY]))
    folder.mkdir(parents=True)  # never shared: a new number for each trial, also on resume
    base = Config().from_str(setup.config, interpolate=False)
    clean = trial_config(base, setup.settings, params)
    (folder / "config.cfg").write_text(clean.to_str(), encoding="utf-8")
    train = Config(clean, section_order=list(clean.keys()))
    train["training"]["logger"] = {
        "@loggers": "spacy-bertcat.tune_logger.v1",
        "path": str(folder / SCORES_NAME),
        "logger": clean["training"].get("logger"),
    }
    (folder / "train.cfg").write_text(train.to_str(), encoding="utf-8")
    command = [sys.executable, "-m", "spacy", "train", str(folder / "train.cfg"), "--output", str(folder)]
    command += ["--code", setup.code] if setup.code else []
    command += ["--gpu-id", "0"] if setup.gpu else []  # Ray's CUDA_VISIBLE_DEVICES holds the trial's GPU
    threads = str(setup.threads)
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    env.update(TOKENIZERS_PARALLELISM="false", BERTCAT_TUNE_PARENT=str(os.getpid()), PYTHONUNBUFFERED="1")
    (folder / SCORES_NAME).touch()
    with (folder / LOG_NAME).open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRAPPER, *command],
            cwd=setup.cwd,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (folder / PID_NAME).write_text(str(proc.pid), encoding="utf-8")
    best: Optional[float] = None
    seen = 0
    try:
        while True:
            done = proc.poll() is not None
            rows = _read_rows(folder / SCORES_NAME)
            for row in rows[seen:]:
                if best is None or row["score"] >= best:
                    # spaCy logs an evaluation before it saves model-best: report (and so
                    # let ASHA stop the trial) once that model is on disk
                    _wait_for_save(folder, row, proc)
                best = row["score"] if best is None else max(best, row["score"])
                seen += 1
                tune.report({"score": best, "last_score": row["score"], "step": row["step"], "evaluations": seen})
            if done:
                break
            time.sleep(_POLL_S)
    finally:
        _end(proc)
    if proc.returncode != 0 or seen == 0:
        reason = (
            f"`spacy train` exited with status {proc.returncode}"
            if proc.returncode != 0
            else "`spacy train` finished without an evaluation"
        )
        text = Errors.BC157.format(
            number=config[NUMBER_KEY], reason=reason, log=folder / LOG_NAME, tail=_tail(folder / LOG_NAME)
        )
        (folder / ERROR_NAME).write_text(text, encoding="utf-8")
        raise TrialFailed(text)
    (folder / FINISHED_NAME).touch()


def _wait_for_save(folder: Path, row: Dict[str, Any], proc: subprocess.Popen, timeout: float = 600.0) -> None:
    """Wait until model-best holds the evaluation `row` (its meta.json has the row's
    scores), the process ended, or `timeout` seconds passed."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        try:
            meta = json.loads((folder / "model-best" / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            meta = {}
        performance = meta.get("performance") or {}
        shared = [k for k, v in performance.items() if isinstance(v, (int, float)) and k in row["scores"]]
        if shared and all(abs(float(performance[k]) - row["scores"][k]) < 1e-9 for k in shared):
            return
        time.sleep(_POLL_S)


def _read_rows(path: Path) -> List[Dict[str, Any]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:  # a line being written
            break
    return rows


def _end(proc: subprocess.Popen) -> None:
    """End the trial's process group: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 12) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.rstrip().splitlines()[-lines:])


def end_leftover(folder: Path) -> bool:
    """End the `spacy train` of a trial that did not finish, if it still runs (the
    driver's clean-up after Ray Tune stopped: a worker that outlives the study would
    leave it training). RETURNS (bool): Whether one was ended."""
    try:
        pid = int((folder / PID_NAME).read_text(encoding="utf-8"))
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except (OSError, ValueError):
        return False
    if str(folder) not in command:  # not ours (a reused process id), or gone
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True
