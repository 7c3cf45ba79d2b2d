"""Bad input to every command (issue 24: never destroy or silently corrupt what a
user owns): wrong paths, used or overlapping outputs, unreadable files, wrong
encodings, reserved field names, empty and one-line files, options that have no
effect, broken pipelines. Each gets a coded error that names the fix and exit
status 1 (not a traceback), and what the user owns stays byte for byte as it was.

Through the real entry point (typer's CliRunner on the app, one subprocess for
the colour codes), on one tiny trained pipeline of each kind for the module.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.language import Language
from typer.testing import CliRunner

from spacy_bertcat.cli import app
from spacy_bertcat.predict.local import predict_file

from ..support import MULTI_DATA, SINGLE_DATA, train_tiny

ROOT = Path(__file__).resolve().parents[2]
CAFE = '{"text": "un caf\xe9 tr\xe8s bon", "label": "POS"}\n{"text": "a bad film", "label": "NEG"}\n'


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    result.flat = " ".join(result.output.split())  # messages are wrapped to the terminal's width
    return result


def refused(result, code, *words):
    """The command failed with the coded error `code` (and these words), exit
    status 1, no traceback."""
    assert result.exit_code == 1, result.flat
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert f"[{code}]" in result.flat and "Traceback" not in result.flat, result.flat
    for word in words:
        assert word in result.flat, (word, result.flat)
    return result.flat


def snapshot(path):
    """Everything under a path (or the file): names and bytes."""
    path = Path(path)
    if path.is_file():
        return path.read_bytes()
    return {p.relative_to(path).as_posix(): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


@contextlib.contextmanager
def unreadable(path, monkeypatch):
    """Make a file unreadable to this process: Path.open refuses it, as the system
    does for a file without read permission (simulated, since root reads any
    file; a real chmod is caught earlier, by the arguments' check, as BC092)."""
    path = Path(path).resolve()
    real_open = Path.open

    def refuse(self, *args, **kwargs):
        if Path(self).resolve() == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(Path, "open", refuse)
        yield


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def single(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("single") / "pipeline"
    train_tiny(tiny_bert, "bertcat", SINGLE_DATA, 2, learn_rate=3e-3).to_disk(path)
    return path


@pytest.fixture(scope="module")
def multi(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("multi") / "pipeline"
    train_tiny(tiny_bert, "bertcat_multilabel", MULTI_DATA, 2, learn_rate=3e-3).to_disk(path)
    return path


def copy_pipeline(source, target):
    shutil.copytree(source, target)
    return target


# The commands that write a pipeline: calibrate, find-thresholds, optimize.

WRITERS = {
    "calibrate": lambda p, data, out: ["calibrate", p["single"], data["single"], "--output", out],
    "find-thresholds": lambda p, data, out: ["find-thresholds", p["multi"], data["multi"], "--output", out],
    "optimize": lambda p, data, out: ["optimize", p["single"], out, "--check", data["single"]],
}
MODEL_OF = {"calibrate": "single", "find-thresholds": "multi", "optimize": "single"}


@pytest.fixture
def inputs(single, multi, tmp_path):
    """Copies of the pipelines (they must come out unchanged) and data."""
    (tmp_path / "data").mkdir()
    single_rows = [{"text": text, "label": max(cats, key=cats.get)} for text, cats in SINGLE_DATA]
    multi_rows = [{"text": text, "labels": [k for k, v in cats.items() if v]} for text, cats in MULTI_DATA]
    pipelines = {
        "single": copy_pipeline(single, tmp_path / "single"),
        "multi": copy_pipeline(multi, tmp_path / "multi"),
    }
    data = {
        "single": write_jsonl(tmp_path / "data" / "single.jsonl", single_rows),
        "multi": write_jsonl(tmp_path / "data" / "multi.jsonl", multi_rows),
    }
    return pipelines, data


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_pipeline_is_written_only_into_a_new_or_empty_folder_outside_the_inputs(command, inputs, tmp_path):
    """calibrate, find-thresholds and optimize used to replace --output whole
    (deleting whatever it held); now a used folder, a file, a folder inside the
    model or around the data are refused before any work, and stay as they were."""
    pipelines, data = inputs
    model = pipelines[MODEL_OF[command]]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes", encoding="utf-8")
    (mine / "old-run").mkdir()
    a_file = tmp_path / "file.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    before = {"model": snapshot(model), "data": snapshot(tmp_path / "data"), "mine": snapshot(mine)}
    for out, code, words in (
        (mine, "BC081", ["not empty", "notes.txt", "old-run/", "new or empty folder"]),
        (a_file, "BC092", ["file.txt"]),
        (model / "calibrated", "BC080", ["is inside", str(model)]),
        (tmp_path / "data", "BC080", ["contains", "Give an output outside it"]),
    ):
        refused(invoke(*WRITERS[command](pipelines, data, out)), code, *words)
    if command == "optimize":  # optimize makes a new pipeline: MODEL itself is refused too
        refused(invoke(*WRITERS[command](pipelines, data, model)), "BC080", "is")
    assert {"model": snapshot(model), "data": snapshot(tmp_path / "data"), "mine": snapshot(mine)} == before
    assert a_file.read_text(encoding="utf-8") == "not a folder"
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_replace_takes_only_an_earlier_saved_pipeline(command, inputs, tmp_path):
    """A rerun (the BBC project's calibrate and optimize steps) may replace its own
    earlier output with --replace; without it the folder is refused, and --replace
    never takes a folder that holds anything but a saved pipeline."""
    pipelines, data = inputs
    if command == "calibrate":  # calibration needs 20 held-out documents
        rows = [{"text": text, "label": max(cats, key=cats.get)} for text, cats in SINGLE_DATA] * 6
        data = {**data, "single": write_jsonl(tmp_path / "data" / "held_out.jsonl", rows)}
    out = tmp_path / "out"
    first = invoke(*WRITERS[command](pipelines, data, out))
    assert first.exit_code == 0, first.output
    refused(invoke(*WRITERS[command](pipelines, data, out)), "BC081", "not empty")
    again = invoke(*WRITERS[command](pipelines, data, out), "--replace")
    assert again.exit_code == 0, again.output
    assert (out / "config.cfg").is_file() and not list(tmp_path.glob(".*.tmp"))
    (out / "notes.txt").write_text("my notes", encoding="utf-8")
    before = snapshot(out)
    refused(invoke(*WRITERS[command](pipelines, data, out), "--replace"), "BC082", "notes.txt")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes", encoding="utf-8")
    refused(invoke(*WRITERS[command](pipelines, data, mine), "--replace"), "BC081", "not empty")
    assert snapshot(out) == before and (mine / "notes.txt").read_text(encoding="utf-8") == "my notes"


def test_an_update_in_place_keeps_what_it_cannot_carry(inputs, tmp_path):
    """Without --output, calibrate and find-thresholds replace MODEL by its updated
    copy: refused where MODEL holds something the pipeline does not save (it would
    be lost) or the data (it would be deleted)."""
    pipelines, data = inputs
    model = pipelines["single"]
    (model / "README.md").write_text("my model card", encoding="utf-8")
    before = snapshot(model)
    refused(invoke("calibrate", model, data["single"]), "BC082", "README.md", "--output")
    assert snapshot(model) == before
    multi = pipelines["multi"]
    inside = write_jsonl(multi / "dev.jsonl", [{"text": "the team", "labels": ["sport"]}])
    before = snapshot(multi)
    refused(invoke("find-thresholds", multi, inside), "BC080", "contains")
    refused(invoke("find-thresholds", multi, inside, "--output", multi), "BC080", "contains")
    assert snapshot(multi) == before


def test_option_with_no_effect_on_calibrate_and_optimize(inputs):
    pipelines, data = inputs
    refused(
        invoke("calibrate", pipelines["multi"], data["multi"], "--alpha", "0.1"),
        "BC088",
        "--alpha",
        "multi-label",
        "Leave it out",
    )
    refused(invoke("calibrate", pipelines["single"], data["single"], "--min-support", "3"), "BC088", "--min-support")
    out = pipelines["single"].parent / "fast"
    refused(invoke("optimize", pipelines["single"], out, "--check-limit", "5"), "BC088", "without --check")
    assert not out.exists()


def test_missing_and_broken_pipelines_and_data(inputs, tmp_path, monkeypatch):
    pipelines, data = inputs
    broken = copy_pipeline(pipelines["single"], tmp_path / "broken")
    (broken / "bertcat" / "model").unlink()
    before = snapshot(broken)
    for command in (
        ["evaluate", broken, data["single"], "-o", tmp_path / "report"],
        ["predict", broken, data["single"], tmp_path / "out.jsonl"],
        ["calibrate", broken, data["single"], "-o", tmp_path / "out"],
    ):
        refused(invoke(*command), "BC086", "bertcat/model", "copy the pipeline again")
    refused(invoke("evaluate", tmp_path / "no-such-pipeline", data["single"]), "BC086")
    refused(invoke("find-thresholds", tmp_path / "no-such-pipeline", data["multi"]), "BC092", "does not exist")
    refused(invoke("calibrate", pipelines["single"], tmp_path / "no.jsonl"), "BC092", "Check the path")
    assert snapshot(broken) == before
    with unreadable(data["single"], monkeypatch):
        refused(invoke("calibrate", pipelines["single"], data["single"], "-o", tmp_path / "c"), "BC090", "chmod")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    refused(invoke("find-thresholds", pipelines["multi"], empty, "-o", tmp_path / "t"), "BC043", "no records")
    refused(invoke("calibrate", pipelines["single"], empty, "-o", tmp_path / "c"), "BC043", "no records")
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "a great film", "label": "POS"}])
    refused(invoke("calibrate", pipelines["single"], one, "-o", tmp_path / "c"), "BC056")
    for name in ("t", "c", "out", "report", "out.jsonl"):
        assert not (tmp_path / name).exists()


