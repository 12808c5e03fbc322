#!/usr/bin/env bash
# On a GPU machine (no network): install the CUDA pins from wheelhouse/gpu, build a random-init
# InternLM2 of the 1.8B shape, and run the whole recipe on it with the stock QLoRA settings.
#   bash bench/gpu_recipe.sh [override.yaml]    (default bench/gpu_1_8b_qlora.yaml)
# Writes the report, the run's logs and nvidia-smi output to ${OUT:-bench/out}.
set -euo pipefail
cd "$(dirname "$0")/.."
OVERRIDE=${1:-bench/gpu_1_8b_qlora.yaml}
OUT=${OUT:-bench/out}
MODEL=$(python3 -c "import yaml,sys; print(yaml.safe_load(open(sys.argv[1]))['model']['path'])" "$OVERRIDE")
source bench/gpu_setup.sh "$MODEL"

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
