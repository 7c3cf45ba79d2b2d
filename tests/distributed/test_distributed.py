"""Data-parallel `spacy train` (spacy_bertcat/distributed/): workers launched as users
launch them (`spacy-bertcat train --workers N`, `torchrun -m spacy_bertcat train`),
on gloo, with a tiny model, compared with one worker's `spacy train`."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import spacy
import torch

from spacy_bertcat.distributed.allreduce import StepSync
from spacy_bertcat.distributed.loop import merge_batches, shard_batches
from spacy_bertcat.layers.classifier import get_shim

from ..support import CONFIGS, SINGLE_DATA, write_corpus

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
ENV = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
CONFIG = CONFIGS / "bertcat.cfg"


def overrides(corpus, model, batch_size, steps=6, **more):
    settings = {
        "paths.train": corpus,
        "paths.dev": corpus,
        "components.bertcat.model.name": model,
        "components.bertcat.model.max_length": 32,
        "components.bertcat.model.hidden_dropout": 0.0,
        "components.bertcat.model.attention_dropout": 0.0,
        "components.bertcat.model.classifier_dropout": 0.0,
        "training.max_steps": steps,
        "training.optimizer.learn_rate.total_steps": steps,
        "training.optimizer.learn_rate.warmup_steps": 1,
        "training.optimizer.learn_rate.initial_rate": 0.003,
        "training.eval_frequency": 2,
        "training.batcher.size": batch_size,
        "training.batcher.buffer": 4,
        "training.max_epochs": 0,
        **more,
    }
    return [part for key, value in settings.items() for part in (f"--{key}", str(value))]


def run(*args, expect=0, timeout=300):
    out = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=timeout)
    text = out.stdout + out.stderr
    assert out.returncode == expect, text[-4000:]
    return text


def weights(path):
    nlp = spacy.load(path)
    return {k: v.detach().clone() for k, v in get_shim(nlp.get_pipe("bertcat").model).model.state_dict().items()}


def assert_same_weights(a, b, atol=1e-5):  # measured: 1e-7 (float sums in another order)
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= atol, f"largest weight difference {worst}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    # 33 documents: with 2 x 4 per step each epoch ends on a step of one document,
    # which leaves worker 1 an empty share
    root = tmp_path_factory.mktemp("distributed")
    return write_corpus(root / "train.spacy", SINGLE_DATA * 8 + SINGLE_DATA[:1], copies=1)


@pytest.fixture(scope="module")
def one_worker(tmp_path_factory, corpus, tiny_bert):
    """One worker, batch 8: spaCy's own `spacy train`."""
    out = tmp_path_factory.mktemp("one-worker")
    run("-m", "spacy", "train", CONFIG, "--output", out, *overrides(corpus, tiny_bert, 8, steps=10))
    return out


def test_two_workers_train_as_one_with_twice_the_batch(one_worker, corpus, tiny_bert, tmp_path):
    """The issue's exactness test: 2 gloo workers with batch 4 against one worker
    with batch 8, from the same start (epoch boundaries and steps that leave worker
    1 no document included): the same weights after 11 steps, the same
    model-best, and nothing else in the output folder."""
    text = run(
        "-m",
        "spacy_bertcat",
        "train",
        CONFIG,
        "--workers",
        "2",
        "--output",
        tmp_path / "out",
        *overrides(corpus, tiny_bert, 4, steps=10),
    )
    assert "2 workers, 11 steps" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model-best", "model-last"]
    assert_same_weights(weights(tmp_path / "out" / "model-last"), weights(one_worker / "model-last"))
    assert_same_weights(weights(tmp_path / "out" / "model-best"), weights(one_worker / "model-best"))
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_bert).embeddings.word_embeddings.weight.detach()
    trained = weights(one_worker / "model-last")["hf_model.bert.embeddings.word_embeddings.weight"]
    assert float((trained - pretrained).abs().max()) > 1e-3  # not a comparison of two untrained models


SGD = {
    "training.optimizer.beta1": 0.0,
    "training.optimizer.beta2": 0.0,
    "training.optimizer.learn_rate.initial_rate": 0.5,
}


def test_torchrun_with_gradient_accumulation_and_sgd(corpus, tiny_bert, tmp_path):
    """torchrun's own launch (the multi-node command), accumulate_gradient 2, and
    plain SGD, whose step is proportional to the gradient (Adam's hardly depends on
    its scale, so a wrong divisor would go unseen): still one worker's trajectory."""
    run("-m", "spacy", "train", CONFIG, "--output", tmp_path / "one", *overrides(corpus, tiny_bert, 8, steps=10, **SGD))
    run(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "spacy_bertcat",
        "train",
        CONFIG,
        "--output",
        tmp_path / "two",
        *overrides(corpus, tiny_bert, 4, steps=10, **SGD, **{"training.accumulate_gradient": 2}),
    )
    one = weights(tmp_path / "one" / "model-last")
    assert_same_weights(weights(tmp_path / "two" / "model-last"), one)
    from transformers import AutoModel

    pretrained = AutoModel.from_pretrained(tiny_bert).embeddings.word_embeddings.weight.detach()
    assert float((one["hf_model.bert.embeddings.word_embeddings.weight"] - pretrained).abs().max()) > 1e-3


