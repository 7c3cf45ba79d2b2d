"""The CLI (python -m spacy_bertcat ...) on tiny random models and small data."""

import json

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from typer.testing import CliRunner

from spacy_bertcat.cli import app
from spacy_bertcat.data.records import read_docbin
from spacy_bertcat.evaluation.thresholds import find_thresholds

from ..support import MULTI_DATA, SINGLE_DATA, train_tiny

runner = CliRunner()

TOPICS = {
    "sport": "the team won the match and the goal was great",
    "business": "the bank profit and market shares",
    "tech": "a new phone and computer software on the internet",
}


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    return result


def train_pipeline(name, factory, data, path, steps=30):
    train_tiny(name, factory, data, steps, learn_rate=3e-3).to_disk(path)
    return path


@pytest.fixture(scope="module")
def single_pipeline(tiny_bert, tmp_path_factory):
    return train_pipeline(tiny_bert, "bertcat", SINGLE_DATA, tmp_path_factory.mktemp("single") / "pipeline")


@pytest.fixture(scope="module")
def multi_pipeline(tiny_bert, tmp_path_factory):
    data = MULTI_DATA[:3] + [("the goal and the game", {"sport": 1.0, "business": 0.0, "tech": 0.0})]
    return train_pipeline(tiny_bert, "bertcat_multilabel", data, tmp_path_factory.mktemp("multi") / "pipeline", steps=8)


def topic_rows(n_per_label=10):
    rows = []
    for label, text in TOPICS.items():
        rows += [{"text": f"{text} {i}", "label": label, "id": f"{label}-{i}"} for i in range(n_per_label)]
    return rows


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def single_rows():
    return [{"text": text, "label": max(cats, key=cats.get)} for text, cats in SINGLE_DATA] * 3


def multi_rows():
    rows = [
        {"text": "the team won the match and the market was good", "labels": ["sport", "business"]},
        {"text": "the bank profit and shares", "labels": ["business"]},
        {"text": "a new phone and computer software", "labels": ["tech"]},
        {"text": "the game and the goal", "labels": ["sport"]},
        {"text": "the internet and a computer game", "labels": ["tech", "sport"]},
        {"text": "market shares of a phone", "labels": ["business", "tech"]},
    ]
    return rows * 2


# convert


def test_convert_split(tmp_path):
    source = write_jsonl(tmp_path / "topics.jsonl", topic_rows(10))
    result = invoke("convert", source, tmp_path / "corpus", "--split", "0.6,0.2,0.2", "--seed", "3")
    assert result.exit_code == 0, result.output
    nlp = spacy.blank("en")
    parts = {name: read_docbin(tmp_path / "corpus" / f"{name}.spacy", nlp) for name in ("train", "dev", "test")}
    assert {name: len(docs) for name, docs in parts.items()} == {"train": 18, "dev": 6, "test": 6}
    for docs, share in ((parts["train"], 0.6), (parts["dev"], 0.2), (parts["test"], 0.2)):
        for label in TOPICS:
            assert sum(doc.cats[label] for doc in docs) == share * 10
            assert all(set(doc.cats) == set(TOPICS) for doc in docs)
    assert sorted(doc.text for docs in parts.values() for doc in docs) == sorted(r["text"] for r in topic_rows(10))
    # The same seed gives the same files; another seed another split.
    invoke("convert", source, tmp_path / "again", "--split", "0.6,0.2,0.2", "--seed", "3")
    invoke("convert", source, tmp_path / "other", "--split", "0.6,0.2,0.2", "--seed", "4")
    texts = {
        d: [doc.text for doc in read_docbin(tmp_path / d / "test.spacy", nlp)] for d in ("corpus", "again", "other")
    }
    assert texts["corpus"] == texts["again"] != texts["other"]


def test_convert_without_split_and_label_variants(tmp_path):
    csv_path = tmp_path / "news.csv"
    csv_path.write_text(
        'body,tags\n"goal, match",sport|business\nphone,tech\n"bank, shares",business\n', encoding="utf-8"
    )
    result = invoke(
        "convert", csv_path, tmp_path / "out", "--text-field", "body", "--label-field", "tags", "--multilabel"
    )
    assert result.exit_code == 0, result.output
    docs = read_docbin(tmp_path / "out" / "news.spacy", spacy.blank("en"))
    assert [doc.cats for doc in docs] == [
        {"business": 1.0, "sport": 1.0, "tech": 0.0},
        {"business": 0.0, "sport": 0.0, "tech": 1.0},
        {"business": 1.0, "sport": 0.0, "tech": 0.0},
    ]
    # Without --multilabel, two labels on one row are an error naming the row's line.
    result = invoke("convert", csv_path, tmp_path / "out2", "--text-field", "body", "--label-field", "tags")
    assert result.exit_code == 1
    assert "line 2" in result.output and "exclusive" in result.output


