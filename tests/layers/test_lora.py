"""LoRA adapters (peft) through `spacy train` and `spacy.load`: what trains, both ways
of saving, loading without peft, and bad settings. Every family's default targets are
checked in test_families.py (test_family_lora)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import spacy
import torch
from confection import ConfigValidationError

from ..support import CONFIGS, SINGLE_DATA, make_examples, make_model_dir, tiny_config, write_corpus

# Depends on the transformers version: `make test-tf5` runs it under transformers 5 too.
pytestmark = pytest.mark.transformers

pytest.importorskip("peft")

LORA = {"@misc": "spacy-bertcat.lora.v1", "r": 4, "alpha": 8.0, "dropout": 0.0}
TEXTS = ["a great film, i love it", "a terrible boring movie", "", "good " * 40]


def lora_nlp(name, **adapter):
    nlp = spacy.blank("en")
    nlp.add_pipe("bertcat", config=tiny_config(name, adapter={**LORA, **adapter}))
    examples = make_examples(nlp, SINGLE_DATA)
    optimizer = nlp.initialize(lambda: examples)
    optimizer.learn_rate = 1e-2
    return nlp, examples, optimizer


def params(nlp):
    return dict(nlp.get_pipe("bertcat").model.shims[0].model.named_parameters())


def run(*args, env=None, cwd=None):
    out = subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(os.environ, HF_HUB_OFFLINE="1", **(env or {})),
    )
    return out


PREDICT = (
    "import json, sys\n"
    "if sys.argv[3] == 'no-peft':\n"
    "    sys.modules['peft'] = None  # import peft fails\n"
    "import spacy\n"
    "nlp = spacy.load(sys.argv[1], config=json.loads(sys.argv[4]) if len(sys.argv) > 4 else {})\n"
    "print(json.dumps([d.cats for d in nlp.pipe(json.loads(sys.argv[2]))]))\n"
)


def predict_in_new_process(path, cwd, peft=True, config=None):
    args = ["-c", PREDICT, path, json.dumps(TEXTS), "peft" if peft else "no-peft"]
    if config is not None:
        args.append(json.dumps(config))
    out = run(*args, cwd=cwd)
    return out


@pytest.mark.parametrize("save", ["merged", "adapter"])
def test_spacy_train_with_lora_and_load_in_a_new_process(tiny_bert, tmp_path, save):
    """`spacy train` trains the adapters and the head only; model-last predicts the
    same in a new process. merged: loads without peft. adapter: a small file that
    loads its base from the model's name."""
    corpus = write_corpus(tmp_path / "train.spacy", SINGLE_DATA, copies=8)
    config = spacy.util.load_config(CONFIGS / "bertcat.cfg")
    config["components"]["bertcat"]["model"]["adapter"] = {**LORA, "save": save}
    config.to_disk(tmp_path / "lora.cfg")
    out = run(
        "-m",
        "spacy",
        "train",
        tmp_path / "lora.cfg",
        "--output",
        tmp_path / "out",
        "--paths.train",
        corpus,
        "--paths.dev",
        corpus,
        "--components.bertcat.model.name",
        tiny_bert,
        "--components.bertcat.model.max_length",
        "32",
        "--training.max_steps",
        "6",
        "--training.optimizer.learn_rate.total_steps",
        "6",
        "--training.eval_frequency",
        "3",
        "--training.batcher.size",
        "8",
        "--training.optimizer.learn_rate.initial_rate",
        "0.01",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    model_last = tmp_path / "out" / "model-last"
    nlp = spacy.load(model_last)
    expected = [doc.cats for doc in nlp.pipe(TEXTS)]
    got = predict_in_new_process(model_last, tmp_path, peft=(save == "adapter"))
    assert got.returncode == 0, got.stderr[-3000:]
    for a, b in zip(json.loads(got.stdout.strip().splitlines()[-1]), expected):
        assert a == pytest.approx(b, abs=1e-5)
    size = sum(f.stat().st_size for f in (model_last / "bertcat").rglob("*"))
    if save == "adapter":
        assert any(".lora_" in n for n in params(nlp))
        full = sum(f.stat().st_size for f in (tmp_path / "out" / "model-best" / "bertcat").rglob("*"))
        assert size == pytest.approx(full, rel=0.01)  # model-best is saved the same way
    else:
        assert not any(".lora_" in n for n in params(nlp))


def test_only_the_adapters_and_the_head_train(tiny_bert):
    nlp, examples, optimizer = lora_nlp(tiny_bert)
    before = {n: p.detach().clone() for n, p in params(nlp).items()}
    trainable = {n for n, p in params(nlp).items() if p.requires_grad}
    encoder_map = nlp.get_pipe("bertcat").encoder_map
    assert trainable == {n for n in before if ".lora_" in n or n in encoder_map.head}
    logits_before = nlp.get_pipe("bertcat").model.predict([nlp.make_doc(t) for t in TEXTS[:2]])
    for _ in range(4):
        nlp.update(examples, sgd=optimizer)
    moved = {n for n, p in params(nlp).items() if not torch.equal(p.detach(), before[n])}
    assert moved and moved <= trainable and any(".lora_B" in n for n in moved)
    assert not (nlp.get_pipe("bertcat").model.predict([nlp.make_doc(t) for t in TEXTS[:2]]) == logits_before).all()


def test_lora_with_per_layer_settings(tiny_bert):
    """freeze_layers freezes the bottom layers' adapters; gradual unfreezing and
    layer-wise decay act on the adapters of each layer; the head keeps its scale."""
    nlp, examples, optimizer = lora_nlp(tiny_bert)
    pipe = nlp.get_pipe("bertcat")
    positions = pipe.encoder_map.positions()
    pipe.set_trainable_top_layers(1)
    trainable = {n for n, p in params(nlp).items() if p.requires_grad and ".lora_" in n}
    assert trainable and {positions[n][1] for n in trainable} == {1}
    pipe.set_trainable_top_layers(None)
    nlp = spacy.blank("en")
    nlp.add_pipe(
        "bertcat", config=tiny_config(tiny_bert, adapter=LORA, freeze_layers=1, layer_lr_decay=0.5, head_lr_scale=3.0)
    )
    nlp.initialize(lambda: make_examples(nlp, SINGLE_DATA))
    pipe = nlp.get_pipe("bertcat")
    positions = pipe.encoder_map.positions()
    trainable = {n for n, p in params(nlp).items() if p.requires_grad and ".lora_" in n}
    assert {positions[n][1] for n in trainable} == {1}
    from spacy_bertcat.layers.param_groups import param_groups

    shim = pipe.model.shims[0]
    scales = {name: g.lr_scale for g in param_groups(shim.model, shim.encoder_map, 3.0, 0.5) for name in g.names}
    layer1 = next(n for n in trainable)
    layer0 = next(n for n in params(nlp) if ".lora_" in n and positions[n][1] == 0)
    assert scales[layer1] == 1.0 and scales[layer0] == 0.5
    assert all(scales[n] == 3.0 for n in pipe.encoder_map.head)


def test_a_loaded_merged_pipeline_trains_a_fresh_adapter(tiny_bert, tmp_path):
    nlp, examples, optimizer = lora_nlp(tiny_bert)
    for _ in range(2):
        nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "p")
    loaded = spacy.load(tmp_path / "p")
    assert not any(".lora_" in n for n in params(loaded))
    merged = {n: p.detach().clone() for n, p in params(loaded).items()}
    loaded.update(make_examples(loaded, SINGLE_DATA), sgd=loaded.create_optimizer())
    after = params(loaded)
    assert any(".lora_" in n for n in after)
    for name, value in merged.items():  # the merged encoder weights stay as they were
        current = (
            after.get(name)
            if name in after
            else after[name.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")]
        )
        if name not in loaded.get_pipe("bertcat").encoder_map.head:
            assert torch.equal(current.detach(), value), name


def test_adapter_on_another_base_is_refused(tiny_bert, tmp_path):
    nlp, examples, optimizer = lora_nlp(tiny_bert, save="adapter")
    nlp.update(examples, sgd=optimizer)
    nlp.to_disk(tmp_path / "p")
    other = make_model_dir(tmp_path / "other", "bert", seed=1)
    out = predict_in_new_process(tmp_path / "p", tmp_path, config={"components.bertcat.model.name": other})
    assert out.returncode != 0 and "BC062" in out.stderr and "not the ones it was trained on" in out.stderr
    out = predict_in_new_process(
        tmp_path / "p", tmp_path, config={"components.bertcat.model.name": str(tmp_path / "missing")}
    )
    assert out.returncode != 0 and "BC062" in out.stderr and "cannot be loaded" in out.stderr
    assert predict_in_new_process(tmp_path / "p", tmp_path).returncode == 0


def test_an_adapter_saved_with_a_relative_base_loads_from_any_working_directory(tiny_bert, tmp_path, monkeypatch):
    """The model's name as given (a relative folder) is saved in the config; the
    adapter-only save also keeps the folder's absolute path, so spacy.load works
    from another working directory, and a base that is gone is a clean BC062."""
    work = tmp_path / "work"
    shutil.copytree(tiny_bert, work / "models" / "base")
    monkeypatch.chdir(work)
    nlp, examples, optimizer = lora_nlp("models/base", save="adapter")
    nlp.update(examples, sgd=optimizer)
    nlp.to_disk(work / "p")
    assert nlp.config["components"]["bertcat"]["model"]["name"] == "models/base"
    expected = [doc.cats for doc in nlp.pipe(TEXTS)]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    got = predict_in_new_process(work / "p", elsewhere)
    assert got.returncode == 0, got.stderr[-3000:]
    for a, b in zip(json.loads(got.stdout.strip().splitlines()[-1]), expected):
        assert a == pytest.approx(b, abs=1e-5)
    shutil.rmtree(work / "models")
    out = predict_in_new_process(work / "p", elsewhere)
    message = " ".join(out.stderr.split())
    assert out.returncode != 0 and "BC062" in message and "'models/base' cannot be loaded" in message, message[-2000:]
    assert str(work / "models" / "base") in message and "NoneType" not in message


def test_bad_lora_settings(tiny_bert):
    with pytest.raises(ConfigValidationError, match="the rank must be at least 1"):
        lora_nlp(tiny_bert, r=0)
    with pytest.raises(ConfigValidationError, match=r"BC060.*\['nope'\].*'query'"):
        lora_nlp(tiny_bert, target_modules=["query", "nope"])
    nlp, _, _ = lora_nlp(tiny_bert, target_modules=["query", "value"])
    targets = nlp.get_pipe("bertcat").model.shims[0].adapter_targets
    assert targets and all(t.endswith((".query", ".value")) for t in targets)


def test_without_peft_a_clear_error(tiny_bert, tmp_path):
    script = (
        "import sys; sys.modules['peft'] = None\n"
        "import json, spacy\n"
        "from tests.support import tiny_config\n"
        "nlp = spacy.blank('en')\n"
        f"nlp.add_pipe('bertcat', config=tiny_config({tiny_bert!r}, adapter={json.dumps(LORA)}))\n"
        "from spacy.training import Example\n"
        "eg = Example.from_dict(nlp.make_doc('a b'), {'cats': {'A': 1.0, 'B': 0.0}})\n"
        "nlp.initialize(lambda: [eg])\n"
    )
    out = run("-c", script, cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert out.returncode != 0 and "BC061" in out.stderr and "spacy-bertcat[lora]" in " ".join(out.stderr.split())
