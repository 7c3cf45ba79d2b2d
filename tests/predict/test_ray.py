"""Ray Data batch prediction (spacy_bertcat/ray.py, `predict --engine ray`) on one
local Ray with 2 CPUs: the scores equal single-process nlp.pipe, row for row and in
order; an actor killed mid-run loses and duplicates nothing; the command reads a glob
of messy shards into a complete folder (or refuses a used one); bad settings fail
with coded errors before anything starts."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy
import pytest
import spacy

from spacy_bertcat.components.pipes import Classifier
from spacy_bertcat.evaluation.calibrate import calibrate_pipe
from spacy_bertcat.evaluation.report import gold_matrix

from ..support import MULTI_DATA, SINGLE_DATA, WORDS, make_examples, train_tiny

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
pytest.importorskip("ray.data")

from spacy_bertcat.predict import ray as bertcat_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
PREDICTOR = (
    "BertcatPredictor"  # in the process title of a Ray Data map actor: ray::MapWorker(MapBatches(BertcatPredictor))
)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray for the module (starting one takes seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


def train(name, factory, data, path, steps=4):
    return train_tiny(name, factory, data, steps, learn_rate=1e-2)


@pytest.fixture(scope="module")
def single_model(tiny_bert, tmp_path_factory):
    """An exclusive-classes pipeline calibrated with prediction sets, saved."""
    path = tmp_path_factory.mktemp("ray-single") / "model"
    nlp = train(tiny_bert, "bertcat", SINGLE_DATA, path)
    words = ("so", "then", "now", "too", "again", "indeed")
    held_out = make_examples(nlp, [(f"{text} {word}", cats) for text, cats in SINGLE_DATA for word in words])
    docs = [eg.reference for eg in held_out]
    gold, mask = gold_matrix(docs, nlp.get_pipe("bertcat").labels)
    calibrate_pipe(nlp.get_pipe("bertcat"), docs, gold, mask, alphas=[0.2])
    nlp.to_disk(path)
    return path


@pytest.fixture(scope="module")
def multi_model(tiny_bert, tmp_path_factory):
    path = tmp_path_factory.mktemp("ray-multi") / "model"
    train(tiny_bert, "bertcat_multilabel", MULTI_DATA, path).to_disk(path)
    return path


def random_texts(n, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) for _ in range(n)]


def blocks(table, rows_per_block):
    """A Dataset of several blocks, so that both actors get work."""
    return ray.data.from_arrow([table.slice(i, rows_per_block) for i in range(0, table.num_rows, rows_per_block)])


def expected_rows(model, texts):
    nlp = spacy.load(model)
    docs = list(nlp.pipe([t if isinstance(t, str) else "" for t in texts]))
    return [
        (d.cats, d._.bertcat_sets.get("bertcat") if d._.bertcat_sets else None) if isinstance(t, str) else None
        for d, t in zip(docs, texts)
    ]


def assert_scores(rows, expected):
    """Each row's cats (a struct) equal nlp.pipe's doc.cats to float noise; rows
    whose text was not a string have an error and null scores."""
    assert len(rows) == len(expected)
    for row, exp in zip(rows, expected):
        if exp is None:
            assert row["error"] and row["cats"] is None
            continue
        assert row["error"] is None and set(row["cats"]) == set(exp[0])
        labels = sorted(exp[0])
        numpy.testing.assert_allclose(
            [row["cats"][k] for k in labels], [exp[0][k] for k in labels], rtol=1e-5, atol=1e-6
        )


def test_predictions_equal_nlp_pipe_in_order(single_model):
    texts = random_texts(3000)
    texts[7] = texts[2100] = None  # a null text: an error row, in place
    table = pa.table({"id": [f"doc-{i}" for i in range(len(texts))], "text": texts, "n": list(range(len(texts)))})
    out = bertcat_ray.predict(blocks(table, 250), single_model, batch_size=64, concurrency=2)
    rows = out.take_all()
    assert [r["id"] for r in rows] == table.column("id").to_pylist()
    assert [r["n"] for r in rows] == list(range(len(texts))) and [r["text"] for r in rows] == texts
    expected = expected_rows(single_model, texts)
    assert_scores(rows, expected)
    assert [r["predicted_label"] for r in rows] == [max(e[0], key=e[0].get) if e else None for e in expected]
    assert [r["prediction_set"] for r in rows] == [e[1] if e else None for e in expected]
    assert "must be a string, got None" in rows[7]["error"]
    assert out.schema().names == ["id", "text", "n", "cats", "predicted_label", "prediction_set", "error"]


def test_multilabel_predictions_and_drop_text(multi_model):
    texts = random_texts(300, seed=1)
    out = bertcat_ray.predict(
        blocks(pa.table({"text": texts, "id": list(range(300))}), 100), str(multi_model), batch_size=32, keep_text=False
    )
    rows = out.take_all()
    assert [r["id"] for r in rows] == list(range(300)) and "text" not in rows[0]
    expected = expected_rows(multi_model, texts)
    assert_scores(rows, expected)
    thresholds = Classifier(spacy.load(multi_model)).thresholds
    assert [r["predicted_labels"] for r in rows] == [
        [k for k, v in e[0].items() if v >= thresholds[k]] for e in expected
    ]
    assert "predicted_label" not in rows[0] and "prediction_set" not in rows[0]


def map_actors():
    """RETURNS (Dict[int, str]): The pid and process title of each Ray Data map
    actor of predict (Ray titles them ray::MapWorker(MapBatches(BertcatPredictor)),
    with .submit appended while a batch runs)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if PREDICTOR in title and title.startswith("ray::"):
            found[int(pid)] = title.strip()
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the actor processes in /proc")
def test_a_killed_actor_loses_no_row(single_model):
    """SIGKILL an actor while it classifies a batch: Ray restarts it and runs the
    batch again (Ray Data's map actors have max_restarts=-1 and
    max_task_retries=-1), so every row comes out once, in order, with its
    scores."""
    texts = random_texts(4000, seed=2)
    table = pa.table({"id": list(range(len(texts))), "text": texts})
    out = bertcat_ray.predict(blocks(table, 100), single_model, batch_size=10, concurrency=2)
    result = {}
    consumer = threading.Thread(target=lambda: result.update(rows=out.take_all()))
    consumer.start()
    killed, deadline = None, time.monotonic() + 120
    while killed is None and consumer.is_alive() and time.monotonic() < deadline:
        busy = [pid for pid, title in map_actors().items() if title.endswith(".submit")]
        if busy:
            killed = busy[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.01)
    assert killed is not None, "no actor was seen classifying a batch"
    assert consumer.is_alive(), "the run ended before the actor was killed"
    gone_by = time.monotonic() + 10  # SIGKILL takes effect when the kernel gets to it
    while killed in map_actors() and time.monotonic() < gone_by:
        time.sleep(0.01)
    seen_after = set()
    while consumer.is_alive() and time.monotonic() < deadline:
        seen_after |= set(map_actors())
        time.sleep(0.05)
    consumer.join(timeout=max(1.0, deadline - time.monotonic()))
    assert "rows" in result, "the run did not finish"
    rows = result["rows"]
    assert [r["id"] for r in rows] == list(range(len(texts)))  # each row once, in order
    assert_scores(rows, expected_rows(single_model, texts))
    assert killed not in seen_after and seen_after  # a new actor took over


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_cli_engine_ray_reads_a_glob_of_messy_shards(single_model, tmp_path):
    """`predict --engine ray` over a glob of JSONL shards: every record gives one row,
    in order, with its file and line; unreadable records an error and no scores;
    the folder appears complete (no hidden work folder left); a used OUTPUT is
    refused."""
    source = tmp_path / "in"
    source.mkdir()
    texts = random_texts(60, seed=3)
    write_lines(source / "a.jsonl", [json.dumps({"id": f"a{i}", "text": t}) for i, t in enumerate(texts[:20])])
    write_lines(
        source / "b.jsonl",
        [
            json.dumps({"id": "b0", "text": texts[20]}),
            json.dumps({"id": "b1", "text": None}),  # null text
            json.dumps({"id": "b2", "body": "no text field"}),
            "{not json",
            "",  # a blank line: no record
            json.dumps({"id": "b5", "text": 42}),  # not a string
            json.dumps({"id": "b6", "text": texts[21]}),
        ],
    )
    write_lines(
        source / "c.jsonl", [json.dumps({"id": f"c{i}", "text": t, "extra": i}) for i, t in enumerate(texts[22:])]
    )
    write_lines(source / "ignored.txt", ["not matched by the glob"])
    output = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "spacy_bertcat",
        "predict",
        str(single_model),
        str(source / "*.jsonl"),
        str(output),
        "--engine",
        "ray",
        "--batch-size",
        "8",
        "--rows-per-file",
        "16",
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Wrote 64 predictions (4 with an error)" in run.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    shards = sorted(output.iterdir())
    assert len(shards) > 1 and all(p.name.startswith("part-") and p.suffix == ".parquet" for p in shards)
    rows = bertcat_ray.read_output(output).to_pylist()
    ids = [f"a{i}" for i in range(20)] + ["b0", "b1", "b2", None, "b5", "b6"] + [f"c{i}" for i in range(38)]
    assert [r["id"] for r in rows] == ids
    assert [(r["source"], r["line"]) for r in rows[19:27]] == [
        ("a.jsonl", 20),
        ("b.jsonl", 1),
        ("b.jsonl", 2),
        ("b.jsonl", 3),
        ("b.jsonl", 4),
        ("b.jsonl", 6),
        ("b.jsonl", 7),
        ("c.jsonl", 1),
    ]
    errors = {r["id"]: r["error"] for r in rows if r["error"]}
    assert "must be a string, got None" in errors["b1"] and "text field 'text' is missing" in errors["b2"]
    assert "invalid JSON" in errors[None] and "got 42" in errors["b5"]
    assert all(r["cats"] is None and r["predicted_label"] is None for r in rows if r["error"])
    good = [r for r in rows if not r["error"]]
    assert [r["text"] for r in good] == texts
    assert_scores(good, expected_rows(single_model, texts))
    assert rows[-1]["extra"] == 37 and rows[0]["extra"] is None
    # A used OUTPUT is refused before Ray starts.
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert again.returncode == 1 and "BC081" in again.stdout and len(list(output.iterdir())) == len(shards)