# evaluate


def test_evaluate_writes_only_a_report_folder(single, tmp_path, monkeypatch):
    rows = [{"text": text, "label": max(cats, key=cats.get)} for text, cats in SINGLE_DATA]
    data = write_jsonl(tmp_path / "test.jsonl", rows)
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "summary.xlsx").write_bytes(b"a spreadsheet")
    refused(invoke("evaluate", single, data, "-o", reports), "BC081", "summary.xlsx", "earlier output")
    assert snapshot(reports) == {"summary.xlsx": b"a spreadsheet"}
    refused(invoke("evaluate", single, data, "-o", single), "BC080", "is")
    refused(invoke("evaluate", single, data, "-o", tmp_path), "BC080", "contains")
    # An earlier report's folder is written again: its files are replaced.
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for name in ("report.md", "report.json", "pr_curves.png"):
        (earlier / name).write_text("old", encoding="utf-8")
    result = invoke("evaluate", single, data, "-o", earlier, "--no-plots")
    assert result.exit_code == 0, result.flat
    assert json.loads((earlier / "report.json").read_text())["summary"]["n_docs"] == 4
    # Bad data: empty, not a .spacy file, unreadable.
    (tmp_path / "empty.spacy").write_bytes(b"")
    (tmp_path / "junk.spacy").write_text("hello", encoding="utf-8")
    refused(invoke("evaluate", single, tmp_path / "empty.spacy", "-o", tmp_path / "r"), "BC043", "not a .spacy file")
    refused(invoke("evaluate", single, tmp_path / "junk.spacy", "-o", tmp_path / "r"), "BC043", "not a .spacy file")
    with unreadable(data, monkeypatch):
        refused(invoke("evaluate", single, data, "-o", tmp_path / "r"), "BC090", "Permission denied")
    assert not (tmp_path / "r").exists()


