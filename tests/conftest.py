"""Fixtures shared by every kind of test. The harness (tests/harness/) is a pytest plugin: the
Slurm and Docker session fixtures come from there."""

import pytest

pytest_plugins = ["harness.slurm", "harness.docker"]


@pytest.fixture(scope="session")
def shared_results(tmp_path_factory):
    """One results_dir for the session, so the tiny base model is built once."""
    return tmp_path_factory.mktemp("results")