def test_predict_files_folder_of_csv_and_parquet_to_jsonl(single_model, tmp_path):
    """A folder of CSV and Parquet files into JSONL shards (in-process, on the
    module's Ray): CSV rows keep their line, Parquet rows their row number."""
    import pyarrow.parquet as pq

    source = tmp_path / "in"
    source.mkdir()
    texts = random_texts(30, seed=4)
    (source / "a.csv").write_text(
        "review,id\n" + "".join(f'"{t}",{i}\n' for i, t in enumerate(texts[:10])), encoding="utf-8"
    )
    pq.write_table(
        pa.table({"review": texts[10:] + [None], "id": [str(i) for i in range(10, 31)]}), source / "b.parquet"
    )
    result = bertcat_ray.predict_files(
        single_model,
        source,
        tmp_path / "out",
        output_format="jsonl",
        text_column="review",
        batch_size=7,
        keep_text=False,
    )
    assert (result.n_rows, result.n_errors) == (31, 1)
    lines = [
        json.loads(line)
        for p in sorted((tmp_path / "out").iterdir())
        for line in p.read_text(encoding="utf-8").splitlines()
    ]
    assert [r["id"] for r in lines] == [str(i) for i in range(31)]
    assert [(r["source"], r.get("line"), r.get("row")) for r in lines[9:12]] == [
        ("a.csv", 11, None),
        ("b.parquet", None, 1),
        ("b.parquet", None, 2),
    ]
    assert all("review" not in r for r in lines) and lines[-1]["error"] and lines[-1]["cats"] is None
    assert_scores(lines[:-1], expected_rows(single_model, texts))


