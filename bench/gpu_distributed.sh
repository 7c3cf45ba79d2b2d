#!/usr/bin/env bash
# Data-parallel training on the lent GPU machine (NCCL), after bench/gpu_run.sh's set-up
# (wheels in .whl, data samples and the MiniLM tokenizer in .gpudata, both carried):
#   bash bench/gpu_distributed.sh        (results in $OUT)
# One GPU runs one NCCL worker (NCCL refuses two ranks on one device): that checks the
# NCCL path end to end (process group on the local rank's GPU, weight broadcast,
# bucketed all-reduce, shared evaluation, bf16 autocast) against plain `spacy train`.
# With 2+ GPUs it also runs 2 workers and the exactness and killed-worker tests.
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu_distributed.txt"
[ -d .gpudata/bert-base ] || python3 bench/make_random_bert.py .gpudata/bert-base --tokenizer .gpudata/tokenizer
python3 - <<'PY'
import json, sys
sys.path.insert(0, "bench")
from pathlib import Path
from common import read_jsonl, label_set, to_docbin
train = read_jsonl(Path(".gpudata/ag_news/train.jsonl"), limit=4096)
dev = read_jsonl(Path(".gpudata/ag_news/test.jsonl"), limit=256)
labels = label_set(train, dev)
to_docbin(train, labels, Path("/tmp/train.spacy")); to_docbin(dev, labels, Path("/tmp/dev.spacy"))
PY
GPUS=$(python3 -c "import torch; print(torch.cuda.device_count())")
args=(configs/bertcat.cfg --gpu-id 0 --paths.train /tmp/train.spacy --paths.dev /tmp/dev.spacy
      --components.bertcat.model.name .gpudata/bert-base --components.bertcat.model.max_length 128
      --components.bertcat.model.mixed_precision true --training.max_steps 200 --training.optimizer.learn_rate.total_steps 200
      --training.eval_frequency 100 --training.batcher.size 32)
( time python3 -m spacy train "${args[@]}" --output /tmp/one ) 2>&1 | tail -8 | tee "$OUT/gpu_spacy_train.log"
( time python3 -m torch.distributed.run --standalone --nproc-per-node 1 -m spacy_bertcat train "${args[@]}" --output /tmp/nccl1 ) 2>&1 | tail -8 | tee "$OUT/gpu_nccl_1worker.log"
python3 - <<'PY' 2>&1 | tee -a "$OUT/gpu_nccl_1worker.log"
import spacy, torch
from spacy_bertcat.layers.classifier import get_shim
a, b = (get_shim(spacy.load(p).get_pipe("bertcat").model).model.state_dict() for p in ("/tmp/one/model-last", "/tmp/nccl1/model-last"))
print("largest weight difference, 1 NCCL worker vs spacy train:", max(float((a[k].float() - b[k].float()).abs().max()) for k in a))
PY
if [ "$GPUS" -ge 2 ]; then
  half=(configs/bertcat.cfg "${args[@]:1}" --training.batcher.size 16)
  ( time python3 -m spacy_bertcat train "${half[@]}" --workers 2 --output /tmp/nccl2 ) 2>&1 | tail -8 | tee "$OUT/gpu_nccl_2workers.log"
  timeout 300 python3 -m pytest -q -p no:cacheprovider tests/distributed/test_distributed.py 2>&1 | tail -5 | tee -a "$OUT/gpu_nccl_2workers.log"
fi
ls "$OUT"
