"""Smoke run of every benchmark: each script's own code path end to end (`--smoke`: a
few documents, a tiny random BERT with MiniLM's tokenizer, 1-6 steps), so that a
benchmark cannot rot unnoticed. Results go to a temporary folder, never to
bench/results. The shell scripts are syntax-checked (`bash -n`), and the repository
files they name must exist (they need a GPU, or hours).

Two lanes, each script's main() called with its smoke arguments, so that spaCy,
torch and transformers are imported once per lane: distributed_train (spawned
workers) and ray_predict (a local Ray) one after the other in one subprocess, started
first; the others meanwhile in this process. Torch runs one thread (a tiny model
gains nothing from two, and the lanes share the cores). Prints a table (script,
seconds, CPU seconds, status) and exits non-zero if any failed.

    python bench/smoke.py [--only chunking,serving] [--keep] [--verbose]
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Dict, List, Optional

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

# Every benchmark script: its extra smoke arguments ({data}: the data folder, {work}:
# a folder the runs share), whether it runs in the subprocess lane (multiprocessing
# spawn and ray.init are better kept out of this process; the two take about as long
# as the rest), and the packages without which it is skipped (competitors inside a
# script skip themselves, see common.smoke_skips).
SCRIPTS: Dict[str, Dict] = {
    "distributed_train": {"args": ["--data", "{data}/ag_news"], "process": True},
    "ray_predict": {"args": ["--data-dir", "{data}"], "process": True, "needs": ["ray"]},
    "lora_memory": {"args": ["--data-dir", "{data}"], "needs": ["psutil", "peft"]},
    "train_vs_trainer": {"args": ["--data-dir", "{data}"]},
    "predict_vs_pipeline": {"args": ["--data-dir", "{data}"]},
    "chunking": {"args": ["--data-dir", "{data}"]},
    "finetuning": {"args": ["--data-dir", "{data}"]},
    "multilabel": {"args": ["--data-dir", "{data}"], "needs": ["sklearn"]},
    # serving reuses the models calibration trains (as in run_all.sh): same --work-dir.
    "calibration": {"args": ["--data-dir", "{data}", "--work-dir", "{work}/calibration"]},
    "serving": {"args": ["--data-dir", "{data}", "--work-dir", "{work}/calibration"], "needs": ["onnxruntime", "onnx"]},
    # tune runs its studies as `spacy-bertcat tune` subprocesses (each starts a local Ray).
    "tune": {"args": ["--data-dir", "{data}"], "needs": ["ray", "optuna"]},
    # explain builds its own tiny untrained pipelines (SST-2, BBC News in sliding windows).
    "explain": {"args": ["--data-dir", "{data}"], "needs": ["captum"]},
    # fewshot: plain and few-shot training only (setfit lives in its own environment).
    "fewshot": {"args": ["--data-dir", "{data}"]},
}
# Modules in bench/ that are not benchmarks: each is run through the scripts above
# (make_random_bert through its main(argv), its command line, below).
HELPERS = {"common", "_step_timer", "make_random_bert", "smoke"}
# Shell scripts: syntax and the files they name only (GPU machine, or hours of CPU).
SHELL = ["run_all.sh", "gpu_run.sh", "gpu_distributed.sh"]
# The subprocess lane's limit from the start of the run (tests/test_bench_smoke.py
# allows 300 s): then its process group is killed and its scripts fail.
LANE_TIMEOUT_S = 270


def check_shell(name: str) -> None:
    """`bash -n`, and every repository path the script names must exist."""
    path = BENCH / name
    out = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    text = path.read_text()
    named = set(re.findall(r"(?<![\w./-])((?:bench|tests|configs|scripts)/[\w./-]+\.(?:py|cfg|sh))", text))
    absent = sorted(p for p in named if not (ROOT / p).exists())
    if absent:
        raise RuntimeError(f"{name} names files that do not exist: {', '.join(absent)}")


def missing(modules: List[str]) -> List[str]:
    import importlib.util

    return [m for m in modules if importlib.util.find_spec(m) is None]


def cpu_seconds() -> float:
    """CPU time of this process and of its children waited for so far."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run_inline(name: str, argv: List[str], log: Path, verbose: bool) -> Optional[str]:
    """Call bench/<name>.py's main(argv) here. RETURNS (Optional[str]): None, or why it failed."""
    import importlib

    with open(log, "w") as file:
        try:
            if verbose:
                importlib.import_module(name).main(argv)
            else:
                with redirect_stdout(file), redirect_stderr(file):
                    importlib.import_module(name).main(argv)
        except (Exception, SystemExit):
            return traceback.format_exc()
    return None


