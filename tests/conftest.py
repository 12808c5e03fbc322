"""Shared test helpers: run the real Snakemake workflow in a scratch folder with a config
override, and share one tiny base model across the session (results_dir is shared)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def snakemake(workdir, overrides, *args, profile="local", timeout=1800, env=None):
    """Run the repo's workflow with config.yaml plus `overrides`, from `workdir`."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    configfile = workdir / "config.override.yaml"
    configfile.write_text(yaml.safe_dump(overrides, allow_unicode=True), encoding="utf-8")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", str(configfile),
               "--profile", str(REPO / "profiles" / profile), *args]
    run_env = dict(os.environ)
    run_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{run_env['PATH']}"
    run_env.update(env or {})
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=timeout,
                          env=run_env)


@pytest.fixture(scope="session")
def shared_results(tmp_path_factory):
    """One results_dir for the session, so the tiny base model is built once."""
    return tmp_path_factory.mktemp("results")


def read_json(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


from slurm_fixtures import slurm_cluster  # noqa: E402,F401  (session fixture: a real one-node Slurm)
