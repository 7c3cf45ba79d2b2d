#!/usr/bin/env bash
# The GPU checks and speed runs, in one go on the lent GPU machine (see docs/guides/training.md,
# "GPU"): wheels from ../shared/tools/gpu-wheels.sh in .whl, data samples and the
# MiniLM tokenizer files in .gpudata (both carried, git-ignored).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=$PWD:/tmp/site PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, spacy, thinc, cupy, spacy_bertcat; print(torch.__version__, transformers.__version__, spacy.__version__, thinc.__version__, cupy.__version__)" | tee -a "$OUT/gpu.txt"
python3 bench/make_random_bert.py .gpudata/bert-base --tokenizer .gpudata/tokenizer
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -30 | tee "$OUT/gpu_tests.log"
common="--data-dir .gpudata --model .gpudata/bert-base --gpu --bf16 --batch-size 32 --lr 5e-5 --warmup 50 --seed 0"
timeout 170 python3 bench/train_vs_trainer.py --dataset ag_news --train 5968 --test 2048 --steps 500 --max-length 128 $common 2>&1 | tail -12 | tee "$OUT/train_ag_news.log"
timeout 140 python3 bench/train_vs_trainer.py --dataset sst2 --train 5968 --test 1821 --steps 500 --max-length 64 $common 2>&1 | tail -12 | tee "$OUT/train_sst2.log"
timeout 230 python3 bench/predict_vs_pipeline.py --device cuda --data-dir .gpudata --model .gpudata/bert-base --short 2048 --long 451 --scaling 100,1000,5000,20000 2>&1 | tail -30 | tee "$OUT/predict.log"
cp bench/results/*gpu* "$OUT/" 2>/dev/null; ls "$OUT"
