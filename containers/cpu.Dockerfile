# CPU image of the xtuner-recipe: Python 3.11, the pinned CPU stack of requirements/cpu.txt
# (torch 2.13.0+cpu, xtuner 0.2.0, transformers, peft, mmengine, deepspeed, snakemake, ...) in a
# venv at /opt/venv, and the recipe's own package. No model weights, no data: mount them.
#
# Build it with the script, which also fills the wheelhouse and prints timings:
#     containers/build.sh wheelhouse && containers/build.sh cpu          # see containers/README.md
# or by hand from the repository root (BuildKit reads containers/cpu.Dockerfile.dockerignore):
#     python3 containers/wheelhouse.py sync
#     docker build --network host -f containers/cpu.Dockerfile -t xtuner-recipe:cpu .
#
# The build context must hold (paths relative to the repository root):
#     containers/wheelhouse/cpu/   every file named in containers/cpu.lock.txt (offline, exact), or
#                                  nothing but .keep: then pip downloads the same locked versions,
#                                  torch from TORCH_INDEX_URL (the usual CPU-wheel index), the rest
#                                  from PyPI; this needs network at build time (--network host)
#     containers/ca-certificates/  optional extra CA certificates (*.crt), e.g. a proxy's that
#                                  intercepts TLS; `build.sh cpu --ca-certs` copies the build host's
#     containers/cpu.lock.txt, requirements/cpu.txt, pyproject.toml, xtuner_recipe/
#
# BASE_IMAGE: any Debian-like image with bash and either a CPython 3.11 (the python:3.11 images) or
# apt and a Debian bookworm archive (python3 there is 3.11): a `debootstrap --variant=minbase
# bookworm` root imported with `docker import` works (`build.sh base` makes one). The wheels are
# cp311, so the interpreter must be 3.11. Only Dockerfile features of the classic builder are used
# (no RUN --mount), so it builds with Debian's docker.io 20.10 without buildx as well as with BuildKit.

ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---- os: the base plus python3 with venv, CA certificates, the non-root user -----------------
FROM ${BASE_IMAGE} AS os
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG APP_USER=recipe
ARG APP_UID=1000
# 1: g++ and the Python headers, which DeepSpeed needs on CPU: every deepspeed.init_distributed()
# JIT-builds its shared-memory add-on (deepspeed_shm_comm). The runtime stage pre-builds it for
# APP_USER. 0: about 300 MB smaller, but `--deepspeed` runs fail on CPU.
ARG CXX_TOOLCHAIN=1
COPY containers/ca-certificates/ /usr/local/share/ca-certificates/
# apt-get installs python3 + python3-venv (+ python3-dev) only when the base lacks a python3 that
# can make venvs (a plain Debian), ca-certificates only when missing, g++ only when asked for.
# hadolint ignore=DL3008,SC2086
RUN set -eux; \
    find /usr/local/share/ca-certificates -type f ! -name '*.crt' -delete; \
    pkgs=""; \
    if ! command -v python3 >/dev/null || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then \
        pkgs="python3 python3-venv"; \
        if [ "$CXX_TOOLCHAIN" = 1 ]; then pkgs="$pkgs python3-dev"; fi; \
    fi; \
    if [ "$CXX_TOOLCHAIN" = 1 ]; then pkgs="$pkgs g++"; fi; \
    if ! command -v update-ca-certificates >/dev/null; then pkgs="$pkgs ca-certificates"; fi; \
    if [ -n "$pkgs" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $pkgs; \
        apt-get clean; rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log; \
    fi; \
    update-ca-certificates; \
    python3 -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v == (3, 11) else \
        f"the stack is pinned for CPython 3.11 (cp311 wheels), BASE_IMAGE has {sys.version.split()[0]}")'; \
    if [ "$CXX_TOOLCHAIN" = 1 ]; then \
        python3 -c 'import os, sysconfig, sys; h = os.path.join(sysconfig.get_paths()["include"], "Python.h"); \
            sys.exit(0 if os.path.exists(h) else f"CXX_TOOLCHAIN=1 needs {h}")'; \
    fi; \
    if getent passwd "$APP_UID" >/dev/null; then userdel --remove "$(getent passwd "$APP_UID" | cut -d: -f1)"; fi; \
    if getent group "$APP_UID" >/dev/null; then groupdel "$(getent group "$APP_UID" | cut -d: -f1)"; fi; \
    groupadd --gid "$APP_UID" "$APP_USER"; \
    useradd --uid "$APP_UID" --gid "$APP_UID" --create-home --shell /bin/bash "$APP_USER"; \
    install -d -o "$APP_USER" -g "$APP_USER" /workspace

