"""Debian packages the tests install when this machine lacks them (Slurm and munge, the Docker
engine, chromium), one apt-get at a time.

The suite runs in parallel workers, and two of them may need packages at once; apt-get refuses to
start while another one holds dpkg's lock, so each install here first takes a file lock and waits
its turn.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "xtuner-recipe-apt.lock"


class AptError(RuntimeError):
    pass


def apt_install(packages, timeout: float = 900) -> None:
    """apt-get update, then install ``packages`` without recommends; AptError says why not."""
    command = f"apt-get install {' '.join(packages)}"
    if os.geteuid() != 0:
        raise AptError(f"not root: {command} first")
    if shutil.which("apt-get") is None:
        raise AptError(f"no apt-get on this machine: install the equivalent of {command}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for argv in (["apt-get", "update", "-qq"],
                     ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]):
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-20:])
                raise AptError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