def test_files_whose_fields_differ_in_type_get_one_schema(single_model, tmp_path):
    """Messy real shards: an id that is a number in one file and a string in
    another, numbers of two types, a field only one file has. Every row comes out
    under one schema (Ray stops the whole run on two blocks whose types clash)."""
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.jsonl").write_text('{"id": 1, "text": "a good film", "n": 1}\n{"id": 2, "text": "bad", "n": 2}\n')
    (source / "b.jsonl").write_text(
        '{"id": "x3", "text": "great", "n": 2.5, "tags": ["a"]}\n{"id": "x4", "text": "awful"}\n'
    )
    result = bertcat_ray.predict_files(single_model, source, tmp_path / "out")
    assert (result.n_rows, result.n_errors) == (4, 0)
    rows = bertcat_ray.read_output(tmp_path / "out").to_pylist()
    assert [r["id"] for r in rows] == ["1", "2", "x3", "x4"]
    assert [r["n"] for r in rows] == [1.0, 2.0, 2.5, None]
    assert [r["tags"] for r in rows] == [None, None, ["a"], None]
    assert all(r["predicted_label"] in ("POS", "NEG") for r in rows)


def test_mixed_values_within_a_file_keep_strings_as_they_are():
    table = bertcat_ray.parse_file(b'{"id": 1, "text": "a"}\n{"id": "x2", "text": "b"}\n', "a.jsonl")
    assert table.column("id").to_pylist() == ["1", "x2"]


