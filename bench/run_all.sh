#!/usr/bin/env bash
# All CPU benchmarks, one after the other on an otherwise idle machine (timings).
# Results: bench/results/*.json and *.md. About 4.5 hours on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1
$PY bench/train_vs_trainer.py --dataset ag_news --train 3000 --test 1000 --steps 300 --batch-size 16 --lr 1e-4 --warmup 30 --max-length 128
for seed in 1 2; do  # AG News over more seeds: bertcat against the grouped Trainer only
  $PY bench/train_vs_trainer.py --dataset ag_news --train 3000 --test 1000 --steps 300 --batch-size 16 --lr 1e-4 --warmup 30 --max-length 128 --seed $seed --variants bertcat,trainer_grouped --name train_vs_trainer_ag_news_seed$seed
done
$PY bench/train_vs_trainer.py --dataset sst2 --train 4800 --test 1821 --steps 300 --batch-size 16 --lr 1e-4 --warmup 30 --max-length 64
$PY bench/predict_vs_pipeline.py --short 512 --long 128  # with the optimized (ONNX Runtime) pipelines
$PY bench/chunking.py --datasets bbc_news,imdb --max-length 128 --max-windows 2 --steps 60 --train 480 --test 150 --test-long 120
$PY bench/chunking.py --datasets imdb --strategies head,head_tail,sliding_mean --max-length 256 --max-windows 2 --max-windows-predict 3 --steps 200 --batch-size 8 --train 1600 --test 400 --test-long 300 --name chunking_imdb_256
$PY bench/finetuning.py --dataset ag_news --sizes 500,2000 --seeds 0,1,2 --steps 64 --test 400 --max-length 64 --strategies full,frozen_bottom_half,gradual_unfreezing,layerwise_decay
$PY bench/finetuning.py --dataset ag_news --sizes 500,2000 --seeds 0,1,2 --steps 64 --test 400 --max-length 64 --strategies full,gradual_unfreezing,layerwise_decay,lora_r8,lora_r16 --name finetuning_lora
$PY bench/finetuning.py --dataset ag_news --sizes 2000 --seeds 0,1,2 --steps 256 --test 400 --max-length 64 --strategies layerwise_decay,lora_r16 --name finetuning_lora_256
$PY bench/multilabel.py --steps 600 --systems shipped_before,default,trainer,svm --name multilabel_reuters
$PY bench/lora_memory.py --steps 32
$PY bench/calibration.py  # trains four models (cached in /tmp/bertcat-calibration), then calibrates and scores them
$PY bench/serving.py      # spacy-bertcat optimize on three of those models: accuracy, speed, memory, size
$PY bench/ray_predict.py --rows 2000 --batch-size 64 --concurrency 1,2  # Ray Data prediction vs nlp.pipe on the same cores, time to first result
$PY bench/distributed_train.py --train 2000 --steps 40 --batch-size 32 --max-length 128  # 1 vs 2 gloo workers, all-reduce time (MiniLM, bert-base)
