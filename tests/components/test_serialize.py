"""Saving and loading: predictions equal before and after, offline, in a new process."""

import json
import os
import subprocess
import sys

import pytest
import spacy
import srsly

from ..support import MULTI_DATA, SINGLE_DATA, assert_same_cats, assert_same_weights, make_nlp

# Depends on the transformers version: `make test-tf5` runs it under transformers 5 too.
pytestmark = pytest.mark.transformers

TEXTS = ["a great film", "i hate this awful movie", "", "good " * 60]


def trained(name, factory="bertcat", data=SINGLE_DATA, **settings):
    nlp, examples, optimizer = make_nlp(name, factory, data, **settings)
    for _ in range(5):
        nlp.update(examples, sgd=optimizer)
    return nlp


@pytest.mark.parametrize("factory,data", [("bertcat", SINGLE_DATA), ("bertcat_multilabel", MULTI_DATA)])
def test_load_in_new_process_offline(tiny_bert, tmp_path, factory, data):
    nlp = trained(tiny_bert, factory, data, chunking={"@misc": "spacy-bertcat.sliding_window.v1", "stride": 8})
    nlp.to_disk(tmp_path / "pipeline")
    expected = [doc.cats for doc in nlp.pipe(TEXTS)]
    script = (
        "import json, sys, spacy\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "print(json.dumps([d.cats for d in nlp.pipe(json.loads(sys.argv[2]))]))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HOME=str(tmp_path / "no-cache"))
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "pipeline"), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=tmp_path,
    )
    assert_same_cats(json.loads(out.stdout.strip().splitlines()[-1]), expected)


@pytest.mark.filterwarnings("ignore:.*BCW001")
def test_bytes_roundtrip_keeps_settings(tiny_bert):
    nlp = trained(tiny_bert, "bertcat_multilabel", MULTI_DATA)
    pipe = nlp.get_pipe("bertcat_multilabel")
    pipe.set_thresholds({"tech": 0.25})
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("bertcat_multilabel", config={"model": nlp.config["components"]["bertcat_multilabel"]["model"]})
    nlp2.from_bytes(nlp.to_bytes())
    pipe2 = nlp2.get_pipe("bertcat_multilabel")
    assert pipe2.labels == pipe.labels
    assert pipe2.thresholds == pipe.thresholds
    assert_same_weights(pipe, pipe2)
    assert_same_cats([d.cats for d in nlp.pipe(TEXTS)], [d.cats for d in nlp2.pipe(TEXTS)])


def test_disk_roundtrip_is_a_valid_hf_classifier(tiny_bert, tmp_path):
    """The stored config and weights are a Hugging Face classifier with our labels."""
    nlp = trained(tiny_bert)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    hf_model = loaded.get_pipe("bertcat").model.shims[0].hf_model
    assert hf_model.config.id2label == {0: "NEG", 1: "POS"}
    assert type(hf_model).__name__ == "BertForSequenceClassification"


def test_truncated_model_file_gives_clear_error(tiny_bert, tmp_path):
    nlp = trained(tiny_bert)
    nlp.to_disk(tmp_path / "p")
    model_file = tmp_path / "p" / "bertcat" / "model"
    data = model_file.read_bytes()
    model_file.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"BC012.*bertcat[/\\]model"):
        spacy.load(tmp_path / "p")


def test_labels_that_disagree_with_the_head(tiny_bert, tmp_path):
    nlp = trained(tiny_bert)
    nlp.to_disk(tmp_path / "p")
    cfg_file = tmp_path / "p" / "bertcat" / "cfg"
    cfg = srsly.read_json(cfg_file)
    cfg["labels"].append("EXTRA")
    srsly.write_json(cfg_file, cfg)
    with pytest.raises(ValueError, match="BC013"):
        spacy.load(tmp_path / "p")


def test_uninitialized_component_roundtrip(tiny_bert):
    """An untrained pipeline serializes (no weights) and loads without the network."""
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config={"model": {"name": "/does/not/matter"}})
    nlp2 = spacy.blank("en")
    nlp2.add_pipe("bertcat", config={"model": {"name": "/does/not/matter"}})
    nlp2.from_bytes(nlp.to_bytes())
    assert not nlp2.get_pipe("bertcat").is_initialized