def test_predict_table_passes_errors_and_refuses_prediction_columns(single_model):
    """The batch function without Ray: a read error predict_files set stays (the
    record is not classified); an input column named like a prediction field
    (the user's own `error` or `cats`) is refused, not overwritten (BC124)."""
    nlp = spacy.load(single_model)
    table = pa.table(
        {
            "text": ["a great film", "", "bad", "good"],
            "id": [1, 2, 3, 4],
            bertcat_ray.READ_ERROR: [None, None, "unreadable", None],
        }
    )
    out = bertcat_ray.predict_table(nlp, Classifier(nlp), table)
    rows = out.to_pylist()
    assert out.column_names == ["text", "id", "cats", "predicted_label", "prediction_set", "error"]
    assert rows[0]["error"] is None and rows[0]["predicted_label"] in ("POS", "NEG")
    assert rows[1]["predicted_label"] is None and rows[1]["cats"] == {"NEG": 0.5, "POS": 0.5}  # empty text
    assert rows[2]["error"] == "unreadable" and rows[2]["cats"] is None
    assert rows[3]["error"] is None and rows[3]["predicted_label"] in ("POS", "NEG")
    empty = bertcat_ray.predict_table(nlp, Classifier(nlp), table.slice(0, 0))
    assert empty.num_rows == 0 and empty.schema == out.schema
    for name in ("error", "cats"):
        clashing = table.append_column(name, pa.array(["the user's own value"] * 4))
        with pytest.raises(ValueError, match=rf"BC124.*'{name}'.*reserved output field"):
            bertcat_ray.predict_table(nlp, Classifier(nlp), clashing)


