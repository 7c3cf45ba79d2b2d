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
    assert again.returncode == 1 and "BC076" in again.stdout and len(list(output.iterdir())) == len(shards)


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


def test_predict_table_passes_errors_and_replaces_prediction_columns(single_model):
    """The batch function without Ray: a read error predict_files set stays (the
    record is not classified); input columns named like a prediction field
    (the user's own `error` column too) are replaced, their rows classified."""
    nlp = spacy.load(single_model)
    table = pa.table(
        {
            "text": ["a great film", "", "bad", "good"],
            "cats": [1, 2, 3, 4],
            "error": [None, None, None, "the user's own value"],
            bertcat_ray.READ_ERROR: [None, None, "unreadable", None],
        }
    )
    out = bertcat_ray.predict_table(nlp, Classifier(nlp), table)
    rows = out.to_pylist()
    assert out.column_names == ["text", "cats", "predicted_label", "prediction_set", "error"]
    assert rows[0]["error"] is None and rows[0]["predicted_label"] in ("POS", "NEG")
    assert rows[1]["predicted_label"] is None and rows[1]["cats"] == {"NEG": 0.5, "POS": 0.5}  # empty text
    assert rows[2]["error"] == "unreadable" and rows[2]["cats"] is None
    assert rows[3]["error"] is None and rows[3]["predicted_label"] in ("POS", "NEG")
    empty = bertcat_ray.predict_table(nlp, Classifier(nlp), table.slice(0, 0))
    assert empty.num_rows == 0 and empty.schema == out.schema


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
    with pytest.raises(ValueError, match="BC076"):
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
