"""Every spaCy CLI verb that applies to a text classifier, run as a subprocess on
each shipped config with a tiny model: what an experienced spaCy user does with a
bertcat config, checked so that the next regression is caught."""

import json
import os
import stat
import subprocess
import sys
import tarfile

import pytest
import spacy

from .support import CONFIGS, MULTI_DATA, SINGLE_DATA, write_corpus

CASES = {
    "bertcat.cfg": (SINGLE_DATA, "components.bertcat.model.name", ["NEG", "POS"]),
    "bertcat_multilabel.cfg": (MULTI_DATA, "components.bertcat.model.name", ["business", "sport", "tech"]),
    "bbc.cfg": (SINGLE_DATA, "paths.model", ["NEG", "POS"]),
}


def spacy_cli(*args, cwd, expect=0, traceback=False):
    out = subprocess.run(
        [sys.executable, "-m", "spacy", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert out.returncode == expect, f"spacy {' '.join(map(str, args))}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    assert traceback or "Traceback" not in out.stderr, out.stderr[-3000:]
    return out.stdout + out.stderr


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def setup(request, tmp_path_factory, tiny_bert):
    """A corpus big enough for `spacy debug data` (100+ docs), the overrides for
    the tiny model, and a pipeline trained with `spacy train`."""
    config = CONFIGS / request.param
    data, name_key, labels = CASES[request.param]
    root = tmp_path_factory.mktemp(request.param.replace(".", "_"))
    corpus = write_corpus(root / "train.spacy", data, copies=30)
    overrides = [
        "--paths.train",
        corpus,
        "--paths.dev",
        corpus,
        f"--{name_key}",
        tiny_bert,
        "--components.bertcat.model.max_length",
        "32",
        "--training.max_steps",
        "4",
        "--training.optimizer.learn_rate.total_steps",
        "4",
        "--training.eval_frequency",
        "2",
        "--training.batcher.size",
        "8",
    ]
    spacy_cli("train", config, "--output", root / "out", *overrides, cwd=root)
    return config, root, corpus, overrides, labels


def test_init_fill_config_and_debug_config(setup):
    config, root, _, overrides, _ = setup
    spacy_cli("init", "fill-config", config, root / "filled.cfg", cwd=root)
    out = spacy_cli(
        "debug", "config", root / "filled.cfg", *overrides, "--show-functions", "--show-variables", cwd=root
    )
    assert "spacy-bertcat.BertClassifier.v1" in out and "spacy-bertcat.atomic_save.v1" in out


def test_debug_data_and_debug_model(setup):
    config, root, _, overrides, _ = setup
    out = spacy_cli("debug", "data", config, *overrides, cwd=root)
    assert "Pipeline can be initialized with data" in out and "Corpus is loadable" in out
    out = spacy_cli("debug", "model", config, "bertcat", *overrides, cwd=root)
    assert "model looks good" in out


def test_init_labels_then_assemble(setup):
    """`spacy assemble` initializes without data: the labels come from the files
    `spacy init labels` writes, as for spaCy's own components."""
    config, root, _, overrides, labels = setup
    spacy_cli("init", "labels", config, root / "labels", *overrides, cwd=root)
    assert json.loads((root / "labels" / "bertcat.json").read_text()) == labels
    # spaCy's assemble does not catch config errors raised at initialize (as
    # train does), so the message comes after a traceback; it says what to do.
    out = spacy_cli("assemble", config, root / "assembled", *overrides, cwd=root, expect=1, traceback=True)
    assert "[BC025]" in out and "initialized without training data" in out
    spacy_cli(
        "assemble",
        config,
        root / "assembled",
        *overrides,
        "--initialize.components.bertcat",
        json.dumps({"labels": {"@readers": "spacy.read_labels.v1", "path": str(root / "labels" / "bertcat.json")}}),
        cwd=root,
    )
    nlp = spacy.load(root / "assembled")
    assert list(nlp.get_pipe("bertcat").labels) == labels and set(nlp("a film").cats) == set(labels)


def test_evaluate_benchmark_apply(setup):
    config, root, corpus, _, labels = setup
    model = root / "out" / "model-best"
    spacy_cli("evaluate", model, corpus, "--output", root / "metrics.json", cwd=root)
    metrics = json.loads((root / "metrics.json").read_text())
    assert set(metrics["cats_f_per_type"]) == set(labels)
    out = spacy_cli("benchmark", "speed", model, corpus, "--n-batches", "3", "--warmup", "1", cwd=root)
    assert "words/s" in out.lower() or "wps" in out.lower()
    spacy_cli("apply", model, corpus, root / "applied.spacy", cwd=root)
    docs = list(spacy.tokens.DocBin().from_disk(root / "applied.spacy").get_docs(spacy.blank("en").vocab))
    assert docs and all(set(doc.cats) == set(labels) for doc in docs)


def test_find_threshold(setup):
    """spaCy's own threshold search varies the global `threshold`; for a
    multi-label pipeline the scores change with it."""
    config, root, corpus, _, _ = setup
    model = root / "out" / "model-best"
    out = spacy_cli(
        "find-threshold", model, corpus, "bertcat", "threshold", "cats_micro_f", "--n_trials", "5", cwd=root
    )
    if "multilabel" in config.name:
        assert "All scores are identical" not in out


def test_resume_training_and_create_optimizer(setup):
    """The trained pipeline's config resolves outside `spacy train` (its schedule
    holds no ${training.max_steps} reference)."""
    _, root, _, _, _ = setup
    nlp = spacy.load(root / "out" / "model-last")
    optimizer = nlp.resume_training()
    assert optimizer.learn_rate is not None
    assert nlp.create_optimizer() is not None


def test_package_and_file_modes(setup):
    """`spacy package` builds an sdist whose files anyone may read: the
    component's files honour the umask like spaCy's own."""
    _, root, _, _, _ = setup
    model = root / "out" / "model-best"
    for path in model.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IROTH, (path, oct(mode))
    (root / "packages").mkdir(exist_ok=True)
    spacy_cli(
        "package",
        model,
        root / "packages",
        "--name",
        "verbs_test",
        "--version",
        "0.0.1",
        "--build",
        "sdist",
        "--force",
        cwd=root,
    )
    (sdist,) = list((root / "packages").rglob("*.tar.gz"))
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and "/bertcat/" in m.name]
        assert members and all(m.mode & stat.S_IROTH for m in members), [(m.name, oct(m.mode)) for m in members]