def test_bad_settings_fail_before_anything_runs(single_model, tmp_path):
    ds = ray.data.from_items([{"body": "a text"}])
    with pytest.raises(ValueError, match=r"BC073.*'text'.*\['body'\]"):
        bertcat_ray.predict(ds, single_model)
    ds = ray.data.from_items([{"text": "a text"}])
    for setting in (
        dict(batch_size=0),
        dict(batch_size=2.5),
        dict(concurrency=0),
        dict(concurrency=(3, 1)),
        dict(num_gpus=-1),
        dict(num_cpus=0),
    ):
        with pytest.raises(ValueError, match="BC074"):
            bertcat_ray.predict(ds, single_model, **setting)
    with pytest.raises(ValueError, match="BC075.*every node"):
        bertcat_ray.predict(ds, tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="BC075.*config.cfg"):
        bertcat_ray.predict(ds, tmp_path)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("x")
    with pytest.raises(ValueError, match="BC081"):
        bertcat_ray.predict_files(single_model, tmp_path, tmp_path / "used")
    with pytest.raises(ValueError, match="BC043"):
        bertcat_ray.predict_files(single_model, tmp_path / "nothing-*.jsonl", tmp_path / "new")


def test_without_ray_the_package_imports_and_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(ValueError, match=r'BC072.*pip install "spacy-bertcat\[ray\]"'):
        bertcat_ray.import_ray()
    code = "import sys; sys.modules['ray'] = None\nimport spacy_bertcat, spacy_bertcat.predict.ray, spacy_bertcat.cli\nprint('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


# Issue 24: what a user owns is never lost or silently corrupted. Bad input under
# Ray gives coded errors (before Ray starts where it can be known) or error rows.


def rows_by_place(folder):
    return {(r["source"], r.get("line"), r.get("row")): r for r in bertcat_ray.read_output(folder).to_pylist()}


def test_undecodable_and_damaged_files_become_error_rows(single_model, tmp_path):
    """A latin-1 line among UTF-8 files, a cp1252 CSV record, a UTF-16 file, a
    lone surrogate escape, a damaged Parquet file and a Parquet file with
    invalid UTF-8: each undecodable record is one error row (with its file and
    line, naming the encoding and the fix), a file that cannot be read at all
    one, and the other records of the same files are classified."""
    import pyarrow.parquet as pq

    source = tmp_path / "in"
    source.mkdir()
    write_lines(source / "a.jsonl", [json.dumps({"id": f"a{i}", "text": "a great film"}) for i in range(3)])
    (source / "b.jsonl").write_bytes(
        json.dumps({"id": "b1", "text": "café au lait"}, ensure_ascii=False).encode("latin-1")
        + b"\n"
        + json.dumps({"id": "b2", "text": "bad"}).encode()
        + b"\n"
        + b'{"id": "b3", "text": "\\udc80 half a pair"}\n'
    )
    (source / "c.csv").write_bytes('id,text\nc1,fine\nc2,"a naive\nmov\u00efe"\nc3,good\n'.encode("cp1252"))
    (source / "d.txt").write_bytes("a great film\nbad\n".encode("utf-16"))
    (source / "e.parquet").write_bytes(b"PAR1 not really parquet")
    invalid = pa.array([b"good", b"caf\xe9"]).view(pa.string())  # a writer that did not check
    pq.write_table(pa.table({"id": ["f1", "f2"], "text": invalid}), source / "f.parquet")
    result = bertcat_ray.predict_files(single_model, source, tmp_path / "out", batch_size=4)
    rows = rows_by_place(tmp_path / "out")
    assert (result.n_rows, result.n_errors) == (13, 6) and len(rows) == 13
    for key in [("a.jsonl", i, None) for i in (1, 2, 3)] + [("b.jsonl", 2, None), ("c.csv", 2, None)]:
        assert rows[key]["error"] is None and rows[key]["predicted_label"] in ("POS", "NEG"), key
    assert rows[("c.csv", 5, None)]["id"] == "c3" and rows[("f.parquet", None, 1)]["text"] == "good"
    latin = rows[("b.jsonl", 1, None)]
    assert latin["error"].startswith("[BC120] line 1 is not valid UTF-8 text (byte 0xe9")
    assert "--encoding" in latin["error"] and "encoding=" in latin["error"] and latin["cats"] is None
    assert rows[("c.csv", 3, None)]["error"].startswith(
        "[BC120] the record at line 3 is not valid UTF-8 text (byte 0xef at line 4, character 4)"
    )
    assert "UTF-16 byte-order mark" in rows[("d.txt", None, None)]["error"]
    assert "lone surrogate" in rows[("b.jsonl", 3, None)]["error"]
    assert "not a readable Parquet file" in rows[("e.parquet", None, None)]["error"]
    assert "'text' is not valid UTF-8" in rows[("f.parquet", None, 2)]["error"]
    assert all(r["cats"] is None and r["text"] is None for r in rows.values() if r["error"])
    # The encoding reaches the Ray tasks that read the files.
    files = bertcat_ray.resolve_inputs(source / "b.jsonl")
    read = bertcat_ray.read_files(files, encoding="latin-1").take_all()
    assert read[0]["text"] == "café au lait" and read[0][bertcat_ray.READ_ERROR] is None