# convert


def test_convert_never_replaces_or_deletes(tmp_path, monkeypatch):
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(10)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "train.spacy").write_bytes(b"my own train.spacy")
    (corpus / "notes.txt").write_text("mine", encoding="utf-8")
    before = snapshot(corpus)
    refused(invoke("convert", source, corpus, "--split", "0.5,0.5"), "BC085", "train.spacy", "--overwrite")
    assert snapshot(corpus) == before
    # --overwrite replaces the .spacy files it writes, and nothing else.
    (corpus / "test.spacy").write_bytes(b"from a three-way split")
    result = invoke("convert", source, corpus, "--split", "0.5,0.5", "--overwrite")
    assert result.exit_code == 0, result.flat
    assert "[BCW022]" in result.flat and "test.spacy" in result.flat
    assert (corpus / "notes.txt").read_text(encoding="utf-8") == "mine"
    assert (corpus / "test.spacy").read_bytes() == b"from a three-way split"
    assert (corpus / "train.spacy").read_bytes() != b"my own train.spacy"
    # A label folder's output may not be inside it (it would be read back as a label).
    folders = tmp_path / "reviews"
    for label in ("pos", "neg"):
        (folders / label).mkdir(parents=True)
        (folders / label / "1.txt").write_text(f"a {label} text", encoding="utf-8")
    before = snapshot(folders)
    refused(invoke("convert", folders, folders / "corpus"), "BC080", "is inside")
    refused(invoke("convert", folders, folders), "BC080", "is")
    assert snapshot(folders) == before
    a_file = tmp_path / "a-file"
    a_file.write_text("x", encoding="utf-8")
    refused(invoke("convert", source, a_file), "BC092", "a-file")
    refused(invoke("convert", source, tmp_path / "out", "--seed", "3"), "BC088", "--seed", "without --split")
    with unreadable(source, monkeypatch):
        refused(invoke("convert", source, tmp_path / "out"), "BC090", "Permission denied", "chmod")
    assert not (tmp_path / "out").exists() and a_file.read_text(encoding="utf-8") == "x"


