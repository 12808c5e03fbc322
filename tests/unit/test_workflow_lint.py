"""Snakemake's own checks of the workflow: `snakemake --lint` and `snakefmt --check` are clean."""

import shutil
import subprocess
import sys

import pytest

from harness.workflow import REPO, snakemake_env


def test_snakemake_lint_is_clean(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--lint"],
        capture_output=True, text=True, env=snakemake_env(), timeout=300)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Congratulations, your workflow is in a good condition!" in output, output[-3000:]


def test_snakefmt_check_is_clean():
    snakefmt = shutil.which("snakefmt", path=str(snakemake_env()["PATH"]))
    if snakefmt is None:
        pytest.skip("snakefmt is not installed here (requirements/lint.txt; `make install` has it)")
    result = subprocess.run([snakefmt, "--check", "--diff", "Snakefile", "rules"], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