def test_parse_file_decodes_each_line_in_the_given_encoding():
    cp1252 = "id,text\n1,caf\u00e9 \u2013 ok\n2,plain\n".encode("cp1252")
    rows = bertcat_ray.parse_file(cp1252, "a.csv", encoding="cp1252").to_pylist()
    assert [r["text"] for r in rows] == ["caf\u00e9 \u2013 ok", "plain"]
    assert all(r[bertcat_ray.READ_ERROR] is None for r in rows)
    rows = bertcat_ray.parse_file(cp1252, "a.csv").to_pylist()  # as UTF-8: the record is an error, not a guess
    assert rows[0]["text"] is None and "[BC120] the record at line 2" in rows[0][bertcat_ray.READ_ERROR]
    assert rows[1]["text"] == "plain"
    utf16 = "good\nbad\n".encode("utf-16")
    rows = bertcat_ray.parse_file(utf16, "a.txt", encoding="utf-16").to_pylist()
    assert [r["text"] for r in rows] == ["good", "bad"]
    bom = b"\xef\xbb\xbf" + json.dumps({"text": "x"}).encode()
    assert bertcat_ray.parse_file(bom, "a.jsonl").to_pylist()[0]["text"] == "x"
    header = "id,t\u00e9xt\n1,a\n".encode("latin-1")
    assert "the CSV header (line 1)" in bertcat_ray.parse_file(header, "a.csv").to_pylist()[0][bertcat_ray.READ_ERROR]
    long_field = b'text\nok\n"' + b"x" * 200_000 + b'"\n'
    rows = bertcat_ray.parse_file(long_field, "a.csv").to_pylist()
    assert rows[0]["text"] == "ok" and "the rest of the file (after line 2)" in rows[1][bertcat_ray.READ_ERROR]
    with pytest.raises(ValueError, match="BC074.*encoding=no-such-codec"):
        bertcat_ray.check_encoding("no-such-codec")
    with pytest.raises(ValueError, match="BC074.*encoding=base64"):
        bertcat_ray.check_encoding("base64")


def damaged_copy(model, tmp_path, name):
    import shutil

    copy = tmp_path / name
    shutil.copytree(model, copy)
    return copy


