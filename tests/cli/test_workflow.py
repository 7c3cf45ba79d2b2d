"""The workflow as an experienced spaCy user meets it: deployment under another
user, two classifiers in one pipeline, prediction over messy files, thresholds and
metadata, and messages that name the setting instead of a traceback."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import spacy
from spacy.cli.train import train
from spacy.language import Language
from spacy.training import Example
from typer.testing import CliRunner

from spacy_bertcat.cli import app
from spacy_bertcat.evaluation.evaluate import evaluate
from spacy_bertcat.predict.local import predict_file

from ..support import (
    CONFIGS,
    MULTI_DATA,
    SINGLE_DATA,
    assert_same_cats,
    make_examples,
    make_nlp,
    tiny_config,
    write_corpus,
)

ROOT = Path(__file__).resolve().parents[2]


def invoke(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    result.flat = " ".join(result.output.split())  # messages are wrapped to the terminal's width
    return result


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_bert):
    nlp, examples, optimizer = make_nlp(tiny_bert)
    for _ in range(3):
        nlp.update(examples, sgd=optimizer)
    path = tmp_path_factory.mktemp("saved") / "pipeline"
    nlp.to_disk(path)
    return path


# Deployment under another user


def test_saved_pipeline_loads_for_another_user(tiny_bert):
    """Saved files honour the umask like spaCy's own (the component's were 0600, so
    a web server running as another user could not load the pipeline). As root,
    the pipeline is loaded by user nobody in a fresh process."""
    nlp, examples, optimizer = make_nlp(tiny_bert)
    nlp.update(examples, sgd=optimizer)
    shared = Path(tempfile.mkdtemp(prefix="bertcat-shared-"))
    try:
        os.chmod(shared, 0o755)
        old = os.umask(0o022)
        try:
            nlp.to_disk(shared / "pipeline")
        finally:
            os.umask(old)
        for path in (shared / "pipeline").rglob("*"):
            mode = stat.S_IMODE(path.stat().st_mode)
            assert mode == (0o755 if path.is_dir() else 0o644), (path, oct(mode))
        if os.geteuid() != 0:
            pytest.skip("loading as another user needs root; the file modes are checked")
        texts = [text for text, _ in SINGLE_DATA]
        code = (
            "import json, sys, spacy; nlp = spacy.load(sys.argv[1]); "
            "print(json.dumps([d.cats for d in nlp.pipe(sys.argv[2:])]))"
        )
        try:
            out = subprocess.run(
                [sys.executable, "-c", code, str(shared / "pipeline"), *texts],
                capture_output=True,
                text=True,
                cwd="/",
                user=65534,
                group=65534,
                env=dict(os.environ, HOME="/tmp", HF_HUB_OFFLINE="1"),
            )
        except PermissionError:
            pytest.skip(f"user nobody cannot run {os.path.realpath(sys.executable)} here; the file modes are checked")
        assert out.returncode == 0, out.stderr[-2000:]
        assert_same_cats(json.loads(out.stdout.splitlines()[-1]), [doc.cats for doc in nlp.pipe(texts)])
    finally:
        shutil.rmtree(shared)


# Two classifiers in one pipeline

BOTH = [
    ("a great film, i love this movie", {"POS": 1.0, "NEG": 0.0, "sport": 0.0, "business": 1.0}),
    ("excellent and fun match", {"POS": 1.0, "NEG": 0.0, "sport": 1.0, "business": 0.0}),
    ("a terrible movie, boring and bad", {"POS": 0.0, "NEG": 1.0, "sport": 0.0, "business": 0.0}),
    ("i hate this awful game and the team", {"POS": 0.0, "NEG": 1.0, "sport": 1.0, "business": 0.0}),
]


def test_two_bertcat_components_train_on_one_corpus(tiny_bert):
    """Each component trains on its own labels of a shared corpus (gold labels of
    the other component are ignored, as spaCy's textcat ignores them); each one's
    scores stay in doc._.bertcat_cats; a label no component predicts is an error."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", name="sentiment", config=tiny_config(tiny_bert))
    nlp.add_pipe("bertcat_multilabel", name="topic", config=tiny_config(tiny_bert))
    nlp.config["initialize"]["components"] = {
        "sentiment": {"labels": ["NEG", "POS"]},
        "topic": {"labels": ["business", "sport"]},
    }
    examples = make_examples(nlp, BOTH)
    optimizer = nlp.initialize(lambda: examples)
    losses = {}
    for _ in range(3):
        losses = nlp.update(examples, sgd=optimizer)
    assert losses["sentiment"] > 0 and losses["topic"] > 0
    doc = nlp("a great match")
    assert set(doc.cats) == {"NEG", "POS", "business", "sport"}
    assert set(doc._.bertcat_cats) == {"sentiment", "topic"}
    assert doc._.bertcat_cats["sentiment"] == {k: doc.cats[k] for k in ("NEG", "POS")}
    assert doc._.bertcat_labels["sentiment"] == [max(("NEG", "POS"), key=doc.cats.get)]
    thresholds = nlp.get_pipe("topic").thresholds
    assert doc._.bertcat_labels["topic"] == [k for k in ("business", "sport") if doc.cats[k] >= thresholds[k]]
    assert nlp("   ")._.bertcat_labels == {"sentiment": [], "topic": []}
    stray = make_examples(nlp, [("a film", {"POS": 1.0, "NEG": 0.0, "weather": 1.0})])
    with pytest.raises(ValueError, match="BC005.*weather"):
        nlp.update(stray, sgd=optimizer)


