"""Explanations through their real entry points: a saved pipeline loaded in a fresh
process, `spacy-bertcat explain` as a subprocess, the `evaluate` report's page, the
HTML picture, and an optimized (ONNX Runtime) pipeline."""

import html
import json
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spacy_bertcat.cli import app
from spacy_bertcat.evaluation.evaluate import evaluate, write_report
from spacy_bertcat.explain import explain, render

from ..support import MULTI_DATA, SINGLE_DATA, train_tiny

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def run(*args):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, cwd=ROOT, env=env)


def trained(name, factory="bertcat", data=SINGLE_DATA, steps=4):
    return train_tiny(name, factory, data, steps, learn_rate=1e-3)


@pytest.fixture(scope="module")
def saved(tiny_bert, tmp_path_factory):
    """A saved single-label pipeline, a data file with gold labels, and the pipeline."""
    root = tmp_path_factory.mktemp("explain")
    nlp = trained(tiny_bert)
    nlp.to_disk(root / "model")
    data = root / "data.jsonl"
    rows = [{"text": t, "label": max(c, key=c.get)} for t, c in SINGLE_DATA]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root, nlp


def test_cli_in_a_fresh_process_writes_an_html_page(saved):
    """`spacy-bertcat explain` as a subprocess: spacy.load in a fresh process, then
    the same attributions as here (each token's value is in its title)."""
    root, nlp = saved
    output = root / "explain.html"
    args = ("-m", "spacy_bertcat", "explain", root / "model", root / "data.jsonl")
    out = run(*args, "--output", output, "--limit", 3, "--label", "NEG", "--n-steps", 16)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "Explained 3 document(s) with integrated_gradients" in out.stdout
    page = output.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<figure") == 3
    assert "gold: POS" in page and "predicted:" in page and "rgba(" in page
    first = page.split("<figure")[1]
    shown = [float(v) for v in re.findall(r'title="([-+][0-9.]+)"', first)]
    here = explain(nlp, SINGLE_DATA[0][0], "NEG", n_steps=16).attributions
    assert shown == pytest.approx([v for v in here if v], abs=2e-4)


def test_cli_refuses_bad_input_before_writing(saved):
    root, _ = saved
    output = root / "kept.html"
    output.write_text("mine")
    args = ["explain", str(root / "model"), str(root / "data.jsonl")]
    out = runner.invoke(app, [*args, "--output", str(output)])
    assert out.exit_code == 1 and "BC085" in out.stdout and output.read_text() == "mine"  # never overwritten
    out = runner.invoke(app, [*args, "-o", str(root / "x.html"), "--label", "sport"])
    assert out.exit_code == 1 and "BC130" in out.stdout and not (root / "x.html").exists()
    out = runner.invoke(app, [*args, "-o", str(root / "x.html"), "--method", "lime"])
    assert out.exit_code == 1 and "BC131" in out.stdout and not (root / "x.html").exists()
    out = runner.invoke(app, [*args, "-o", str(root / "occ.html"), "--method", "occlusion", "-n", "1"])
    assert out.exit_code == 0, out.stdout
    assert (root / "occ.html").read_text().count("<figure") == 1


def test_evaluate_report_explains_its_most_confident_errors(saved, tmp_path):
    root, nlp = saved
    report = evaluate(nlp, root / "data.jsonl", n_explained=2)
    items = report["explanations"]["items"]
    assert report["errors"] and len(items) == min(2, len(report["errors"]))
    for item, error in zip(items, report["errors"]):
        assert item["summary"]["label"] == error["predicted"]  # why it chose the wrong class
        assert len(item["attributions"]) == len(item["tokens"])
    paths = write_report(report, tmp_path / "report", title="t", plots=False)
    assert tmp_path / "report" / "explanations.html" in paths
    assert "[explanations.html](explanations.html)" in (tmp_path / "report" / "report.md").read_text()
    page = (tmp_path / "report" / "explanations.html").read_text()
    assert page.count("<figure") == len(items) and html.escape(f"predicted '{items[0]['error']['predicted']}'") in page


def test_multilabel_report_explains_the_wrong_label(tiny_bert, tmp_path):
    nlp = trained(tiny_bert, "bertcat_multilabel", MULTI_DATA, steps=1)
    data = tmp_path / "gold.jsonl"
    data.write_text("".join(json.dumps({"text": t, "cats": c}) + "\n" for t, c in MULTI_DATA))
    report = evaluate(nlp, data, n_explained=3)
    for item, error in zip(report["explanations"]["items"], report["errors"]):
        assert item["summary"]["label"] == error["label"]


def test_html_shades_tokens_in_two_colours(saved):
    _, nlp = saved
    docs = [nlp("a great film <script>"), nlp("a terrible movie")]
    for doc in docs:
        nlp.get_pipe("bertcat").explain(doc, "POS", method="occlusion")
    markup = render(docs, jupyter=False)
    assert markup.count("<figure") == 2 and "&lt;" in markup and "<script" not in markup  # text is escaped
    values = [v for doc in docs for v in doc._.bertcat_attributions["bertcat"]["POS"]]
    assert any(v > 0 for v in values) and any(v < 0 for v in values)
    assert "rgba(30, 100, 200" in markup and "rgba(230, 120, 20" in markup  # for and against
    assert "POS" in markup and f"{docs[0].cats['POS']:.3f}" in markup
    assert render(docs, label="NEG", jupyter=False).count("<figure") == 0
    page = render(docs[0], page=True, jupyter=False)
    assert page.startswith("<!DOCTYPE html>") and page.count("<figure") == 1


def test_jupyter_shows_inline(saved, monkeypatch):
    _, nlp = saved
    shown = []
    display = types.ModuleType("IPython.core.display")
    display.HTML = lambda text: ("html", text)
    display.display = shown.append
    for name, module in (("IPython", types.ModuleType("IPython")), ("IPython.core", types.ModuleType("c"))):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setitem(sys.modules, "IPython.core.display", display)
    doc = nlp("a great film")
    nlp.get_pipe("bertcat").explain(doc, method="gradient_x_input")
    assert render(doc, jupyter=True) is None
    assert shown and shown[0][0] == "html" and "<figure" in shown[0][1]


def test_optimized_pipeline_explains_by_occlusion_only(tiny_bert):
    pytest.importorskip("onnxruntime")
    from spacy_bertcat.serving.optimize import optimize_pipe

    nlp = trained(tiny_bert, steps=1)
    pipe = nlp.get_pipe("bertcat")
    text = "a great film , i love this movie"
    before = pipe.explain(nlp(text), "POS", method="occlusion")
    optimize_pipe(pipe, int8=False)
    doc = nlp(text)
    with pytest.raises(ValueError, match="BC132"):
        pipe.explain(doc, "POS", method="integrated_gradients")
    after = pipe.explain(doc, "POS")  # the default of an optimized pipeline
    assert after.method == "occlusion" and after.score == pytest.approx(doc.cats["POS"], abs=1e-5)
    assert after.attributions == pytest.approx(before.attributions, abs=1e-4)