def test_a_damaged_pipeline_folder_is_refused_before_any_actor_starts(single_model, tmp_path):
    """What spacy.load would fail on is found from the folder on the driver in
    milliseconds (no load): a component's deleted or empty model file, no
    meta.json or tokenizer, a config that does not parse, a component that is
    not in the pipeline."""
    cases = {
        "no-model": (
            lambda p: (p / "bertcat" / "model").unlink(),
            r"bertcat/model, a file of the component 'bertcat', is missing",
        ),
        "empty-model": (lambda p: (p / "bertcat" / "model").write_bytes(b""), r"bertcat/model.*is empty"),
        "no-cfg": (lambda p: (p / "bertcat" / "cfg").unlink(), r"bertcat/cfg.*is missing"),
        "no-meta": (lambda p: (p / "meta.json").unlink(), r"meta.json.*is missing"),
        "no-tokenizer": (lambda p: (p / "tokenizer").unlink(), r"tokenizer.*is missing"),
        "bad-config": (lambda p: (p / "config.cfg").write_text("[nlp\nlang = "), r"config.cfg cannot be parsed"),
    }
    for name, (damage, message) in cases.items():
        path = damaged_copy(single_model, tmp_path, name)
        damage(path)
        with pytest.raises(ValueError, match=rf"BC075.*{message}"):
            bertcat_ray.resolve_model(path)
    start = time.perf_counter()
    assert bertcat_ray.resolve_model(single_model) == str(Path(single_model).resolve())
    assert time.perf_counter() - start < 2  # no load
    with pytest.raises(ValueError, match=r"BC033.*named 'nope'.*\['bertcat'\]"):
        bertcat_ray.resolve_model(single_model, component="nope")
    with pytest.raises(ValueError, match="BC075.*is missing"):
        bertcat_ray.predict_files(tmp_path / "no-model", tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def run_cli(*args, prefix=(), timeout=300):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    command = [*prefix, sys.executable, "-m", "spacy_bertcat", "predict", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


def test_cli_pipeline_that_actors_cannot_load_is_reported_in_a_paragraph(single_model, tmp_path):
    """A pipeline whose model file is damaged (truncated: the folder looks whole)
    fails every actor's load: the run stops with the actor's cause (BC122, the
    component's BC012) in one paragraph, no Ray stack traces, and OUTPUT is not
    created. A deleted file is found before Ray starts (BC075)."""
    damaged = damaged_copy(single_model, tmp_path, "damaged")
    model_file = damaged / "bertcat" / "model"
    model_file.write_bytes(model_file.read_bytes()[:5000])
    write_lines(tmp_path / "in.jsonl", [json.dumps({"text": "a great film"})])
    run = run_cli(damaged, tmp_path / "in.jsonl", tmp_path / "out", "--engine", "ray")
    out = run.stdout + run.stderr
    assert run.returncode == 1, out[-3000:]
    assert "[BC122] A Ray actor could not load the pipeline" in out and "[BC012]" in out, out[-3000:]
    assert "Traceback" not in out and "ActorDiedError" not in out and len(out.splitlines()) < 25, out[-3000:]
    assert not (tmp_path / "out").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    (damaged / "bertcat" / "model").unlink()
    run = run_cli(damaged, tmp_path / "in.jsonl", tmp_path / "out", "--engine", "ray")
    out = run.stdout + run.stderr
    assert run.returncode == 1 and "[BC075]" in out and "bertcat/model" in out, out[-3000:]
    assert "Traceback" not in out and "core_worker" not in out  # Ray never started


def without_root_reading():
    """RETURNS (List[str]): A command prefix under which files of mode 000 cannot
    be read: none for a user other than root; for root, setpriv dropping the
    capabilities that let root read any file (skips where there is no setpriv)."""
    import shutil

    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("as root, files of mode 000 are read; setpriv (to drop that right) is not installed")
    caps = "-dac_override,-dac_read_search"
    prefix = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {probe.stderr.strip()}")
    return prefix


def test_unreadable_input_is_refused_before_ray_starts(tmp_path):
    """A file this user may not read, or a subfolder it may not list (which a
    folder walk would skip in silence), is a coded error naming it (BC123),
    before Ray starts. As root (which reads any file), the check runs in a
    process without root's right to read any file."""
    prefix = without_root_reading()
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write_lines(folder / "a.jsonl", [json.dumps({"text": "ok"})])
    secret = write_lines(folder / "b.jsonl", [json.dumps({"text": "secret"})])
    write_lines(folder / "sub" / "c.jsonl", [json.dumps({"text": "in a folder that cannot be listed"})])
    os.chmod(secret, 0o000)
    os.chmod(folder / "sub", 0o000)
    closed = tmp_path / "closed"  # the input folder itself
    closed.mkdir()
    write_lines(closed / "x.jsonl", [json.dumps({"text": "x"})])
    os.chmod(closed, 0o000)
    try:
        code = (
            "import sys\nfrom spacy_bertcat.predict.ray import resolve_inputs\n"
            "for arg in sys.argv[1:]:\n"
            "    try:\n        resolve_inputs(arg)\n        print('READ', arg)\n"
            "    except ValueError as e:\n        print(e)\n"
        )
        args = [str(folder), str(secret), str(folder / "*.jsonl"), str(closed), str(folder / "a.jsonl")]
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        run = subprocess.run(
            [*prefix, sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
        )
        lines = run.stdout.splitlines()
        assert len(lines) == 5, run.stdout + run.stderr[-2000:]
        assert lines[0].startswith("[BC123] Cannot read input files or folders as ")
        assert f"{folder / 'sub'} (a folder)" in lines[0] and f"{secret} (Permission denied)" in lines[0]
        assert lines[1].startswith("[BC123] Cannot read an input file as ") and str(secret) in lines[1]
        assert str(secret) in lines[2] and "(a folder)" not in lines[2]
        assert lines[3].startswith("[BC123] Cannot read input files or folders") and f"{closed} (a folder)" in lines[3]
        assert lines[4] == f"READ {folder / 'a.jsonl'}"
        # The command says so in a few lines, and Ray never starts.
        run = run_cli("model", folder, tmp_path / "out", "--engine", "ray", prefix=prefix)
        out = run.stdout + run.stderr
        assert run.returncode == 1 and "[BC123]" in out and str(secret) in out, out[-3000:]
        assert "Traceback" not in out and "core_worker" not in out and len(out.splitlines()) < 12, out[-3000:]
    finally:
        os.chmod(folder / "sub", 0o755)
        os.chmod(secret, 0o644)
        os.chmod(closed, 0o755)


def test_input_fields_named_like_output_fields_are_refused(single_model, tmp_path):
    """The user's own `line`, `source`, `error` (or `row`, `cats`, ...) would be
    dropped or overwritten by the rows' own: refused before anything is
    predicted, naming the fields and their files (BC124)."""
    import pyarrow.parquet as pq

    source = tmp_path / "in"
    source.mkdir()
    write_lines(source / "a.jsonl", [json.dumps({"text": "fine", "id": 1})])
    write_lines(source / "b.jsonl", [json.dumps({"text": "x", "line": 7, "source": "crawl-3", "error": "none"})])
    (source / "c.csv").write_text("text,error\nok,\n", encoding="utf-8")
    pq.write_table(pa.table({"text": ["y"], "row": [12]}), source / "d.parquet")
    with pytest.raises(ValueError) as caught:
        bertcat_ray.predict_files(single_model, source, tmp_path / "out")
    message = str(caught.value)
    assert message.startswith(
        "[BC124] The input has the field(s) 'source', 'line', 'row', 'error' named like a reserved output field"
    )
    assert "(in b.jsonl, c.csv, d.parquet)" in message and "'source' to 'input_source'" in message
    assert "source, line, row, cats, predicted_label, predicted_labels, prediction_set, error" in message
    assert not (tmp_path / "out").exists()
    # The text field itself, checked before Ray reads anything.
    with pytest.raises(ValueError, match=r"BC124.*'error'.*--text-field"):
        bertcat_ray.predict_files(single_model, source, tmp_path / "out", text_column="error")
    # A Dataset whose schema is known: refused before any actor starts.
    ds = ray.data.from_items([{"text": "a", "cats": 1}])
    with pytest.raises(ValueError, match=r"BC124.*'cats'.*rename_columns"):
        bertcat_ray.predict(ds, single_model)