def test_convert_bad_line(tmp_path):
    rows = [json.dumps(r) for r in topic_rows(2)]
    rows.insert(3, '{"text": "broken", "label": ')
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = invoke("convert", path, tmp_path / "out")
    assert result.exit_code == 1
    flat = " ".join(result.output.split())  # the message is wrapped to the terminal
    assert "[BC031]" in flat and "line 4" in flat
    assert not (tmp_path / "out" / "bad.spacy").exists()


def test_convert_rejects_labels_and_bad_split(tmp_path):
    source = write_jsonl(tmp_path / "topics.jsonl", topic_rows(2))
    result = invoke("convert", source, tmp_path / "out", "--labels", "sport,tech")
    assert result.exit_code == 1 and "unknown label(s) ['business']" in result.output
    result = invoke("convert", source, tmp_path / "out", "--split", "0.9,0.2")
    assert result.exit_code == 1 and "BC036" in result.output
    result = invoke("convert", source, tmp_path / "out", "--split", "0.98,0.01,0.01")
    assert result.exit_code == 1 and "BC038" in result.output


# predict


def assert_cats_close(cats_a, cats_b):
    assert [sorted(c) for c in cats_a] == [sorted(c) for c in cats_b]
    numpy.testing.assert_allclose(
        [[c[k] for k in sorted(c)] for c in cats_a], [[c[k] for k in sorted(c)] for c in cats_b], rtol=1e-5, atol=1e-6
    )


def test_predict_jsonl_matches_nlp_pipe(single_pipeline, tmp_path):
    rows = [{"text": text, "id": i, "label": "kept"} for i, (text, _) in enumerate(SINGLE_DATA * 3)]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    result = invoke("predict", single_pipeline, source, tmp_path / "out.jsonl", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    nlp = spacy.load(single_pipeline)
    expected = [doc.cats for doc in nlp.pipe([r["text"] for r in rows])]
    assert [(o["id"], o["text"], o["label"]) for o in out] == [(r["id"], r["text"], r["label"]) for r in rows]
    assert_cats_close([o["cats"] for o in out], expected)
    assert [o["predicted_label"] for o in out] == [max(c, key=c.get) for c in expected]


def test_predict_text_and_csv(single_pipeline, tmp_path):
    texts = [text for text, _ in SINGLE_DATA]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n\n", encoding="utf-8")
    result = invoke("predict", single_pipeline, tmp_path / "in.txt", tmp_path / "a.jsonl", "--drop-text")
    assert result.exit_code == 0, result.output
    out_txt = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert [o["line"] for o in out_txt] == [1, 2, 3, 4, 5]  # the blank line too
    assert all("text" not in o and set(o["cats"]) == {"POS", "NEG"} for o in out_txt)
    assert out_txt[-1]["predicted_label"] is None and out_txt[-1]["cats"] == {"POS": 0.5, "NEG": 0.5}
    out_txt = out_txt[:4]
    (tmp_path / "in.csv").write_text("review\n" + "\n".join(f'"{t}"' for t in texts) + "\n", encoding="utf-8")
    result = invoke("predict", single_pipeline, tmp_path / "in.csv", tmp_path / "b.jsonl", "--text-field", "review")
    assert result.exit_code == 0, result.output
    out_csv = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [o["review"] for o in out_csv] == texts
    assert_cats_close([o["cats"] for o in out_csv], [o["cats"] for o in out_txt])


def test_predict_multilabel_uses_thresholds(multi_pipeline, tmp_path):
    nlp = spacy.load(multi_pipeline)
    pipe = nlp.get_pipe("bertcat_multilabel")
    text = "the team won the match"
    cats = nlp(text).cats
    # Put one label just under its score and one just above: the decision follows.
    pipe.set_thresholds({"sport": max(cats["sport"] - 1e-3, 1e-4), "tech": min(cats["tech"] + 1e-3, 0.9999)})
    nlp.to_disk(tmp_path / "tuned")
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": text}])
    result = invoke("predict", tmp_path / "tuned", source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    (out,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert "sport" in out["predicted_labels"] and "tech" not in out["predicted_labels"]


def test_predict_keeps_every_row_in_line(single_pipeline, tmp_path):
    """Empty texts get the defined result (and no label), unreadable records an
    error row: one output row per input record, in order, nothing aborted."""
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"text": "fine", "id": "a"}),
                json.dumps({"text": "  ", "id": "b"}),
                "{not json",
                json.dumps({"body": "no text field"}),
                "",
                json.dumps({"text": "a great film", "id": "c"}),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    result = invoke("predict", single_pipeline, source, tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    flat = " ".join(result.output.split())
    assert "1 record(s) had empty text" in flat and "[BCW020] 2 of 5 record(s)" in flat and "line 3" in flat
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 6]
    assert [o.get("id") for o in out] == ["a", "b", None, None, "c"]
    assert out[1]["cats"] == {"POS": 0.5, "NEG": 0.5} and out[1]["predicted_label"] is None
    assert "invalid JSON" in out[2]["error"] and "cats" not in out[2]
    assert "text field 'text' is missing" in out[3]["error"] and out[3]["body"] == "no text field"
    assert out[4]["predicted_label"] in ("POS", "NEG") and not (tmp_path / "out.jsonl.partial").exists()


# evaluate


def gold_spacy(path, rows, labels):
    nlp = spacy.blank("en")
    doc_bin = DocBin(store_user_data=True)
    for row in rows:
        doc = nlp.make_doc(row["text"])
        positives = row["labels"] if "labels" in row else [row["label"]]
        doc.cats = {label: float(label in positives) for label in labels}
        doc_bin.add(doc)
    doc_bin.to_disk(path)
    return path


def spacy_scores(model_path, data_path):
    nlp = spacy.load(model_path)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in read_docbin(data_path, nlp)]
    return nlp.evaluate(examples)