def test_shared_labels_warn_and_the_cli_evaluates_exactly_the_named_component(tiny_bert, tmp_path):
    """bertcat beside spaCy's textcat, both predicting POS/NEG: initialize warns;
    `evaluate -C NAME` and `predict -C NAME` report exactly that component (the
    other doc.cats writer is not run), not whichever wrote last."""
    nlp = spacy.blank("en")
    nlp.add_pipe("textcat", name="baseline")
    nlp.add_pipe("bertcat", name="bert", config=tiny_config(tiny_bert))
    examples = make_examples(nlp, SINGLE_DATA)
    with pytest.warns(UserWarning, match="BCW009.*'bert' and 'baseline'"):
        optimizer = nlp.initialize(lambda: examples)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "p")
    gold = write_corpus(tmp_path / "gold.spacy", SINGLE_DATA, copies=1)
    texts = [text for text, _ in SINGLE_DATA]
    for name in ("baseline", "bert"):
        alone = spacy.load(tmp_path / "p", exclude=[n for n in ("baseline", "bert") if n != name])
        expected = [doc.cats for doc in alone.pipe(texts)]
        result = invoke("evaluate", tmp_path / "p", gold, "-C", name, "--output", tmp_path / name, "--no-plots")
        assert result.exit_code == 0, result.output
        report = json.loads((tmp_path / name / "report.json").read_text())
        assert report["component"] == name
        assert report["summary"] == pytest.approx(evaluate(alone, gold, component=name)["summary"])
        source = tmp_path / "in.txt"
        source.write_text("\n".join(texts) + "\n", encoding="utf-8")
        result = invoke("predict", tmp_path / "p", source, tmp_path / f"{name}.jsonl", "-C", name)
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert_same_cats([r["cats"] for r in rows], [{k: c[k] for k in r["cats"]} for r, c in zip(rows, expected)])
    both = spacy.load(tmp_path / "p")
    assert both("a film").cats != spacy.load(tmp_path / "p", exclude=["bert"])("a film").cats


# predict over real files


