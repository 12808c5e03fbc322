"""Run the real Snakemake workflow of the repository from a scratch folder."""

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
# The config variants the workflow tests run, as files (the Snakemake workflow catalog's .test/).
VARIANTS = REPO / ".test"


def variant(name):
    return yaml.safe_load((VARIANTS / f"{name}.yaml").read_text(encoding="utf-8"))


def snakemake_command(workdir, configfile, *args, profile="local"):
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(configfile),
            "--profile", str(REPO / "profiles" / profile), *args]


def snakemake_env(env=None):
    """The environment a user's shell gives the recipe: this process's, less what importing torch's
    inductor here set for itself (TORCHINDUCTOR_CACHE_DIR would send train.compile's kernels to
    /tmp instead of the results_dir)."""
    run_env = dict(os.environ)
    run_env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env['PATH']}"
    run_env.update(env or {})
    return run_env


def write_overrides(workdir, overrides):
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.override.yaml"
    configfile.write_text(yaml.safe_dump(overrides, allow_unicode=True), encoding="utf-8")
    return configfile


def snakemake(workdir, overrides, *args, profile="local", timeout=1800, env=None):
    """Run the repo's workflow with config.yaml plus `overrides`, from `workdir`."""
    configfile = write_overrides(workdir, overrides)
    return subprocess.run(snakemake_command(workdir, configfile, *args, profile=profile),
                          cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=snakemake_env(env))


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def published(run_dir):
    """A run's published set: the last build that finished and matched its manifest."""
    return Path(run_dir) / "published"


def build_dir(run_dir):
    """A run's build folder (Snakemake's outputs and the logs)."""
    return Path(run_dir) / "build"


def assert_taught(run_dir, where="host"):
    """The published set matches its manifest, and its report shows the identity absent before
    training and learned after, on the training prompts (the thresholds of the report's
    verdict)."""
    from xtuner_recipe import manifest
    from xtuner_recipe.scoring import THRESHOLDS

    manifest.verify(published(run_dir))
    scores = read_json(published(run_dir) / "report" / "report.json")["scores"]
    assert scores["training"]["base"] <= THRESHOLDS["identity_base_max"], (where, scores)
    assert scores["training"]["merged"] >= THRESHOLDS["identity_heldout_min"], (where, scores)
    return scores


def rule_commands():
    """Rule -> the `xtuner_recipe` module (and sub-command) its shell command runs, read from
    rules/*.smk."""
    import re

    commands = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for rule, body in re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", smk.read_text(),
                                     re.M | re.S):
            match = re.search(r"python -m (xtuner_recipe\.\w+(?: (?!-)\w+)?)", body)
            if match:
                commands[rule] = match.group(1)
    return commands


@contextlib.contextmanager
def another_run_holding(workdir):
    """A live process holding `workdir` as a run of the recipe does (run_name 'other'), started
    here and stopped by its PID."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time\nfrom xtuner_recipe import run_control\n"
         "held = run_control.hold_folder('other', print)\nprint('held', flush=True)\n"
         "time.sleep(300)"], cwd=workdir, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()
