# Test image: the CPU image (containers/cpu.Dockerfile) plus the test tools of requirements/test.txt
# (pytest, pytest-timeout), so the project's unit tests run inside the image with the network off:
# the container-only CI path. The recipe itself runs in the CPU image; this adds one small layer.
#
#     containers/build.sh cpu && containers/build.sh cpu-test        # -> xtuner-recipe:cpu-test
#     docker run --rm --network none -v "$PWD:/recipe:ro" -w /recipe -e PYTHONDONTWRITEBYTECODE=1 \
#         xtuner-recipe:cpu-test python -m pytest -m "not slow" -q -p no:cacheprovider
#
# The build context must hold containers/cpu-test.lock.txt, requirements/test.txt and
# containers/wheelhouse/cpu-test/ (`containers/build.sh wheelhouse` fills it; empty: pip downloads
# the same locked versions from PyPI, which needs the network at build time).

ARG IMAGE=xtuner-recipe:cpu
# hadolint ignore=DL3006
FROM ${IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
USER 0:0
COPY containers/cpu-test.lock.txt requirements/test.txt /tmp/req/
COPY containers/wheelhouse/cpu-test/ /tmp/wheelhouse/
# hadolint ignore=SC3054
RUN set -eux; \
    if compgen -G '/tmp/wheelhouse/*.whl' >/dev/null; then src=(--no-index --find-links /tmp/wheelhouse); \
    else src=(); fi; \
    python -m pip install --no-cache-dir "${src[@]}" -c /tmp/req/cpu-test.lock.txt -r /tmp/req/test.txt; \
    rm -rf /tmp/wheelhouse /tmp/req /root/.cache
USER 1000:1000
# Python must not try to write __pycache__ into a read-only bind mount of the repository.
ENV PYTHONDONTWRITEBYTECODE=1
ARG IMAGE
LABEL org.opencontainers.image.title="xtuner-recipe (CPU, with test tools)" \
      org.opencontainers.image.base.name="${IMAGE}"
