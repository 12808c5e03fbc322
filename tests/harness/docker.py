"""pytest fixtures ``docker_engine`` and ``cpu_image``: one private Docker engine and one build
of the CPU image per test session, and ``run_in_image`` to run a command in that image.

The engine (harness/docker_engine.py, Debian's dockerd, apt-installed when missing) keeps its image
store in ``$XTUNER_RECIPE_DOCKER_DATA_ROOT`` (default: the repository's ignored
``.scratch/docker/data``, kept between runs so a second run reuses the cached layers);
``containers/build.sh`` builds ``base`` (debootstrap'd bookworm, skipped when present),
``wheelhouse`` (the locked CPU set) and ``cpu`` (the image). Timings go to the terminal (``-s``)
and to ``.scratch/container-timings.json``.
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

from harness.docker_engine import DockerEngine, EngineError, ensure_installed

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "containers" / "build.sh"
# README's commands name this tag; the local base stands in for Docker Hub's pinned Debian.
CPU_TAG = "xtuner-recipe:cpu"
BASE_TAG = "xtuner-recipe-base:bookworm"
DATA_ROOT = Path(os.environ.get("XTUNER_RECIPE_DOCKER_DATA_ROOT", REPO / ".scratch" / "docker" / "data"))
TIMINGS_FILE = REPO / ".scratch" / "container-timings.json"
# mmengine.runner imports cv2 (opencv-python), which needs X11/GL libraries the image must carry:
# without them `import xtuner` works but every `xtuner train` fails (libxcb.so.1 missing).
IMPORTS = ("xtuner, torch, transformers, peft, mmengine, deepspeed, snakemake, xtuner_recipe, "
           "cv2, mmengine.runner")

# Set by the session fixtures; run_in_image() reads them.
STATE: dict = {"env": None, "image": None, "engine": None}
TIMINGS: dict[str, float] = {}


def docker(*args: str, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    if STATE["env"] is None:
        raise RuntimeError("no engine: use the docker_engine or cpu_image fixture first")
    return subprocess.run(["docker", *args], env=STATE["env"], check=check, timeout=timeout,
                          capture_output=True, text=True, **kw)


def docker_shell(command: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    """A documented shell command line, run in the repository root against the session's engine."""
    return subprocess.run(["bash", "-c", command], env=STATE["env"], cwd=REPO, timeout=timeout,
                          capture_output=True, text=True)


def readme_commands(marker: str) -> list[str]:
    """The commands of the ```sh block that follows `<!-- MARKER` in README.md (continuations joined)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(f"<!-- {marker}")
    block = text[text.index("```sh\n", start) + 6:]
    block = block[:block.index("```")].replace("\\\n", " ")
    return [" ".join(line.split()) for line in block.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def build_image(*args: str, timeout: float = 3600) -> float:
    """containers/build.sh ARGS with the engine's DOCKER_HOST; its output goes to the terminal."""
    t0 = time.monotonic()
    env = {**STATE["env"], "PYTHON": sys.executable}  # the test venv's Python has the package's deps
    proc = subprocess.run([str(BUILD), *args], env=env, cwd=REPO, timeout=timeout,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = "\n".join(line for line in proc.stdout.splitlines() if "is ignored: it is neither" not in line)
    lines = out.splitlines()
    print("\n".join(lines if proc.returncode else [ln for ln in lines if ln.startswith("[build.sh]")]))
    if proc.returncode:
        # the cause on the failure's own line: a CI summary may show nothing else of the output
        tail = " | ".join(ln.strip() for ln in lines[-8:] if ln.strip())
        pytest.fail(f"containers/build.sh {' '.join(args)} exited {proc.returncode}: {tail}")
    return time.monotonic() - t0


@pytest.fixture(scope="session")
def docker_engine():
    """A private dockerd for the session; its image store persists in DATA_ROOT."""
    if os.geteuid() != 0:
        pytest.skip("the private Docker engine needs root")
    engine = DockerEngine(DATA_ROOT)
    try:
        engine.start()
    except EngineError as e:
        pytest.fail(f"could not start dockerd: {e}")
    STATE["env"], STATE["engine"] = engine.environ(), engine
    try:
        yield engine
    finally:
        STATE["env"] = STATE["engine"] = STATE["image"] = None
        engine.stop()


@pytest.fixture(scope="session")
def cpu_image(docker_engine) -> str:
    """The tag of the CPU image, built (or found in the cache) for this session."""
    STATE["head"] = head_revision()  # what build.sh writes into the revision label
    ensure_installed(("debootstrap",))  # build.sh base needs it; a fresh machine lacks it
    TIMINGS["base_s"] = build_image("base")
    TIMINGS["wheelhouse_s"] = build_image("wheelhouse")
    TIMINGS["cpu_image_s"] = build_image("cpu", "--tag", CPU_TAG)
    size = int(docker("image", "inspect", "--format", "{{.Size}}", CPU_TAG).stdout)
    TIMINGS["cpu_image_mb"] = round(size / 1e6)
    TIMINGS["wheelhouse_mb"] = round(sum(f.stat().st_size for f in
                                         (REPO / "containers" / "wheelhouse" / "cpu").iterdir()) / 2**20)
    print(f"\ncontainer timings: {json.dumps(TIMINGS)}")
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2) + "\n")
    STATE["image"] = CPU_TAG
    return CPU_TAG


def run_in_image(args, mounts=(), network: str = "none", *, image: str | None = None,
                 env: dict | None = None, workdir: str | None = None, user: str | None = None,
                 read_only: bool = False, timeout: float = 3600,
                 check: bool = True) -> subprocess.CompletedProcess:
    """Run ``args`` (a list, or a string for ``bash -lc``) in a fresh container of the image,
    through its entry point (a command runs as is; options go to the recipe's Snakemake).

    mounts: ``(host_path, container_path)`` or ``(host_path, container_path, "ro")`` tuples. The
    container runs as the image's non-root user (uid 1000) unless ``user`` says otherwise, so a
    host folder it must write to needs to be writable for uid 1000 (``os.chown(p, 1000, 1000)``).
    network: ``none`` (default: proves the run is offline) or ``host``; the private engine has no
    bridge network. Returns the CompletedProcess (stdout and stderr captured as text).
    """
    image = image or STATE["image"]
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
    if read_only:
        cmd += ["--read-only", "--tmpfs", "/tmp"]
    argv = ["bash", "-lc", args] if isinstance(args, str) else list(args)
    proc = docker(*cmd, image, *argv, check=False, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{shlex.join(argv)}` exited {proc.returncode} in {image}:\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def head_revision() -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                          text=True).stdout.strip()


def inspect_image(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


def read_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.split()[0]  # no --hash=...
    return pins
