# Sourced by the GPU bench scripts (on the GPU machine, from the repo root): the environment, the
# CUDA pins from wheelhouse/gpu, and a random-init InternLM2 of the 1.8B shape at $1.
#   source bench/gpu_setup.sh MODEL_DIR    (needs $OUT)
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
# The rules call `python`; some images only have python3.
if ! command -v python >/dev/null; then
  mkdir -p /tmp/pybin && ln -sf "$(command -v python3)" /tmp/pybin/python && export PATH=/tmp/pybin:$PATH
fi
python3 -c "import xtuner" 2>/dev/null || bash bench/gpu_install.sh > "$OUT/install.log" 2>&1 \
  || { tail -30 "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.csv"
if [ ! -d "$1" ]; then
  start=$(date +%s)
  python3 -m xtuner_recipe.tiny_model --out "$1" --shape bench/internlm2_1_8b_shape.json \
    --device cuda --dtype bfloat16
  echo "model build: $(( $(date +%s) - start )) s"
fi