# ---- stack: the pinned CPU stack in /opt/venv, from the wheelhouse, offline -----------------
FROM os AS stack
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY containers/cpu.lock.txt requirements/cpu.txt /tmp/req/
COPY containers/wheelhouse/cpu/ /tmp/wheelhouse/
# Order as in requirements/cpu.txt's header: torch alone first; then the file with DS_BUILD_OPS=0
# and --no-build-isolation (deepspeed, transformers-stream-generator and connection-pool are
# sdists, built with the locked setuptools); then xtuner --no-deps. `-c` the lock pins every
# transitive package, so both bases get the same versions. (SHELL is bash: arrays are fine.)
# hadolint ignore=SC3054
RUN set -eux; \
    if compgen -G '/tmp/wheelhouse/torch-*.whl' >/dev/null; then \
        src=(--no-index --find-links /tmp/wheelhouse); \
    else \
        echo "empty wheelhouse: installing the locked versions from $TORCH_INDEX_URL and PyPI"; \
        src=(--extra-index-url "$TORCH_INDEX_URL"); \
    fi; \
    python3 -m venv /opt/venv; \
    pip=(/opt/venv/bin/python -m pip install "${src[@]}" -c /tmp/req/cpu.lock.txt); \
    "${pip[@]}" pip setuptools wheel; \
    "${pip[@]}" torch==2.13.0; \
    DS_BUILD_OPS=0 "${pip[@]}" --no-build-isolation -r /tmp/req/cpu.txt; \
    "${pip[@]}" --no-deps xtuner==0.2.0; \
    rm -rf /tmp/wheelhouse /tmp/req /root/.cache

# ---- project: a wheel of the recipe's package (pyproject.toml, xtuner_recipe/) ---------------
FROM stack AS project
COPY pyproject.toml /tmp/src/
COPY xtuner_recipe/ /tmp/src/xtuner_recipe/
RUN /opt/venv/bin/python -m pip wheel --no-deps --no-build-isolation --no-index \
        --wheel-dir /tmp/dist /tmp/src

# ---- runtime: the final image -------------------------------------------------------------------
FROM os AS runtime
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG APP_UID=1000
ARG CXX_TOOLCHAIN=1
# The shared libraries of opencv-python (mmengine's dependency; `import mmengine.runner`, hence
# every `xtuner train`, imports cv2): without them training fails with "libxcb.so.1: cannot open
# shared object file". libgl1 pulls Mesa: about 220 MB. Here, not in `os`, so the stack stage's
# cache survives a change of this list.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        libgl1 libglib2.0-0 libsm6 libice6 libx11-6 libxext6 libxcb1 \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log
COPY --from=stack /opt/venv /opt/venv
# Offline by default: the recipe never downloads weights or data at run time (mount a model folder
# and set model.path); unset these (docker run -e HF_HUB_OFFLINE=0 ...) to allow hub downloads.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
# Pre-build DeepSpeed's CPU add-on into the user's torch_extensions cache (about 30-50 s), so a
# run only links it; another uid at run time builds it again on first use (g++ is there).
# USER is numeric so that runtimes enforcing non-root (runAsNonRoot) can verify it.
USER ${APP_UID}:${APP_UID}
RUN if [ "$CXX_TOOLCHAIN" = 1 ]; then \
        python -c 'from deepspeed.accelerator import get_accelerator as g; \
            g().create_op_builder("ShareMemCommBuilder").load()' 2>&1 | tail -n 3; \
        test -n "$(find "$HOME/.cache/torch_extensions" -name 'deepspeed_shm_comm*.so')"; \
    fi; \
    rm -rf "$HOME/.cache/huggingface"  # only a version stamp that the imports leave
# The recipe's package last: a change to it rebuilds only this small layer.
USER 0:0
COPY --from=project /tmp/dist/ /tmp/dist/
RUN python -m pip install --no-deps --no-index /tmp/dist/*.whl && rm -rf /tmp/dist /root/.cache
USER ${APP_UID}:${APP_UID}
WORKDIR /workspace
CMD ["bash"]

# Labels last, so a new revision only rebuilds this metadata layer.
ARG BASE_IMAGE
ARG VERSION=0.0.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="xtuner-recipe (CPU)" \
      org.opencontainers.image.description="Snakemake + XTuner fine-tuning recipe, CPU stack (torch 2.13.0+cpu, xtuner 0.2.0), no model weights" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# What a run's manifest records as its container (a process cannot see its image's digest).
ENV XTUNER_RECIPE_IMAGE="xtuner-recipe:cpu ${VERSION} ${REVISION}"