def test_predict_to_standard_output(saved, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a great film\n\nbad\n", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "spacy_bertcat", "predict", str(saved), str(source), "-"],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3] and not (tmp_path / "-").exists()
    assert "Wrote 3 predictions" in out.stderr and "\r" not in out.stderr  # no progress bar in a log
    assert "\x1b[" not in out.stdout + out.stderr  # nor colour codes


def test_a_failed_run_leaves_no_complete_looking_output_and_resumes(saved, tmp_path):
    """A run that dies half-way leaves OUTPUT.partial (never OUTPUT); rerunning
    refuses to overwrite it silently; --resume finishes it, and the result equals
    a clean run."""
    rows = [{"text": f"a great film number {i}", "id": i} for i in range(40)]
    rows[25]["text"] = "BOOM"
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    nlp = spacy.load(saved)

    @Language.component("explode_on_boom")
    def explode(doc):
        if doc.text == "BOOM":
            raise RuntimeError("disk full")
        return doc

    nlp.add_pipe("explode_on_boom")
    output = tmp_path / "out.jsonl"
    with pytest.raises(RuntimeError, match="disk full"):
        predict_file(nlp, source, output, batch_size=4, show_progress=False)
    partial = tmp_path / "out.jsonl.partial"
    assert not output.exists() and partial.exists()
    written = partial.read_text().splitlines()
    assert 0 < len(written) <= 25
    with partial.open("a") as file_:
        file_.write('{"line": 99, "cats"')  # a row cut off mid-write
    result = invoke("predict", saved, source, output)
    assert result.exit_code == 1 and "BC044" in result.flat and not output.exists()
    result = invoke("predict", saved, source, output, "--resume")
    assert result.exit_code == 0, result.output
    clean = tmp_path / "clean.jsonl"
    assert invoke("predict", saved, source, clean).exit_code == 0
    resumed = [json.loads(line) for line in output.read_text().splitlines()]
    expected = [json.loads(line) for line in clean.read_text().splitlines()]
    assert [r["line"] for r in resumed] == list(range(1, 41)) and not partial.exists()
    assert_same_cats([r["cats"] for r in resumed], [r["cats"] for r in expected])


def test_resume_checks_that_rows_line_up(saved, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("one\ntwo\nthree\n", encoding="utf-8")
    (tmp_path / "out.jsonl.partial").write_text(json.dumps({"line": 2, "cats": {}}) + "\n", encoding="utf-8")
    result = invoke("predict", saved, source, tmp_path / "out.jsonl", "--resume")
    assert result.exit_code == 1 and "BC045" in result.flat and "was the input changed" in result.flat


# Thresholds and metadata


def test_tuned_thresholds_yield_to_a_new_global_threshold_and_update_meta(tiny_bert, tmp_path):
    """find-thresholds stores per-label thresholds and the scores they give in
    meta.json; spaCy's find-threshold, which varies the global threshold, then sees
    different scores for different values (the tuned ones no longer hide it)."""
    nlp, examples, optimizer = make_nlp(tiny_bert, "bertcat_multilabel", MULTI_DATA, learn_rate=3e-3)
    for _ in range(10):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "p")
    gold = write_corpus(tmp_path / "dev.spacy", MULTI_DATA, copies=2)
    result = invoke("find-thresholds", tmp_path / "p", gold)
    assert result.exit_code == 0, result.output
    tuned = spacy.load(tmp_path / "p")
    pipe = tuned.get_pipe("bertcat_multilabel")
    assert pipe.cfg["thresholds"] and pipe.thresholds != {label: 0.5 for label in pipe.labels}
    dev = [
        Example(tuned.make_doc(doc.text), doc) for doc in spacy.tokens.DocBin().from_disk(gold).get_docs(tuned.vocab)
    ]
    scores = tuned.evaluate(dev)
    assert tuned.meta["performance"]["cats_micro_f"] == pytest.approx(scores["cats_micro_f"])
    pipe.cfg["threshold"] = 0.9  # what spacy find-threshold does for each trial
    assert pipe.thresholds == {label: 0.9 for label in pipe.labels}
    high = tuned.evaluate(dev)["cats_micro_f"]
    pipe.cfg["threshold"] = 0.05
    assert tuned.evaluate(dev)["cats_micro_f"] != high


# Messages


def train_fails(capsys, tmp_path, tiny_bert, **overrides):
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA)
    settings = {
        "paths.train": corpus,
        "paths.dev": corpus,
        "components.bertcat.model.name": tiny_bert,
        "components.bertcat.model.max_length": 32,
        "training.max_steps": 2,
        "training.optimizer.learn_rate.total_steps": 2,
    }
    settings.update(overrides)
    with pytest.raises(SystemExit):
        train(CONFIGS / "bertcat.cfg", tmp_path / "out", overrides=settings)
    out = capsys.readouterr()
    return out.out + out.err


@pytest.mark.parametrize(
    "setting,value,expected",
    [
        ("components.bertcat.model.max_length", 0, "model -> max_length\t[BC022]"),
        ("components.bertcat.model.chunking.aggregation", "avg", "chunking -> aggregation\t[BC015]"),
        (
            "components.bertcat.model.chunking.stride",
            1000,
            "components -> bertcat -> model -> chunking -> stride\t[BC008]",
        ),
        ("components.bertcat.model.amp_dtype", "fp8", "model -> amp_dtype\t[BC019]"),
        ("components.bertcat.model.freeze_layers", 9, "components -> bertcat -> model -> freeze_layers\t[BC053]"),
        ("components.bertcat.model.name", "/no/such/model", "components -> bertcat -> model -> name\t[BC006]"),
        ("components.bertcat.model.hidden_dropout", 1.5, "model -> hidden_dropout\t[BC022]"),
    ],
)
def test_bad_settings_read_like_spacy_config_errors(capsys, tmp_path, tiny_bert, setting, value, expected):
    """`spacy train` prints a bad setting as a config error that names it, in a
    few lines, not a traceback."""
    out = train_fails(capsys, tmp_path, tiny_bert, **{setting: value})
    assert expected in out and "Traceback" not in out
    assert len(out.strip().splitlines()) < 25


