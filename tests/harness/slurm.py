"""pytest fixture ``slurm_cluster``: one real one-node Slurm cluster per test session.

The cluster (see ``slurm_cluster.py``) lives in a pytest temp folder and is stopped at the end of
the session. The tests that use it are skipped, with the reason, when this machine cannot run it
(not root, or Slurm missing and apt-get unable to install it); any other start failure is an
error, shown with the daemons' log tails.
"""

from __future__ import annotations

import os

import pytest

from harness.slurm_cluster import SlurmCluster, SlurmUnavailable


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root (run the tests as root)")
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
    except SlurmUnavailable as exc:
        pytest.skip(f"no Slurm on this machine: {exc}")
    try:
        yield cluster
    finally:
        cluster.stop()
