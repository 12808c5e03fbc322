"""The recipe inside the CPU image, for real, and under `--sdm apptainer` through a STAND-IN.

Run: ``python -m pytest tests/containers -m container -v -s``
(as root; markers ``container`` and ``slow``). The image comes from test_container_image.py's
session fixtures (one private dockerd, one build per session).

1. Inside the image, through its entry point as README shows it (``docker run --user 1001:1001
   --read-only --tmpfs /tmp --network none -v RUN:/runs IMAGE --configfile /runs/...``): the
   whole recipe on the tiny model with the image's own workflow. (The tests baked into the image,
   the other half of the container-only CI path, run in test_container_image.py.)
2. On the host: the same overrides (same run_name, the same RELATIVE results_dir, so the patched
   config holds the same relative paths) with the harness's ``snakemake()``.
3. assistant.json and config/xtuner_config.py are byte-identical; both reports show the identity
   learned (harness.workflow.assert_taught); the loss curves agree.
4. Apptainer STAND-IN (Apptainer cannot be installed here): ``snakemake --sdm apptainer`` with
   ``container.image`` set to a sandbox folder exported from the image (``containers/build.sh
   sandbox``) and tests/harness/apptainer-standin/apptainer (bubblewrap, labelled NOT Apptainer)
   first on PATH. A poisoned host ``python`` proves that no rule ran on the host; the stand-in's
   own log shows every job's shell command went through it.

Times go to the terminal (-s) and to .scratch/container-timings.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.docker import REPO, TIMINGS, TIMINGS_FILE, build_image, docker, run_in_image
from harness.docker_engine import ensure_installed
from harness.workflow import (assert_taught, build_dir, published, read_json, rule_commands,
                              snakemake, variant, write_overrides)

pytestmark = [pytest.mark.container, pytest.mark.slow]

SANDBOX = Path(os.environ.get("XTUNER_RECIPE_SANDBOX_DIR",
                              REPO / ".scratch" / "apptainer" / "xtuner-recipe-cpu.sandbox"))
STANDIN = REPO / "tests" / "harness" / "apptainer-standin"
OVERRIDES = variant("container-e2e")
UID = 1001  # not the image's user: no passwd entry, no home
RUN = OVERRIDES["run_name"]
# rule -> what its shell command runs, read from rules/*.smk; the tiny recipe builds its own model
# and mixes in no replay answers, and `all` makes no bundle
TINY_RECIPE_RULES = {rule: module for rule, module in rule_commands().items()
                     if rule not in ("packaged_model", "replay", "bundle")}
COMPARED = ["data/assistant.json", "data/tokenized/dataset/data-00000-of-00001.arrow",
            "config/xtuner_config.py", "settings/xtuner_config.json"]


def _record(key: str, value: float) -> None:
    TIMINGS[key] = round(value, 1) if isinstance(value, float) else value
    print(f"\n[timing] {key} = {TIMINGS[key]}")
    TIMINGS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS_FILE.write_text(json.dumps(TIMINGS, indent=2) + "\n")


def _identity(run_dir: Path) -> dict:
    return read_json(published(run_dir) / "report" / "report.json")["scores"]


def _assert_same_artifacts(run_dir: Path, host_dir: Path, where: str) -> None:
    for rel in COMPARED:
        a, b = (build_dir(run_dir) / rel).read_bytes(), (build_dir(host_dir) / rel).read_bytes()
        assert a == b, f"{rel} differs between {where} and the host run"
    ours, host = ([p["loss"] for p in read_json(published(d) / "report" / "report.json")[
        "loss_curve"]] for d in (run_dir, host_dir))
    assert len(ours) == len(host) and all(abs(x - y) <= 1e-3 * max(1.0, abs(y))
                                          for x, y in zip(ours, host)), (where, ours, host)
    same = {rel: (published(run_dir) / rel).read_bytes() ==
            (published(host_dir) / rel).read_bytes()
            for rel in ("hf_adapter/adapter_model.safetensors", "merged/model.safetensors")}
    print(f"\n{where} vs host: {', '.join(COMPARED)} byte-identical; loss curves agree; "
          f"weights byte-identical: {same}; identity {where} {_identity(run_dir)} "
          f"host {_identity(host_dir)}")


# ---- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def host_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("host-run")
    t0 = time.monotonic()
    result = snakemake(work, OVERRIDES)
    assert result.returncode == 0, result.stderr[-5000:]
    _record("recipe_host_s", time.monotonic() - t0)
    return work / "results" / RUN


@pytest.fixture(scope="module")
def container_run(cpu_image, tmp_path_factory) -> Path:
    """The image's own workflow through its entry point, as README shows it: a uid the image has
    no passwd entry for, read-only root file system, the run folder mounted at /runs."""
    work = tmp_path_factory.mktemp("container-run")
    os.chown(work, UID, UID)
    write_overrides(work, OVERRIDES)
    t0 = time.monotonic()
    run_in_image(["--configfile", "/runs/config.override.yaml"], mounts=[(work, "/runs")],
                 network="none", user=f"{UID}:{UID}", read_only=True, timeout=3600)
    _record("recipe_in_docker_s", time.monotonic() - t0)
    return work / "results" / RUN


@pytest.fixture(scope="module")
def sandbox(cpu_image) -> Path:
    """The image as an Apptainer-style sandbox folder (docker export; cached by image ID)."""
    ensure_installed(("bwrap",))
    _record("sandbox_export_s", build_image("sandbox", "--tag", cpu_image, str(SANDBOX)))
    return SANDBOX


# ---- 1. inside the image -------------------------------------------------------------------------

def test_recipe_in_image_matches_the_host_run(container_run, host_run):
    for rel in ("report/report.md", "report/loss_curve.png", "merged/config.json",
                "train/final_checkpoint.json"):
        assert (published(container_run) / rel).is_file(), rel
    assert_taught(container_run, "container")
    assert_taught(host_run, "host")
    _assert_same_artifacts(container_run, host_run, "container")
    # the invoking uid wrote the results, readable by others (safetensors alone would write 0600)
    for rel in ("report/report.json", "merged/model.safetensors", "hf_adapter/adapter_model.safetensors"):
        info = (published(container_run) / rel).stat()
        assert info.st_uid == UID and info.st_mode & 0o044 == 0o044, (rel, oct(info.st_mode))
    # relative results_dir: the patched config names no absolute path of either machine
    text = (published(container_run) / "config" / "xtuner_config.py").read_text()
    assert "/runs/" not in text and str(REPO) not in text and "results/base_model" in text


def test_the_images_web_demo_serves_the_run(cpu_image, container_run):
    """`docker run ... IMAGE webapp` on the run folder the image made: a real browser asks, the
    fine-tuned model names its owner. (The private engine has no bridge: host network.)"""
    from harness.browser import ask_who_it_is, browser, free_port, wait_until_serving

    owner = read_json(published(container_run) / "eval" / "answers.json")["name"]
    port = free_port()
    name = f"xtuner-recipe-webapp-{port}"
    docker("run", "-d", "--rm", "--name", name, "--network=host", "--user", f"{UID}:{UID}",
           "--mount", f"type=bind,source={container_run.parent.parent},target=/runs", cpu_image,
           "webapp", "--port", str(port))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(url, lambda: name in docker("ps", "--format", "{{.Names}}").stdout,
                           lambda: docker("logs", name, check=False).stderr[-3000:])
        with browser() as chromium:
            page = chromium.new_page()
            page.goto(url, wait_until="networkidle")
            ask_who_it_is(page, owner)
    finally:
        docker("stop", name, check=False)  # the one container this test started, by name


# ---- 2. Snakemake's container wiring without --sdm ------------------------------------------------

def test_plain_runs_ignore_the_container_directive(tmp_path):
    """Without --sdm apptainer the `container:` directive is inert: a dry run needs no apptainer."""
    env = {"PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                   if not (Path(p) / "apptainer").exists())}
    plain = snakemake(tmp_path / "plain", OVERRIDES, "-n", env=env)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "singularity" not in (plain.stdout + plain.stderr).lower()
    if shutil.which("apptainer", path=env["PATH"]) or shutil.which("singularity", path=env["PATH"]):
        pytest.skip("a real apptainer/singularity is installed")
    sdm = snakemake(tmp_path / "sdm", OVERRIDES, "-n", "--sdm", "apptainer", env=env)
    assert sdm.returncode != 0
    assert "apptainer or singularity command has to be available" in sdm.stdout + sdm.stderr


# ---- 3. --sdm apptainer through the STAND-IN ------------------------------------------------------

def _standin_env(tmp_path: Path, log: Path) -> dict:
    """PATH: a poisoned host `python` first (any rule that runs on the host fails with 97), then the
    stand-in `apptainer`, then the venv (Snakemake itself starts from sys.executable)."""
    poison = tmp_path / "poison"
    poison.mkdir()
    (poison / "python").write_text('#!/bin/sh\necho "host python called: $0 $*" >&2\nexit 97\n')
    (poison / "python").chmod(0o755)
    path = os.pathsep.join([str(poison), str(STANDIN), str(Path(sys.executable).parent),
                            os.environ["PATH"]])
    return {"PATH": path, "APPTAINER_STANDIN_LOG": str(log)}


def _standin_exec(args: list[str], env: dict, **kw):
    return subprocess.run([str(STANDIN / "apptainer"), *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300, **kw)


def test_standin_imitates_apptainer_exec(sandbox, tmp_path):
    """What the stand-in guarantees (so the recipe test below means something)."""
    log = tmp_path / "standin.jsonl"
    env = {**_standin_env(tmp_path, log), "SINGULARITYENV_FROM_PREFIX": "yes",
           "HF_HUB_OFFLINE": "0", "HOST_ONLY_VAR": "host"}
    assert _standin_exec(["--version"], env).stdout.strip().startswith("apptainer version 1.")
    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    data.mkdir()
    (data / "f.txt").write_text("bound\n")
    script = ("set -e; id -u; echo $HOME; pwd; command -v python; echo $FROM_PREFIX $HF_HUB_OFFLINE "
              "$HOST_ONLY_VAR $APPTAINER_NAME; cat /data/f.txt; touch $HOME/w; "
              "touch /opt/x 2>/dev/null && echo image-writable || echo image-read-only; "
              "touch /data/x 2>/dev/null && echo bind-writable || echo bind-read-only; "
              ". /etc/os-release; echo $ID; python -c 'import socket\ntry:\n socket.create_connection((\"1.1.1.1\", 53), 2)"
              "\n print(\"online\")\nexcept OSError:\n print(\"offline\")'")
    proc = _standin_exec(["exec", "--home", str(home), "--bind", f"{data}:/data:ro", "--net",
                          "--network", "none", str(sandbox), "bash", "-c", script], env, cwd=home)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("\n")
    assert lines == [str(os.getuid()), str(home), str(home), "/opt/venv/bin/python",
                     f"yes 1 host {sandbox.name}", "bound", "image-read-only", "bind-read-only",
                     "debian", "offline", ""], proc.stdout
    assert (home / "w").is_file()
    # refused, not faked: a .sif file or a remote image needs the real Apptainer
    for image in ("docker://xtuner-recipe:cpu", str(tmp_path / "x.sif")):
        assert _standin_exec(["exec", image, "true"], env).returncode == 255
    assert json.loads(log.read_text().splitlines()[0])["network"] == "none"


def test_recipe_under_sdm_apptainer_standin(sandbox, host_run, tmp_path_factory):
    """snakemake --sdm apptainer with container.image = the sandbox: every job through the stand-in."""
    work = tmp_path_factory.mktemp("standin-run")
    log = work.parent / f"{work.name}-standin.jsonl"
    pathdir = tmp_path_factory.mktemp("standin-path")
    env = _standin_env(pathdir, log)
    overrides = {**OVERRIDES, "container": {"image": str(sandbox)}}
    t0 = time.monotonic()
    result = snakemake(work, overrides, "--sdm", "apptainer", "--apptainer-args",
                       "--net --network none", env=env)
    _record("recipe_via_standin_s", time.monotonic() - t0)
    assert result.returncode == 0, result.stderr[-6000:]
    output = result.stdout + result.stderr
    records = [json.loads(line) for line in log.read_text().splitlines()]
    # every shell job ran through the stand-in, with the sandbox, offline, successfully; `all` has
    # no command and `settings` is a run: block (it writes a JSON file in Snakemake's process)
    jobs = re.findall(r"^(?:local)?rule (\w+):", output, re.M)
    ran = sorted(j for j in jobs if j not in ("all", "settings"))
    assert ran == sorted(TINY_RECIPE_RULES), ran
    assert len(records) == len(ran), [r["command_line"][:80] for r in records]
    assert all(r["image"] == str(sandbox) and r["network"] == "none" and r["returncode"] == 0
               and r["command"][:2] == ["bash", "-c"] for r in records), records
    shell_commands = [c for c in re.findall(r"^Shell command: (.+)$", output, re.M)
                      if c.strip() != "None"]  # the `all` rule has none
    assert len(shell_commands) == len(ran)
    for cmd in shell_commands:
        assert sum(cmd.strip() in r["command"][2] for r in records) == 1, cmd
    for rule, marker in TINY_RECIPE_RULES.items():
        assert sum(f"python -m {marker} " in r["command"][2] for r in records) == 1, rule
    assert "Activating singularity image" in output
    run_dir = work / "results" / RUN
    assert_taught(run_dir, "stand-in")
    _assert_same_artifacts(run_dir, host_run, "stand-in")
    print(f"\nstand-in jobs: {[(r['command'][2].split('python -m ')[1].split()[0], r['seconds']) for r in records]}")


def test_docker_stop_saves_the_training_and_the_same_docker_run_resumes_it(cpu_image, tmp_path):
    """Defect: SIGTERM to Snakemake (what `docker stop` sends to the container's first process)
    was not passed on: training ran on unsaved until Docker's kill. Now it saves where it is, the
    run exits within the grace period, and the same `docker run` resumes there (no --unlock)."""
    work = tmp_path / "runs"
    work.mkdir()
    os.chown(work, UID, UID)
    write_overrides(work, {**variant("preempt"), "results_dir": "results"})
    run_dir = work / "results" / "preempt"
    name = f"xtuner-recipe-stop-{os.getpid()}"
    args = ["--network=none", "--user", f"{UID}:{UID}", "--mount",
            f"type=bind,source={work},target=/runs", cpu_image,
            "--configfile", "/runs/config.override.yaml"]
    docker("run", "-d", "--name", name, *args)
    try:
        deadline, reached = time.time() + 900, 0
        while reached < 40:
            assert time.time() < deadline, docker("logs", name, check=False).stderr[-3000:]
            reached = max((json.loads(line)["step"] for f in
                           run_dir.glob("attempts/*/*/vis_data/scalars.json")
                           for line in f.read_text().splitlines() if '"loss"' in line), default=0)
            time.sleep(0.5)
        docker("stop", "-t", "120", name)
        status = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
    finally:
        docker("rm", "-f", name, check=False)  # the one container this test started, by name
    stopped = read_json(next(run_dir.glob("attempts/*/stopped_on_signal.json")))
    assert stopped["signal"] == "SIGTERM" and stopped["iteration"] >= reached, status
    assert status != "137", "killed at the end of the grace period, not stopped"
    assert not list((work / ".snakemake" / "locks").glob("*.lock"))
    docker("run", "--rm", *args, "--until", "train", timeout=1800)  # the rest: container_run's
    final = read_json(build_dir(run_dir) / "train" / "final_checkpoint.json")
    assert [Path(r).name for r in final["resumed_from"]] == [f"iter_{stopped['iteration']}.pth"]
    assert final["iteration"] == 160 and final["segments"] == 2
    print(f"docker stop: exit status {status}, saved iteration {stopped['iteration']} "
          f"(reached >= {reached}), resumed there, no --unlock")
