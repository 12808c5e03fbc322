#!/usr/bin/env bash
# Run ON the GPU machine (no network), from the repo root or anywhere:
#   bash bench/gpu_install.sh
# Installs wheelhouse/gpu/ (made by bench/gpu_wheelhouse.sh) into the current python,
# whose torch 2.11.0+cu130 stays as it is: the wheelhouse holds no torch/nvidia package
# and everything goes in with --no-deps, so pip resolves nothing and fetches nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

WH=${WHEELHOUSE:-wheelhouse/gpu}
PY=${PYTHON:-python3}
PIPI=("$PY" -m pip install --no-index --find-links "$WH" --no-deps --no-cache-dir
      --disable-pip-version-check)

shopt -s nullglob
wheels=("$WH"/*.whl)
ds=("$WH"/deepspeed-*.tar.gz)
if [ ${#wheels[@]} -eq 0 ] || [ ${#ds[@]} -ne 1 ]; then
  echo "ERROR: $WH lacks wheels or the deepspeed sdist: run bench/gpu_wheelhouse.sh first" >&2
  exit 1
fi
for w in "${wheels[@]}"; do
  case "$(basename "$w")" in
    torch-*|torchvision-*|torchaudio-*|triton-*|nvidia_*|nvidia-*|cuda_*|cuda-*)
      echo "ERROR: $w would replace the machine's torch stack" >&2; exit 1;;
  esac
done

"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'

echo "== ${#wheels[@]} wheels"
"${PIPI[@]}" "${wheels[@]}"

echo "== deepspeed (sdist, no ops prebuilt)"
DS_BUILD_OPS=0 "${PIPI[@]}" --no-build-isolation "${ds[0]}"

echo "== sanity"
"$PY" - <<'EOF'
import importlib, torch
mods = ["xtuner", "transformers", "tokenizers", "huggingface_hub", "peft", "mmengine",
        "bitsandbytes", "deepspeed", "datasets", "snakemake"]
for m in mods:
    mod = importlib.import_module(m)
    print(f"{m:16s} {getattr(mod, '__version__', '?')}")
print(f"{'torch':16s} {torch.__version__} (cuda {torch.version.cuda}, available {torch.cuda.is_available()})")
import bitsandbytes.cextension as ce
print("bitsandbytes lib:", getattr(ce, "BNB_BACKEND", "?"), getattr(ce.lib, "_name", ce.lib))
EOF

# pip check lists the conflicts that --no-deps lets through. Expected ones:
# xtuner wants bitsandbytes==0.45.0; mmengine wants opencv-python (the image's
# opencv-python-headless provides cv2); some of the image's own packages want the
# newer transformers/huggingface_hub/peft/packaging/fsspec replaced here.
echo "== pip check (informational)"
"$PY" -m pip check --disable-pip-version-check || true
