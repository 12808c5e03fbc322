# CUDA image of the xtuner-recipe: the stack of requirements/cuda.txt on torch 2.11.0+cu130
# (the build the project's H100/H200 machines run, Python 3.12), in a venv at /opt/venv, and the
# recipe's own package. Same structure as containers/cpu.Dockerfile. No model weights.
#
# NOT BUILT on the project's CPU machines: no NVIDIA base image can be pulled there and the CUDA
# wheels are several GB. It is only linted there (`containers/build.sh lint`). Build it where the
# base image and the indexes are reachable:
#     containers/build.sh cuda                      # or, from the repository root:
#     docker build --network host -f containers/cuda.Dockerfile -t xtuner-recipe:cuda .
# Run it with the NVIDIA container toolkit: docker run --gpus all ... xtuner-recipe:cuda
#
# Base: torch's cu130 wheels bring their own CUDA libraries (nvidia-* packages: cudart, cuBLAS,
# cuDNN, NCCL, ...), so the small "base" flavour of the CUDA 13.0 image (driver glue only) is
# enough; Ubuntu 24.04's python3 is 3.12, the interpreter of the GPU machines. The host needs an
# NVIDIA driver that supports CUDA 13.0 (R580 or newer). For DeepSpeed ops that JIT-compile CUDA
# code (not needed by the recipe's default ZeRO-2 with torch's AdamW) use a "-devel-" base.
#
# The build context (paths relative to the repository root):
#     containers/wheelhouse/cuda/   optional: wheels for an offline build (torch-2.11.0+cu130 and
#                                   everything else); with no torch wheel there, pip downloads from
#                                   TORCH_INDEX_URL (torch, torchvision) and PyPI (the rest)
#     containers/ca-certificates/   optional extra CA certificates (*.crt), see `build.sh --ca-certs`
#     requirements/cuda.txt, pyproject.toml, xtuner_recipe/
# requirements/cuda.txt pins the direct packages only (no lock: the cu130 index is not reachable
# from the machines that lock the CPU set), so transitive versions follow the indexes at build time.

ARG BASE_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04

# ---- os: python3 with venv, CA certificates, the non-root user ------------------------------------
FROM ${BASE_IMAGE} AS os
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG APP_USER=recipe
ARG APP_UID=1000
# g++ and the Python headers: torch/DeepSpeed JIT extensions (C++ parts). 0 leaves them out.
ARG CXX_TOOLCHAIN=1
COPY containers/ca-certificates/ /usr/local/share/ca-certificates/
# Ubuntu 24.04 images ship a user "ubuntu" with uid 1000: it is replaced by APP_USER.
# hadolint ignore=DL3008,SC2086
RUN set -eux; \
    find /usr/local/share/ca-certificates -type f ! -name '*.crt' -delete; \
    pkgs="ca-certificates"; \
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        pkgs="$pkgs python3 python3-venv"; \
        if [ "$CXX_TOOLCHAIN" = 1 ]; then pkgs="$pkgs python3-dev"; fi; \
    fi; \
    if [ "$CXX_TOOLCHAIN" = 1 ]; then pkgs="$pkgs g++"; fi; \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
    apt-get clean; rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log; \
    update-ca-certificates; \
    python3 -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v >= (3, 10) else \
        f"xtuner 0.2.0 needs Python >= 3.10, BASE_IMAGE has {sys.version.split()[0]}")'; \
    if getent passwd "$APP_UID" >/dev/null; then userdel --remove "$(getent passwd "$APP_UID" | cut -d: -f1)"; fi; \
    if getent group "$APP_UID" >/dev/null; then groupdel "$(getent group "$APP_UID" | cut -d: -f1)"; fi; \
    groupadd --gid "$APP_UID" "$APP_USER"; \
    useradd --uid "$APP_UID" --gid "$APP_UID" --create-home --shell /bin/bash "$APP_USER"; \
    install -d -o "$APP_USER" -g "$APP_USER" /workspace

# ---- stack: torch 2.11.0+cu130 and requirements/cuda.txt in /opt/venv -----------------------------
FROM os AS stack
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
ARG TORCH_VERSION=2.11.0+cu130
# torchvision: xtuner's dataset package imports it (train, chat); 0.26 is the release paired
# with torch 2.11.
ARG TORCHVISION_VERSION=0.26.0+cu130
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY requirements/cuda.txt /tmp/req/
COPY containers/wheelhouse/cuda/ /tmp/wheelhouse/
# Order as in requirements/cuda.txt's header: torch first; then the file without xtuner, with
# DS_BUILD_OPS=0 and --no-build-isolation (deepspeed is an sdist); then xtuner --no-deps (its
# metadata pins bitsandbytes 0.45.0, which has no CUDA 13 library; the file pins 0.50.2).
# hadolint ignore=SC3054
RUN set -eux; \
    if compgen -G '/tmp/wheelhouse/torch-*.whl' >/dev/null; then \
        src=(--no-index --find-links /tmp/wheelhouse); \
    else \
        src=(--extra-index-url "$TORCH_INDEX_URL"); \
    fi; \
    python3 -m venv /opt/venv; \
    pip=(/opt/venv/bin/python -m pip install "${src[@]}"); \
    "${pip[@]}" --upgrade pip setuptools wheel; \
    "${pip[@]}" "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"; \
    grep -v -E '^xtuner[=<>~ ]' /tmp/req/cuda.txt >/tmp/req/cuda-deps.txt; \
    xtuner=$(grep -E '^xtuner==' /tmp/req/cuda.txt); \
    DS_BUILD_OPS=0 "${pip[@]}" --no-build-isolation -r /tmp/req/cuda-deps.txt \
        "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"; \
    "${pip[@]}" --no-deps "$xtuner"; \
    /opt/venv/bin/python -c 'import torch; assert torch.version.cuda, torch.__version__'; \
    rm -rf /tmp/wheelhouse /tmp/req /root/.cache

# ---- project: a wheel of the recipe's package ------------------------------------------------------
FROM stack AS project
COPY pyproject.toml /tmp/src/
COPY xtuner_recipe/ /tmp/src/xtuner_recipe/
RUN /opt/venv/bin/python -m pip wheel --no-deps --no-build-isolation --no-index \
        --wheel-dir /tmp/dist /tmp/src

# ---- runtime: the final image ----------------------------------------------------------------------
FROM os AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG APP_UID=1000
# opencv-python's shared libraries (`import mmengine.runner` imports cv2; without them every
# `xtuner train` fails with "libxcb.so.1: cannot open shared object file", seen in the CPU image).
# Ubuntu 24.04 names glib's package libglib2.0-0t64. (Not built here: written, linted.)
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libgl1 libglib2.0-0t64 libsm6 libice6 libx11-6 libxext6 libxcb1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log
COPY --from=stack /opt/venv /opt/venv
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
COPY --from=project /tmp/dist/ /tmp/dist/
RUN python -m pip install --no-deps --no-index /tmp/dist/*.whl && rm -rf /tmp/dist /root/.cache
USER ${APP_UID}:${APP_UID}
WORKDIR /workspace
CMD ["bash"]

ARG BASE_IMAGE
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="xtuner-recipe (CUDA)" \
      org.opencontainers.image.description="Snakemake + XTuner fine-tuning recipe, CUDA stack (torch 2.11.0+cu130, xtuner 0.2.0), no model weights" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# What a run's manifest records as its container (a process cannot see its image's digest).
ENV XTUNER_RECIPE_IMAGE="xtuner-recipe:cuda ${VERSION} ${REVISION}"
