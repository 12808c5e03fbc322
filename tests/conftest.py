"""Fixtures shared by every kind of test. The harness (tests/harness/) is a pytest plugin: the
Slurm and Docker session fixtures come from there."""

import json
import time

import pytest

from harness.browser import ARTIFACTS

SESSION_STARTED = time.time()

pytest_plugins = ["harness.slurm", "harness.docker"]


@pytest.fixture(scope="session")
def shared_results(tmp_path_factory):
    """One results_dir for the session, so the tiny base model is built once."""
    return tmp_path_factory.mktemp("results")


def pytest_terminal_summary(terminalreporter):
    """Where this session's browser tests left their screenshots, and how long they took."""
    for facts in sorted(ARTIFACTS.glob("*.json")):
        if facts.stat().st_mtime >= SESSION_STARTED:
            terminalreporter.write_line(f"artifact {facts.stem}: {json.loads(facts.read_text())}")
