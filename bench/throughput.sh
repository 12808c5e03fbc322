#!/usr/bin/env bash
# Speed and scale on a GPU machine (no network), in one run: the stock tutorial values of
# internlm2_chat_1_8b_qlora_alpaca_e3 against the tuned recipes (recipes/internlm2-chat-1_8b/
# {qlora,lora}_tuned.yaml), for QLoRA and LoRA, on the same packs of the tutorial's data; then the
# tuned settings under torchrun on 1, 2 and 4 GPUs (as many as are visible). Random-init InternLM2 of the 1.8B shape (bench/gpu_setup.sh).
#   bash bench/throughput.sh [options of bench/throughput.py]
# e.g. --packs 128 (tokens per single-GPU run = packs x 2048), --parallel --cores-per-gpu 16 (on a
# 4-GPU machine: the 1- and 2-GPU scaling runs beside the single-GPU ones, each on its own GPUs
# and cores), --deadline 540. Writes $OUT/throughput.md, runs.json, logs.tar.gz.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
MODEL=${MODEL:-/tmp/internlm2-1_8b-random}
RESULTS=${RESULTS:-/tmp/xtuner-recipe-throughput}
source bench/gpu_setup.sh "$MODEL"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} TOKENIZERS_PARALLELISM=false
# BENCH_SECONDS: the whole script's budget, set-up included (a later --deadline wins)
python3 bench/throughput.py --model "$MODEL" --results "$RESULTS" --out "$OUT" \
  --deadline $(( ${BENCH_SECONDS:-560} - SECONDS )) "$@"