def run_lane(names: List[str], argvs: Dict[str, List[str]], tmp: Path, verbose: bool) -> Dict[str, Dict]:
    """Run these scripts in this process, one after the other. RETURNS: name -> result."""
    results = {}
    for name in names:
        if not verbose:
            print(f"smoke: {name} ...", flush=True)
        t, cpu = time.perf_counter(), cpu_seconds()
        error = run_inline(name, argvs[name], tmp / f"{name}.log", verbose)
        results[name] = {"seconds": time.perf_counter() - t, "cpu": cpu_seconds() - cpu}
        finish(results[name], name, error, tmp)
    return results


def finish(result: Dict, name: str, error: Optional[str], tmp: Path) -> None:
    """Set the status of script `name`: failed if it raised, or wrote no results."""
    written = sorted(p.name for p in (tmp / "results" / name).glob("*.json"))
    if error is None and not written:
        error = "no results file written"
    result["status"] = "ok" if error is None else "FAILED"
    result["written"] = written
    if error is not None:
        log = tmp / f"{name}.log"
        tail = log.read_text()[-4000:] if log.exists() else ""
        result["error"] = f"{tail}\n{error}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="datasets (default: ../shared/data)")
    parser.add_argument("--only", default=None, help="comma-separated scripts (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (results, logs)")
    parser.add_argument("--verbose", action="store_true", help="the scripts' output on the terminal")
    parser.add_argument("--lane", type=Path, default=None, help=argparse.SUPPRESS)  # the subprocess lane's JSON
    args = parser.parse_args(argv)
    # One torch thread everywhere (see common.parse_args): set before torch loads.
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(BENCH))
    if args.lane is not None:  # the subprocess lane: a JSON of what to run in, results out
        threading.Thread(target=die_with_parent, args=(os.getppid(),), daemon=True).start()
        spec = json.loads(args.lane.read_text())
        results = run_lane(spec["names"], spec["argvs"], Path(spec["tmp"]), args.verbose)
        args.lane.write_text(json.dumps(results))
        return 0
    return run(args, parser)


def die_with_parent(parent: int) -> None:
    """In the subprocess lane (a session of its own): when smoke.py is gone (killed by
    a test's timeout, say), end the lane's process group, workers included."""
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(0, signal.SIGKILL)


