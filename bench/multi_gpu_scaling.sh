#!/usr/bin/env bash
# Scaling of profiles/multi-gpu on one machine: the recipe's train rule (torchrun, DeepSpeed
# ZeRO-2, stock QLoRA settings of internlm2_chat_1_8b_qlora_alpaca_e3, 2048-token packs, batch 1
# per GPU) on a random-init 1.8B-shape InternLM2, for 1, 2 and 4 GPUs (as many as are visible).
#   bash bench/multi_gpu_scaling.sh [ITERS]
# Prints and writes $OUT/scaling.md: s/iter, tokens/s, peak memory, efficiency against 1 GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
ITERS=${1:-60}
OUT=${OUT:-bench/out}
MODEL=/tmp/internlm2-1_8b-random
RESULTS=/tmp/xtuner-recipe-scaling
source bench/gpu_setup.sh "$MODEL"
GPUS=$(nvidia-smi -L | wc -l)
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
for n in 1 2 4; do
  [ "$n" -le "$GPUS" ] || continue
  cat > "$OUT/scaling-$n.yaml" <<YAML
run_name: scaling-${n}gpu
results_dir: $RESULTS
recipe: internlm2-chat-1_8b/qlora
model: {path: $MODEL}
train: {device: cuda, max_iters: $ITERS, save_steps: $ITERS, log_interval: 5}
YAML
  # the target first: --configfile takes every word after it
  NPROC_PER_NODE=$n python3 -m snakemake "$RESULTS/scaling-${n}gpu/train/final_checkpoint.json" \
    --profile profiles/multi-gpu --configfile "$OUT/scaling-$n.yaml" > "$OUT/snakemake-$n.log" 2>&1 \
    || { tail -40 "$RESULTS/scaling-${n}gpu/logs/train.log"; exit 1; }
done
python3 - "$RESULTS" "$GPU_NAME" "$OUT/scaling.md" <<'PY'
import json, sys
from pathlib import Path
from xtuner_recipe.report import tokens_seen
from xtuner_recipe.train import read_scalars
results, gpu, out = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
rows, base = [], None
for n in (1, 2, 4):
    run = results / f"scaling-{n}gpu"
    attempts = sorted((run / "attempts").glob("*")) if (run / "attempts").is_dir() else []
    if not attempts:
        continue
    scalars = read_scalars(attempts[-1])
    times = [s["time"] for s in scalars[2:]]  # drop the warm-up entries
    s_iter = sum(times) / len(times)
    effective = json.loads((run / "build" / "config" / "effective.json").read_text())
    tokens = tokens_seen(1, effective, n) / s_iter  # the report's count, per iteration
    base = base or tokens
    memory = max(s.get("memory", 0) for s in scalars)
    rows.append(f"| {gpu} | {n} | {s_iter:.3f} | {tokens:,.0f} | {memory:,} | {tokens / (n * base):.2f} |")
table = "\n".join(["| GPU | GPUs | s/iter | tokens/s | peak MB per GPU | efficiency |",
                   "|---|---|---|---|---|---|", *rows])
Path(out).write_text(table + "\n")
print(table)
PY