def test_convert_bad_files(tmp_path):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(CAFE.encode("cp1252"))
    refused(invoke("convert", latin, tmp_path / "a"), "BC047", "--encoding")
    refused(invoke("convert", latin, tmp_path / "a", "--encoding", "no-such-codec"), "BC084", "no-such-codec")
    refused(invoke("convert", latin, tmp_path / "a", "--fallback-encoding", "nope"), "BC084", "--fallback-encoding")
    assert not (tmp_path / "a").exists()
    result = invoke("convert", latin, tmp_path / "a", "--fallback-encoding", "cp1252")
    assert result.exit_code == 0 and "[BCW023]" in result.flat, result.flat
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    refused(invoke("convert", empty, tmp_path / "b"), "BC043", "no records")
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": "a text", "label": "a"}])
    refused(invoke("convert", one, tmp_path / "b"), "BC037", "--multilabel")
    header = tmp_path / "header.csv"
    header.write_text("text,label\n", encoding="utf-8")
    refused(invoke("convert", header, tmp_path / "b"), "BC043", "no records")
    refused(invoke("convert", tmp_path / "missing.jsonl", tmp_path / "b"), "BC092", "does not exist")
    assert not (tmp_path / "b").exists()


# predict (local)


def test_predict_never_writes_over_an_input_or_an_earlier_output(single, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a great film"}, {"text": "bad"}])
    before = snapshot(source)
    refused(invoke("predict", single, source, source), "BC080", "is")  # it used to replace the input
    assert snapshot(source) == before
    out = tmp_path / "out.jsonl"
    out.write_text("my earlier predictions\n", encoding="utf-8")
    refused(invoke("predict", single, source, out), "BC085", "--overwrite")
    assert out.read_text(encoding="utf-8") == "my earlier predictions\n"
    result = invoke("predict", single, source, out, "--overwrite")
    assert result.exit_code == 0, result.flat
    assert [json.loads(line)["line"] for line in out.read_text().splitlines()] == [1, 2]
    refused(invoke("predict", single, source, tmp_path), "BC091", "give a file name")
    refused(invoke("predict", single, source, single / "predictions.jsonl"), "BC080", "is inside")
    refused(invoke("predict", single, tmp_path, tmp_path / "o.jsonl"), "BC092", "is a folder", "--engine ray")
    assert not (single / "predictions.jsonl").exists() and not list(tmp_path.glob("*.partial"))


def test_predict_refuses_or_renames_input_fields_named_like_its_own(single, tmp_path):
    """An input `line` used to replace the line number (and --resume then failed),
    a gold `cats` was replaced by the scores, an input `error` made a row look
    failed: refused before anything is written, or kept as input_<name>."""
    rows = [{"text": "a great film", "line": 7, "cats": {"POS": 1.0}, "error": "none"}, {"text": "bad"}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    flat = refused(invoke("predict", single, source, out), "BC083", "line, cats, error", "--rename-fields")
    assert "predicted_label, predicted_labels, prediction_set" in flat
    assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()
    csv_path = tmp_path / "in.csv"
    csv_path.write_text("text,predicted_label\na film,POS\n", encoding="utf-8")
    refused(invoke("predict", single, csv_path, out), "BC083", "predicted_label")
    result = invoke("predict", single, source, out, "--rename-fields")
    assert result.exit_code == 0, result.flat
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert (first["line"], first["input_line"], first["input_cats"], first["input_error"]) == (
        1,
        7,
        {"POS": 1.0},
        "none",
    )
    assert set(first["cats"]) == {"POS", "NEG"} and "error" not in first and second["line"] == 2
    taken = write_jsonl(tmp_path / "taken.jsonl", [{"text": "x", "cats": {}, "input_cats": 1}])
    refused(invoke("predict", single, taken, tmp_path / "o.jsonl", "--rename-fields"), "BC083", "input_cats")


def test_predict_reads_other_encodings_and_leaves_no_empty_partial(single, tmp_path, monkeypatch):
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(CAFE.encode("cp1252"))
    out = tmp_path / "out.jsonl"
    refused(invoke("predict", single, latin, out), "BC047", "--encoding")
    assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()  # it used to leave 0 bytes
    refused(invoke("predict", single, latin, out, "--encoding", "klingon"), "BC084")
    result = invoke("predict", single, latin, out, "--encoding", "cp1252")
    assert result.exit_code == 0, result.flat
    assert json.loads(out.read_text(encoding="utf-8").splitlines()[0])["text"] == "un caf\xe9 tr\xe8s bon"
    result = invoke("predict", single, latin, tmp_path / "b.jsonl", "--fallback-encoding", "cp1252")
    assert result.exit_code == 0 and "[BCW023]" in result.flat, result.flat
    with unreadable(latin, monkeypatch):
        refused(invoke("predict", single, latin, tmp_path / "c.jsonl"), "BC090", "Permission denied")
    assert not (tmp_path / "c.jsonl").exists() and not (tmp_path / "c.jsonl.partial").exists()


def test_a_run_that_fails_before_its_first_row_leaves_no_partial(single, tmp_path):
    @Language.component("bc24_fail_always")
    def fail_always(doc):
        raise RuntimeError("out of memory")

    nlp = spacy.load(single)
    nlp.add_pipe("bc24_fail_always")
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a film"}])
    with pytest.raises(RuntimeError, match="out of memory"):
        predict_file(nlp, source, tmp_path / "out.jsonl", show_progress=False)
    assert not (tmp_path / "out.jsonl.partial").exists() and not (tmp_path / "out.jsonl").exists()


def test_predict_fails_when_no_record_can_be_classified(single, tmp_path):
    """A forgotten --text-field used to give exit status 0 and "Wrote 2
    predictions", every row an error."""
    source = write_jsonl(tmp_path / "in.jsonl", [{"body": "a great film"}, {"body": "bad"}])
    out = tmp_path / "out.jsonl"
    refused(invoke("predict", single, source, out), "BC087", "None of the 2 record(s)", "--text-field")
    assert not out.exists() and not (tmp_path / "out.jsonl.partial").exists()
    assert invoke("predict", single, source, out, "--text-field", "body").exit_code == 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    result = invoke("predict", single, empty, tmp_path / "e.jsonl")
    assert result.exit_code == 0 and "[BCW021]" in result.flat and (tmp_path / "e.jsonl").read_text() == ""


@pytest.mark.parametrize(
    "option",
    [
        ["--format", "jsonl"],
        ["--concurrency", "2"],
        ["--num-gpus", "1"],
        ["--num-cpus", "2"],
        ["--address", "auto"],
        ["--rows-per-file", "10"],
    ],
)
def test_ray_options_without_ray_are_refused(single, tmp_path, option):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a film"}])
    refused(invoke("predict", single, source, tmp_path / "out.jsonl", *option), "BC088", option[0], "--engine ray")
    assert not (tmp_path / "out.jsonl").exists()


def test_options_of_another_output_or_engine_are_refused(single, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a film"}])
    for option in ("--resume", "--overwrite"):
        refused(invoke("predict", single, source, "-", option), "BC088", option, "standard output")
    for option in (["--fallback-encoding", "cp1252"], ["--rename-fields"], ["--resume"], ["--gpu-id", "0"]):
        refused(invoke("predict", single, source, tmp_path / "shards", "--engine", "ray", *option), "BC088", option[0])
    refused(invoke("predict", single, source, "-", "--engine", "ray"), "BC088", "(standard output) as OUTPUT")
    assert not (tmp_path / "shards").exists()


# train: the argument errors that cost nothing


def test_train_argument_errors(tmp_path):
    config = tmp_path / "config.cfg"
    config.write_text('[nlp]\nlang = "en"\n', encoding="utf-8")
    refused(invoke("train", tmp_path / "missing.cfg"), "BC092", "does not exist")
    refused(invoke("train", tmp_path), "BC092", "is a directory")
    refused(invoke("train", config, "--code", tmp_path / "missing.py"), "BC092", "--code")
    refused(invoke("train", config, "--workers", "0"), "BC092", "--workers")
    refused(invoke("train", config, "--workers", "2", "--timeout", "0.5"), "BC092", "--timeout")
    refused(invoke("train", config, "--timeout", "30"), "BC088", "--timeout", "--workers N")


def test_no_colour_codes_in_a_pipe(tmp_path):
    """Messages written to a file or a pipe carry no escape codes (wasabi coloured
    them whenever the platform could, terminal or not)."""
    rows = [{"text": f"text {i}", "label": "ab"[i % 2]} for i in range(6)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "test.spacy").write_bytes(b"stale")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("NO_COLOR", None)
    env.pop("ANSI_COLORS_DISABLED", None)
    command = [sys.executable, "-m", "spacy_bertcat", "convert", str(source), str(tmp_path / "corpus")]
    out = subprocess.run(command + ["--split", "0.5,0.5"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Wrote" in out.stdout and "[BCW022]" in out.stdout
    assert "\x1b[" not in out.stdout + out.stderr
