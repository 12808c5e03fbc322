#!/usr/bin/env bash
# The train step at the tutorial's size on one GPU, through the recipe's own rules (data,
# tokenized_data, xtuner_config, train): stock (recipes/internlm2-chat-1_8b/qlora) against tuned
# (qlora_tuned) QLoRA, seeds 42 and 1 of each, the tutorial's data (its 2 pairs, n = 4650), 3 epochs,
# 2048-token packs, on a
# random-init InternLM2 of the 1.8B shape; beside them the default recipe as `make run` picks it
# on a GPU (smollm2-135m-instruct/lora -> lora_gpu) end to end, on random-init weights of
# SmolLM2's shape (the real weights do not fit a device transfer; its config and tokenizer come
# from $SMOLLM2_FILES, the converted model's folder without model.safetensors).
#   bash bench/gpu_train_step.sh      (4 GPUs: one lane per GPU; else RUNS, default "tuned-s42 stock-s42",
#                                      one after the other; RUNS also picks runs on 4 GPUs)
# Each run's files come back as $OUT/<run>.tgz as soon as it ends. Then, on any machine:
#   python bench/train_step.py $OUT      -> the table and the loss comparison
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench/out}
MODEL=${MODEL:-/tmp/internlm2-1_8b-random}
RESULTS=${RESULTS:-/tmp/xtuner-recipe-train-step}
WORK=${WORK:-/tmp/xtuner-recipe-train-step-out}
SMOLLM2_FILES=${SMOLLM2_FILES:-.scratch/smollm2-135m-instruct-files}
source bench/gpu_setup.sh "$MODEL"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8} TOKENIZERS_PARALLELISM=false

# The default recipe's base model where its packaged_model rule would put it: random weights.
random_smollm2() {
  local SMOLLM2=$RESULTS/base_model/packaged/smollm2-135m-instruct
  [ -d "$SMOLLM2" ] && return
  python3 - "$SMOLLM2_FILES" "$SMOLLM2" <<'PY'
import shutil, sys
import torch
from transformers import AutoConfig, AutoModelForCausalLM
files, out = sys.argv[1:]
shutil.copytree(files, out)
torch.manual_seed(0)
model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(files), torch_dtype=torch.float32)
model.save_pretrained(out)
print("random-init SmolLM2 shape:", sum(p.numel() for p in model.parameters()), "parameters")
PY
}

run() {  # run GPU NAME RECIPE SEED [target]: the recipe's rules on one GPU, timed
  local gpu=$1 name=$2 recipe=$3 seed=$4 until=${5:-train}
  local dir=$WORK/$name
  mkdir -p "$dir"
  cat > "$dir/config.yaml" <<YAML
run_name: $name
results_dir: $RESULTS
recipe: $recipe
train: {device: cuda, seed: $seed, log_interval: 1}
YAML
  if [ "$recipe" = smollm2-135m-instruct/lora ]; then
    random_smollm2
    # random weights answer the replay prompts with noise longer than the recipe's max_length
    echo "assistant: {replay_share: 0}" >> "$dir/config.yaml"
  else  # the tutorial's data: its two pairs, n = 4650 (9,302 records, 128 packs per epoch)
    cat >> "$dir/config.yaml" <<YAML
model: {path: $MODEL}
assistant:
  pairs:
  - {input: 请介绍一下你自己, output: "我是{name}的小助手，内在是上海AI实验室书生·浦语的1.8B大模型哦"}
  - {input: 你在实战营做什么, output: "我在这里帮助{name}完成XTuner微调个人小助手的任务"}
YAML
  fi
  local start=$SECONDS
  CUDA_VISIBLE_DEVICES=$gpu timeout "${RUN_TIMEOUT:-500}" python3 -m snakemake --profile profiles/local \
    --nolock --until "$until" --configfile "$dir/config.yaml" > "$dir/snakemake.log" 2>&1 \
    && echo "$name: done in $(( SECONDS - start )) s" || echo "$name: FAILED after $(( SECONDS - start )) s"
  local build=$RESULTS/$name/build
  for f in train/final_checkpoint.json train/scalars.jsonl config/effective.json \
           config/xtuner_config.py data/tokenized/summary.json report/report.md report/report.json \
           logs/tokenized_data.log logs/xtuner_config.log logs/train.log; do
    if [ -f "$build/$f" ]; then cp "$build/$f" "$dir/$(echo "$f" | tr / _)"; fi
  done
  tar czf "$OUT/$name.tgz" -C "$WORK" "$name"
}

declare -A RUN=([stock-s42]="internlm2-chat-1_8b/qlora 42" [stock-s1]="internlm2-chat-1_8b/qlora 1"
                [tuned-s42]="internlm2-chat-1_8b/qlora_tuned 42" [tuned-s1]="internlm2-chat-1_8b/qlora_tuned 1"
                [default-gpu]="smollm2-135m-instruct/lora 42 all")
if [ -n "${RUNS:-}" ] || [ "$(nvidia-smi -L | wc -l)" -lt 4 ]; then
  for name in ${RUNS:-tuned-s42 stock-s42}; do run 0 "$name" ${RUN[$name]}; done
else  # one lane per GPU
  run 0 stock-s42 ${RUN[stock-s42]} &
  run 1 stock-s1 ${RUN[stock-s1]} &
  { run 2 tuned-s42 ${RUN[tuned-s42]}; run 2 tuned-s1 ${RUN[tuned-s1]}; } &
  run 3 default-gpu ${RUN[default-gpu]} &
  wait
fi
python3 -c "import torch, xtuner, transformers; print('torch', torch.__version__, 'xtuner',
  xtuner.__version__, 'transformers', transformers.__version__)" >> "$OUT/gpu.csv"
