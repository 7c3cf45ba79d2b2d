"""The benchmarks' smoke run (bench/smoke.py): every script's code path end to end on
a few documents with a tiny random model, so that a benchmark cannot rot unnoticed;
and every benchmark script has one."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DATA = ROOT.parent / "shared" / "data"


def load_smoke():
    spec = importlib.util.spec_from_file_location("bench_smoke", BENCH / "smoke.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_benchmark_has_a_smoke_run():
    smoke = load_smoke()
    scripts = {path.stem for path in BENCH.glob("*.py")}
    assert scripts - set(smoke.SCRIPTS) - smoke.HELPERS == set(), "add the new benchmark to bench/smoke.py's SCRIPTS"
    assert (set(smoke.SCRIPTS) | smoke.HELPERS) - scripts == set(), "bench/smoke.py names scripts that are gone"
    assert {path.name for path in BENCH.glob("*.sh")} == set(smoke.SHELL)
    for name in smoke.SCRIPTS:  # a --smoke mode, and a main smoke.py can call
        text = (BENCH / f"{name}.py").read_text()
        assert "parse_args(parser, argv, SMOKE)" in text and "def main(argv=None)" in text, name


def results_files():
    return {path.name: (path.stat().st_size, path.stat().st_mtime_ns) for path in (BENCH / "results").iterdir()}


@pytest.mark.skipif(not DATA.is_dir(), reason=f"no datasets at {DATA} (../shared/data)")
def test_bench_smoke_run():
    before = results_files()
    out = subprocess.run(
        [sys.executable, str(BENCH / "smoke.py"), "--data-dir", str(DATA)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-6000:]
    assert results_files() == before, "a smoke run wrote into bench/results"
