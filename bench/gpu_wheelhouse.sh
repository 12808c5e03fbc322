#!/usr/bin/env bash
# Fill wheelhouse/gpu/ with everything the GPU machine lacks for the CUDA recipe
# (requirements/cuda.txt), so that bench/gpu_install.sh can install it there with
# no network.
#
# Target: CPython 3.12, manylinux x86_64, torch 2.11.0+cu130 preinstalled.
# Never put torch, torchvision, triton or any nvidia-*/cuda-* package in here: the
# machine's own torch stays. Every download is --no-deps on an explicit list, so
# nothing pulls them in.
#
# The list holds the pins plus each transitive dependency that the GPU image
# either lacks or has at a version the pins reject (packaging<26 for snakemake,
# fsspec<=2024.9.0 for datasets, huggingface_hub<1 and tokenizers<0.22 for
# transformers). What the image already has at an accepted version (numpy,
# pyarrow, pandas, scipy, scikit-image, matplotlib, opencv-python-headless,
# accelerate, safetensors, sentencepiece, tiktoken, einops, requests, tqdm,
# pyyaml, aiohttp, xxhash, msgpack, ninja, py-cpuinfo, psutil, rich, jinja2,
# wrapt, ...) is left out to keep the folder small.
#
# Usage: bash bench/gpu_wheelhouse.sh     (needs network to PyPI; any python3 >= 3.9)
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${WHEELHOUSE:-wheelhouse/gpu}
PY=${PYTHON:-python3}
mkdir -p "$DEST"

# Plain PyPI only: ignore every pip config file and PIP_* variable of this
# machine (its constraint file, find-links and local indexes).
export PIP_CONFIG_FILE=/dev/null
PIP=("$PY" -m pip --isolated --disable-pip-version-check)

# Binary wheels, fetched for the GPU machine's interpreter, not this one's.
WHEELS=(
  # --- the pins (requirements/cuda.txt) ---
  xtuner==0.2.0                     # installed --no-deps: its metadata pins bitsandbytes==0.45.0
  transformers==4.48.0
  tokenizers==0.21.4
  huggingface_hub==0.36.2
  peft==0.14.0
  mmengine==0.10.6
  bitsandbytes==0.50.2              # trimmed below
  datasets==3.2.0
  snakemake==9.27.1
  loguru==0.7.3                     # xtuner
  openpyxl==3.1.5                   # xtuner
  jsonschema==4.26.0
  # --- overrides of image versions that the pins reject ---
  fsspec==2024.9.0                  # datasets: fsspec<=2024.9.0
  packaging==25.0                   # snakemake: packaging<26
  # --- mmengine ---
  addict==2.4.0
  termcolor==3.3.0
  yapf==0.43.0
  platformdirs==4.14.8              # yapf, snakemake, jupyter_core
  # --- datasets ---
  dill==0.3.8
  multiprocess==0.70.16
  # --- openpyxl ---
  et_xmlfile==2.0.0
  # --- deepspeed (sdist below) ---
  hjson==3.1.0
  pydantic==2.14.4
  pydantic_core==2.50.5
  annotated_types==0.8.0
  typing_inspection==0.4.5
  # --- jsonschema ---
  jsonschema_specifications==2025.9.1
  referencing==0.37.0
  rpds_py==2026.9.1
  # --- snakemake ---
  argparse_dataclass==2.0.0
  conda_inject==1.3.2
  configargparse==1.9.0
  docutils==0.22.4
  dpath==2.2.0
  fastjsonschema==2.22.3
  gitdb==4.0.12
  gitpython==3.2.1
  greenlet==3.5.6
  humanfriendly==10.0
  immutables==0.21
  jupyter_core==5.9.1
  nbformat==5.11.1
  pulp==3.3.2                       # trimmed below
  smart_open==7.7.1
  smmap==5.0.3
  snakemake_interface_common==1.23.0
  snakemake_interface_executor_plugins==9.4.0
  snakemake_interface_logger_plugins==2.1.0
  snakemake_interface_report_plugins==1.3.0
  snakemake_interface_scheduler_plugins==2.0.2
  snakemake_interface_storage_plugins==4.4.1
  sqlalchemy==2.0.58
  sqlmodel==0.0.37
  tenacity==9.2.1
  throttler==1.2.3
  traitlets==5.16.1
  yte==1.9.4
)

# Pure-python packages published as sdists only: built here into py3-none-any wheels.
SDIST_ONLY=(
  transformers-stream-generator==0.0.5   # xtuner
  connection_pool==0.0.3                 # snakemake
)

DEEPSPEED=deepspeed==0.16.2   # kept as its sdist; gpu_install.sh builds it there (DS_BUILD_OPS=0)

echo "== binary wheels for cp312 manylinux x86_64"
"${PIP[@]}" download --only-binary=:all: --no-deps \
  --python-version 3.12 --implementation cp --abi cp312 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$DEST" "${WHEELS[@]}"

echo "== pure-python sdists built into wheels"
for spec in "${SDIST_ONLY[@]}"; do
  name=${spec%%==*}; ver=${spec##*==}
  if ls "$DEST"/"${name//-/_}"-"$ver"-py3-none-any.whl >/dev/null 2>&1; then
    echo "already there: $spec"; continue
  fi
  "${PIP[@]}" wheel --no-deps -w "$DEST" "$spec"
done

echo "== deepspeed sdist"
"${PIP[@]}" download --no-deps --no-binary :all: -d "$DEST" "$DEEPSPEED"

# Drop files from a wheel and their RECORD lines, keeping everything else
# (modes included) as it was, so that pip installs it as usual.
trim_wheel() {
  "$PY" - "$1" "$2" <<'EOF'
import os, re, sys, zipfile
path, drop = sys.argv[1], re.compile(sys.argv[2])
with zipfile.ZipFile(path) as zin:
    infos = zin.infolist()
    gone = [i.filename for i in infos if drop.search(i.filename)]
    if not gone:
        print(f"{os.path.basename(path)}: nothing to trim"); sys.exit(0)
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for i in infos:
            if i.filename in gone:
                continue
            data = zin.read(i.filename)
            if i.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(l for l in lines if l.split(",", 1)[0] not in gone).encode()
            i.compress_type = zipfile.ZIP_DEFLATED
            zout.writestr(i, data)
os.replace(tmp, path)
print(f"{os.path.basename(path)}: dropped {len(gone)} files: " + " ".join(os.path.basename(g) for g in gone))
EOF
}

echo "== trimming"
# bitsandbytes: keep the CPU library and the CUDA 13.0 one, which is the one it loads
# under torch cu130 (the machine's driver 580 tops out at CUDA 13.0, so cuda132 could not
# run there either); drop the CUDA 11/12/13.2, ROCm and XPU builds (~115 MB unpacked).
trim_wheel "$DEST"/bitsandbytes-0.50.2-*.whl \
  '^bitsandbytes/libbitsandbytes_(?!cpu\.so$|cuda130\.so$)[^/]*\.so$'
# pulp: keep only the Linux x86_64 CBC solver binary.
trim_wheel "$DEST"/pulp-3.3.2-*.whl '^pulp/solverdir/cbc/(?!linux/i64/)'

# Guard: nothing that would replace the machine's torch stack.
if ls "$DEST" | grep -iE '^(torch|torchvision|torchaudio|triton|nvidia[-_]|cuda[-_])' ; then
  echo "ERROR: torch/nvidia packages found in $DEST" >&2; exit 1
fi

echo "== $DEST"
ls -l "$DEST" | awk 'NR>1 {printf "%10d  %s\n", $5, $9}'
du -sh "$DEST"
