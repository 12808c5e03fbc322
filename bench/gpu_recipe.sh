#!/usr/bin/env bash
# On a GPU machine (no network): install the CUDA pins from wheelhouse/gpu, build a random-init
# InternLM2 of the 1.8B shape, and run the whole recipe on it with the stock QLoRA settings.
#   bash bench/gpu_recipe.sh [override.yaml]    (default bench/gpu_1_8b_qlora.yaml)
# Writes the report, the run's logs and nvidia-smi output to ${OUT:-bench/out}.
set -euo pipefail
cd "$(dirname "$0")/.."
OVERRIDE=${1:-bench/gpu_1_8b_qlora.yaml}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# The rules call `python`; some images only have python3.
if ! command -v python >/dev/null; then
  mkdir -p /tmp/pybin && ln -sf "$(command -v python3)" /tmp/pybin/python && export PATH=/tmp/pybin:$PATH
fi

python3 -c "import xtuner" 2>/dev/null || bash bench/gpu_install.sh > "$OUT/install.log" 2>&1 || { tail -30 "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv"

MODEL=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['model']['path'])" "$OVERRIDE")
SHAPE='{"vocab_size": 92544, "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 8,
        "max_position_embeddings": 32768, "seed": 0}'
start=$(date +%s)
[ -d "$MODEL" ] || python3 -m xtuner_recipe.tiny_model --out "$MODEL" --shape "$SHAPE" \
  --device cuda --dtype bfloat16
echo "model build: $(( $(date +%s) - start )) s"

start=$(date +%s)
set +e
timeout "${RECIPE_TIMEOUT:-540}" python3 -m snakemake --profile profiles/local --configfile "$OVERRIDE" \
  > "$OUT/snakemake.log" 2>&1
rc=$?
set -e
echo "snakemake rc=$rc, $(( $(date +%s) - start )) s"
RESULTS=$(python3 -c "import yaml,sys; c=yaml.safe_load(open(sys.argv[1])); print(c['results_dir'] + '/' + c['run_name'])" "$OVERRIDE")
for f in report/report.md report/report.json report/loss_curve.png logs/train.log logs/merge.log \
         logs/evaluate.log train/final_checkpoint.json config/xtuner_config.diff; do
  [ -f "$RESULTS/$f" ] && cp "$RESULTS/$f" "$OUT/$(echo "$f" | tr / _)"
done
ls -la "$RESULTS" "$RESULTS/merged" "$RESULTS/hf_adapter" > "$OUT/artifacts.txt" 2>&1 || true
grep -E "Iter\(train\)" "$RESULTS/logs/train.log" | tail -3 || true
tail -5 "$OUT/snakemake.log"
exit $rc