def run(args, parser) -> int:
    start = time.perf_counter()
    from common import DEFAULT_DATA, SMOKE_MODEL, minilm_path

    data = (args.data_dir or DEFAULT_DATA).resolve()
    if not data.is_dir():
        print(f"smoke: no datasets at {data} (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    names = list(SCRIPTS) + SHELL if args.only is None else args.only.split(",")
    unknown = set(names) - set(SCRIPTS) - set(SHELL)
    if unknown:
        parser.error(f"unknown scripts {sorted(unknown)}; choose from {list(SCRIPTS) + SHELL}")
    tmp = Path(tempfile.mkdtemp(prefix="bertcat-bench-smoke-"))
    # Every temporary file of the runs (theirs, spaCy's, Ray's) in here, removed at the end.
    (tmp / "tmp").mkdir()
    os.environ["TMPDIR"] = tempfile.tempdir = str(tmp / "tmp")
    results: Dict[str, Dict] = {}
    try:
        for name in [n for n in SHELL if n in names]:
            t = time.perf_counter()
            try:
                check_shell(name)
                results[name] = {"status": "ok (bash -n, named files exist)"}
            except Exception as e:
                results[name] = {"status": "FAILED", "error": str(e)}
            results[name].update(seconds=time.perf_counter() - t, cpu=None)
        # The tiny model, once, through make_random_bert.py's command line (its main(argv); gpu_*.sh run it).
        import make_random_bert

        model = tmp / "random-bert"
        t, cpu = time.perf_counter(), cpu_seconds()
        try:
            make_random_bert.main(
                [
                    str(model),
                    "--tokenizer",
                    minilm_path(),
                    "--layers",
                    str(SMOKE_MODEL["layers"]),
                    "--hidden",
                    str(SMOKE_MODEL["hidden"]),
                    "--heads",
                    str(SMOKE_MODEL["heads"]),
                ]
            )
            results["make_random_bert"] = {"status": "ok"}
        except Exception:
            results["make_random_bert"] = {"status": "FAILED", "error": traceback.format_exc()}
        results["make_random_bert"].update(seconds=time.perf_counter() - t, cpu=cpu_seconds() - cpu)
        if results["make_random_bert"]["status"] != "ok":
            return report(results, tmp, start, keep=True)

        def argv_of(name: str) -> List[str]:
            extra = [a.format(data=data, work=tmp / "work") for a in SCRIPTS[name]["args"]]
            return ["--smoke", "--model", str(model), "--results-dir", str(tmp / "results" / name), *extra]

        chosen = []
        for name in [n for n in SCRIPTS if n in names]:
            absent = missing(SCRIPTS[name].get("needs", []))
            if absent:
                results[name] = {"seconds": 0.0, "cpu": None, "status": f"skipped: needs {', '.join(absent)}"}
            else:
                chosen.append(name)
        lane_names = [n for n in chosen if SCRIPTS[n].get("process")]
        lane = None
        if lane_names:
            spec = tmp / "lane.json"
            spec.write_text(
                json.dumps({"names": lane_names, "argvs": {n: argv_of(n) for n in lane_names}, "tmp": str(tmp)})
            )
            with open(tmp / "lane.log", "w") as log:  # its own session: killed as a group on a timeout
                lane = subprocess.Popen(
                    [sys.executable, str(BENCH / "smoke.py"), "--lane", str(spec)]
                    + (["--verbose"] if args.verbose else []),
                    stdout=None if args.verbose else log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                )
            lane_start = time.perf_counter()
            lane_deadline = start + LANE_TIMEOUT_S
        results.update(
            run_lane([n for n in chosen if n not in lane_names], {n: argv_of(n) for n in chosen}, tmp, args.verbose)
        )
        if lane is not None:
            try:
                lane.wait(timeout=max(1.0, lane_deadline - time.perf_counter()))
                lane_results = json.loads(spec.read_text()) if lane.returncode == 0 else {}
            except subprocess.TimeoutExpired:
                os.killpg(lane.pid, signal.SIGKILL)
                lane.wait()
                lane_results = {}
            for name in lane_names:
                results[name] = lane_results.get(name) or {
                    "seconds": time.perf_counter() - lane_start,
                    "cpu": None,
                    "status": "FAILED",
                    "error": f"the subprocess lane stopped (exit status {lane.returncode}, limit {LANE_TIMEOUT_S} s): "
                    + (tmp / "lane.log").read_text()[-3000:],
                }
        return report(results, tmp, start, keep=args.keep)
    finally:
        if not args.keep and all(r["status"] != "FAILED" for r in results.values()):
            shutil.rmtree(tmp, ignore_errors=True)


def report(results: Dict[str, Dict], tmp: Path, start: float, keep: bool) -> int:
    failed = [name for name, r in results.items() if r["status"] == "FAILED"]
    for name in failed:
        print(f"\n===== {name} FAILED =====\n{results[name].get('error') or ''}", file=sys.stderr)
    print("\n| script | lane | seconds | cpu seconds | status |\n|---|---|---:|---:|---|")
    for name, r in results.items():
        lane = "shell" if name in SHELL else "subprocess" if SCRIPTS.get(name, {}).get("process") else "this process"
        cpu = "" if r.get("cpu") is None else f"{r['cpu']:.1f}"
        print(f"| {name} | {lane} | {r['seconds']:.1f} | {cpu} | {r['status']} |")
    print(
        f"\ntotal: {time.perf_counter() - start:.1f} s wall, {cpu_seconds():.1f} s CPU (this process and its "
        "children: the subprocess lane ran alongside this one; Ray's own daemons are not counted)"
    )
    if keep or failed:
        print(f"results and logs: {tmp}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