def test_no_annotations_says_where_labels_come_from(capsys, tmp_path, tiny_bert):
    corpus = write_corpus(tmp_path / "empty.spacy", [(text, {}) for text, _ in SINGLE_DATA])
    out = train_fails(capsys, tmp_path, tiny_bert, **{"paths.train": corpus, "paths.dev": corpus})
    assert "[BC025]" in out and "none of the 12 training examples has annotations" in out
    assert "[initialize.components.bertcat] labels" in out


def test_schedule_length_differing_from_max_steps_warns(tiny_bert, tmp_path):
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA)
    with pytest.warns(UserWarning, match="BCW008.*ends at step 2000.*max_steps = 2"):
        train(
            CONFIGS / "bertcat.cfg",
            tmp_path / "out",
            overrides={
                "paths.train": corpus,
                "paths.dev": corpus,
                "components.bertcat.model.name": tiny_bert,
                "components.bertcat.model.max_length": 32,
                "training.max_steps": 2,
            },
        )


def test_version_and_baseline_of_another_task(saved, tmp_path):
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.startswith("spacy-bertcat ")
    gold = write_corpus(tmp_path / "gold.spacy", SINGLE_DATA, copies=1)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(
        json.dumps({"name": "other", "labels": ["a", "b", "c"], "exclusive": True, "summary": {"accuracy": 0.9}})
    )
    result = invoke("evaluate", saved, gold, "--baseline", baseline, "--output", tmp_path / "r", "--no-plots")
    assert result.exit_code == 1 and "BC046" in result.flat and "its labels are ['a', 'b', 'c']" in result.flat


def test_precision_recall_picture_hides_nothing():
    """One legend above the panels (none inside them, where weak labels' curves and
    operating points at (0, 0) live), operating points drawn over the axes' edge,
    and a chance line at each label's prevalence."""
    import numpy

    from spacy_bertcat.evaluation.plots import pr_figure
    from spacy_bertcat.evaluation.report import compute_report

    rng = numpy.random.default_rng(0)
    gold = (rng.random((200, 3)) < [0.5, 0.2, 0.05]).astype("f")
    scores = numpy.clip(gold * 0.3 + rng.random((200, 3)) * 0.5, 0, 1)
    scores[:, 2] = 0.01  # a label that is never predicted: operating point at (0, 0)
    report = compute_report(["a", "b", "rare"], gold, scores, exclusive=False, mask=numpy.ones_like(gold))
    figure = pr_figure(report)
    assert len(figure.legends) == 1 and not any(ax.get_legend() for ax in figure.axes)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == [
        "precision-recall curve",
        "operating point (decision threshold)",
        "chance (prevalence)",
    ]
    for ax, label in zip(figure.axes, ("a", "b", "rare")):
        point = [line for line in ax.lines if line.get_marker() == "o"][0]
        assert not point.get_clip_on()
        chance = [line for line in ax.lines if line.get_linestyle() == "--"][0]
        assert chance.get_ydata()[0] == pytest.approx(gold[:, "a b rare".split().index(label)].mean())
    rare_point = [line for line in figure.axes[2].lines if line.get_marker() == "o"][0]
    assert (rare_point.get_xdata()[0], rare_point.get_ydata()[0]) == (0.0, 0.0)


def test_an_unreadable_file_is_not_called_corrupted(saved, monkeypatch):
    """A permission problem says so (and how to fix it); it used to be reported as a
    truncated or corrupted file. (Root reads any file, so the refusal is simulated.)"""
    read_bytes = Path.read_bytes

    def refuse(path):
        if path.name == "cfg" and path.parent.name == "bertcat":
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(ValueError, match="BC048.*not damaged.*chmod -R a\\+rX"):
        spacy.load(saved)