def assert_matches_spacy(report, scores):
    s = report["summary"]
    for ours, theirs in (
        ("micro_p", "cats_micro_p"),
        ("micro_r", "cats_micro_r"),
        ("micro_f", "cats_micro_f"),
        ("macro_p", "cats_macro_p"),
        ("macro_r", "cats_macro_r"),
        ("macro_f", "cats_macro_f"),
        ("macro_auc", "cats_macro_auc"),
    ):
        assert s[ours] == pytest.approx(scores[theirs], abs=1e-6), ours
    for label, prf in scores["cats_f_per_type"].items():
        ours = report["per_label"][label]
        assert (ours["p"], ours["r"], ours["f"]) == pytest.approx((prf["p"], prf["r"], prf["f"]), abs=1e-6)
    for label, auc in scores["cats_auc_per_type"].items():
        assert report["per_label"][label]["auc"] == pytest.approx(auc, abs=1e-6)


def test_evaluate_single(single_pipeline, tmp_path):
    data = gold_spacy(tmp_path / "test.spacy", single_rows(), ["POS", "NEG"])
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"name": "Majority class", "summary": {"accuracy": 0.5, "macro_f": 0.33}}))
    result = invoke("evaluate", single_pipeline, data, "--output", tmp_path / "report", "--baseline", baseline)
    assert result.exit_code == 0, result.output
    out = tmp_path / "report"
    for name in ("report.md", "report.json", "confusion_matrix.png", "pr_curves.png"):
        assert (out / name).stat().st_size > 0, name
    for name in ("confusion_matrix.png", "pr_curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["n_docs"] == 12
    assert report["summary"]["accuracy"] == pytest.approx(report["summary"]["micro_f"])
    assert sum(map(sum, report["confusion"]["matrix"])) == 12
    assert report["baseline"]["name"] == "Majority class"
    assert_matches_spacy(report, spacy_scores(single_pipeline, data))
    assert_matches_spacy(report, report["spacy_scores"])
    markdown = (out / "report.md").read_text()
    assert "![confusion matrix](confusion_matrix.png)" in markdown and "| Majority class |" in markdown
    # Errors: wrong predictions only, the most confident first.
    errors = report["errors"]
    assert all(e["gold"] != e["predicted"] for e in errors)
    assert [e["score"] for e in errors] == sorted((e["score"] for e in errors), reverse=True)


def test_evaluate_multilabel_jsonl(multi_pipeline, tmp_path):
    rows = multi_rows()
    source = write_jsonl(tmp_path / "test.jsonl", rows)
    result = invoke("evaluate", multi_pipeline, source, "-o", tmp_path / "report", "--n-errors", "5", "--no-plots")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert not (tmp_path / "report" / "pr_curves.png").exists()
    assert report["exclusive"] is False and len(report["errors"]) <= 5
    assert set(report["confusion"]["per_label"]) == {"business", "sport", "tech"}
    data = gold_spacy(tmp_path / "test.spacy", rows, ["business", "sport", "tech"])
    assert_matches_spacy(report, spacy_scores(multi_pipeline, data))


def test_evaluate_plots_multilabel(multi_pipeline, tmp_path):
    data = gold_spacy(tmp_path / "test.spacy", multi_rows(), ["business", "sport", "tech"])
    result = invoke("evaluate", multi_pipeline, data, "-o", tmp_path / "report")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_unknown_label(single_pipeline, tmp_path):
    source = write_jsonl(tmp_path / "test.jsonl", [{"text": "a film", "label": "MAYBE"}])
    result = invoke("evaluate", single_pipeline, source, "-o", tmp_path / "report")
    assert result.exit_code == 1 and "unknown label(s) ['MAYBE']" in result.output


# find-thresholds


def test_find_thresholds(multi_pipeline, tmp_path):
    data = gold_spacy(tmp_path / "dev.spacy", multi_rows(), ["business", "sport", "tech"])
    before = spacy_scores(multi_pipeline, data)
    result = invoke("find-thresholds", multi_pipeline, data, "--output", tmp_path / "tuned")
    assert result.exit_code == 0, result.output
    nlp = spacy.load(tmp_path / "tuned")
    pipe = nlp.get_pipe("bertcat_multilabel")
    stored = pipe.cfg["thresholds"]
    assert set(stored) == {"business", "sport", "tech"} and all(0 < t < 1 for t in stored.values())
    assert stored != {"business": 0.5, "sport": 0.5, "tech": 0.5}
    # The scorer uses them: on the tuning data, each label's F1 is at least as good.
    after = spacy_scores(tmp_path / "tuned", data)
    for label in stored:
        assert after["cats_f_per_type"][label]["f"] >= before["cats_f_per_type"][label]["f"] - 1e-9
    assert after["cats_micro_f"] >= before["cats_micro_f"]
    # evaluate reports the same numbers with the stored thresholds.
    result = invoke("evaluate", tmp_path / "tuned", data, "-o", tmp_path / "report", "--no-plots")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["thresholds"] == pytest.approx(stored)
    assert_matches_spacy(report, after)
    # The original pipeline is untouched.
    assert spacy.load(multi_pipeline).get_pipe("bertcat_multilabel").cfg["thresholds"] is None


def test_find_thresholds_rare_labels_share_a_threshold(multi_pipeline, tmp_path):
    """Labels with fewer positives than --min-support get no threshold of their own
    (one positive makes any cut below it look perfect): they share the pooled one,
    as in training, and the pipeline records which."""
    data = gold_spacy(tmp_path / "dev.spacy", multi_rows(), ["business", "sport", "tech"])  # 6 positives each
    result = invoke("find-thresholds", multi_pipeline, data, "--min-support", "7", "-o", tmp_path / "tuned")
    assert result.exit_code == 0, result.output
    assert "(global)" in result.output or "(prevalence)" in result.output
    pipe = spacy.load(tmp_path / "tuned").get_pipe("bertcat_multilabel")
    assert pipe.cfg["thresholds_fallback"] == ["business", "sport", "tech"]
    shared = {t for label, t in pipe.cfg["thresholds"].items() if label not in pipe.cfg["thresholds_by_prevalence"]}
    assert len(shared) <= 1
    own = find_thresholds(spacy.load(multi_pipeline), data, min_support=6)  # 6 positives each: their own
    assert {info["tuned"]["source"] for info in own["labels"].values()} == {"own"}


def test_find_thresholds_in_place_keeps_untuned_labels(multi_pipeline, tmp_path):
    nlp = spacy.load(multi_pipeline)
    nlp.to_disk(tmp_path / "copy")
    rows = [r for r in multi_rows() if "tech" not in r["labels"]]  # no tech positives
    data = gold_spacy(tmp_path / "dev.spacy", rows, ["business", "sport", "tech"])
    result = find_thresholds(nlp, data)
    assert result["untuned"] == ["tech"] and result["thresholds"]["tech"] == 0.5
    result = invoke("find-thresholds", tmp_path / "copy", data)
    assert result.exit_code == 0, result.output
    assert "No positive example of 'tech'" in result.output
    stored = spacy.load(tmp_path / "copy").get_pipe("bertcat_multilabel").cfg["thresholds"]
    assert stored["tech"] == 0.5 and set(stored) == {"business", "sport", "tech"}


def test_find_thresholds_rejects_exclusive(single_pipeline, tmp_path):
    data = gold_spacy(tmp_path / "dev.spacy", single_rows(), ["POS", "NEG"])
    result = invoke("find-thresholds", single_pipeline, data, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "BC034" in result.output
    assert not (tmp_path / "out").exists()


def test_help_and_entry_point():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("convert", "evaluate", "predict", "find-thresholds"):
        assert command in result.output
