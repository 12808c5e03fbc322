"""The image's entry point (containers/entrypoint.sh), run by bash on this machine: the checks it
makes before it starts Snakemake."""

import subprocess
from pathlib import Path

import pytest

from harness.workflow import REPO

ENTRYPOINT = REPO / "containers" / "entrypoint.sh"


def test_a_runs_folder_that_is_not_a_mount_is_refused_naming_the_volume(tmp_path):
    """Defect: `docker run IMAGE` without a volume trained into the container's own /runs, which
    --rm threw away. Here /runs is not a mount either (nor, probably, a folder)."""
    if any(line.split()[4] == "/runs" for line in
           Path("/proc/self/mountinfo").read_text().splitlines()):
        pytest.skip("/runs is a mount on this machine")
    result = subprocess.run(["bash", str(ENTRYPOINT), "--dry-run"], capture_output=True,
                            text=True, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "/runs is not a mount: the run would be lost with the container" in result.stderr
    assert '-v "$PWD/out:/runs"' in result.stderr