def test_a_killed_worker_stops_the_others_with_a_clear_error(corpus, tiny_bert, tmp_path):
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "spacy_bertcat",
        "train",
        str(CONFIG),
        "--workers",
        "2",
        "--output",
        str(out),
        *overrides(corpus, tiny_bert, 2, steps=100000, **{"training.eval_frequency": 5}),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV, start_new_session=True
    )
    try:
        deadline = time.time() + 120
        while not (out / "model-last").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (out / "model-last").exists(), "training did not start"
        victim = worker_pid(process.pid, rank=1)
        os.kill(victim, signal.SIGKILL)
        killed = time.time()
        text, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:  # never leave a 100,000-step run behind
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 1, text[-3000:]
    assert time.time() - killed < 60
    assert "[BC078]" in text and "worker 1" in text and "SIGKILL" in text and "model-last" in text, text[-3000:]
    assert "Traceback" not in text.split("SIGKILL")[-1]
    nlp = spacy.load(out / "model-last")
    assert set(nlp("a good film").cats) == {"NEG", "POS"}


def worker_pid(launcher: int, rank: int) -> int:
    """The pid of the launcher's worker of `rank` (from its environment)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))
        if ppid == launcher and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    raise AssertionError(f"no worker of rank {rank} under {launcher}")


def test_bad_settings_fail_before_training(corpus, tiny_bert, tmp_path):
    # a trainable component that the workers would not keep in sync
    config = tmp_path / "two.cfg"
    text = CONFIG.read_text().replace('pipeline = ["bertcat"]', 'pipeline = ["textcat","bertcat"]')
    config.write_text(text + '\n[components.textcat]\nfactory = "textcat"\n')
    out = run("-m", "spacy_bertcat", "train", config, "--workers", "2", *overrides(corpus, tiny_bert, 4), expect=1)
    assert "[BC067]" in out and "textcat" in out and "frozen_components" in out
    assert out.count("[BC067]") == 1  # worker 0 reports it, once
    # without a seed, the workers would shuffle differently
    out = run(
        "-m",
        "spacy_bertcat",
        "train",
        CONFIG,
        "--workers",
        "2",
        *overrides(corpus, tiny_bert, 4),
        "--training.seed",
        "null",
        expect=1,
    )
    assert "[BC071]" in out and "seed" in out
    out = run("-m", "spacy_bertcat", "train", CONFIG, "--workers", "0", expect=1)
    assert "[BC092]" in out and "--workers" in out  # the option's own range check
    if not torch.cuda.is_available():
        out = run("-m", "spacy_bertcat", "train", CONFIG, "--workers", "2", "--gpu-id", "0", expect=1)
        assert "[BC071]" in out and "GPU" in out and "Traceback" not in out


class FakeExample:
    def __init__(self, text):
        self.reference = type("Doc", (), {"text": text})()


def test_shards_are_disjoint_and_cover_each_global_batch():
    batches = [(0, [FakeExample(f"{e}-{i}") for i in range(n)]) for e, n in ((0, 5), (0, 1))]
    shares = {rank: list(shard_batches(iter(batches), StepSync(rank, 2, torch.device("cpu")))) for rank in (0, 1)}
    for step, (_, batch) in enumerate(batches):
        texts = [eg.reference.text for rank in (0, 1) for eg in shares[rank][step][1]]
        assert sorted(texts) == sorted(eg.reference.text for eg in batch)
    assert shares[1][1] == (0, [])  # fewer examples than workers: an empty share, still a step


def test_schedule_sizes_merge_consecutive_batches_within_an_epoch():
    batches = [(0, [1]), (0, [2]), (0, [3]), (1, [4]), (1, [5])]
    assert list(merge_batches(iter(batches), 2)) == [(0, [1, 2]), (0, [3]), (1, [4, 5])]


def test_the_launcher_names_the_worker_that_failed_for_its_own_reason():
    from types import SimpleNamespace

    from spacy_bertcat.distributed.launch import WORKER_LOST_EXIT, root_cause

    lost = SimpleNamespace(exitcode=WORKER_LOST_EXIT, timestamp=100)  # stopped because another did
    own = SimpleNamespace(exitcode=1, timestamp=100)
    killed = SimpleNamespace(exitcode=-9, timestamp=101)
    stopped = SimpleNamespace(exitcode=-15, timestamp=99)  # the launcher's SIGTERM
    assert root_cause({0: lost, 1: own})[0] == 1
    assert root_cause({0: stopped, 1: own, 2: killed})[0] == 2
    assert root_cause({0: stopped, 1: own})[0] == 1
    assert root_cause({3: lost, 1: lost})[0] == 1


def test_gpu_workers_put_thinc_and_torch_on_their_local_rank(monkeypatch):
    """No GPU here: the calls a GPU worker makes before training, checked with
    stand-ins (NCCL on the local rank's device, thinc's ops and torch's default
    device there too, as `spacy train --gpu-id` sets them)."""
    import thinc.api
    import torch.distributed as dist

    from spacy_bertcat.distributed.launch import WorkerEnv, init_worker

    calls = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.setdefault("set_device", i))
    monkeypatch.setattr(thinc.api, "require_gpu", lambda i: calls.setdefault("require_gpu", i))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.setdefault("backend", (backend, kw)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    sync = init_worker(WorkerEnv(rank=1, world_size=2, local_rank=1, local_world_size=2), use_gpu=True, timeout=5)
    assert calls["set_device"] == calls["require_gpu"] == 1
    assert calls["backend"][0] == "nccl" and sync.device == torch.device("cuda", 1)
