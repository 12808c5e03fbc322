"""Fixtures shared by every kind of test. The harness (tests/harness/) is a pytest plugin: the
Slurm and Docker session fixtures come from there."""

import json
import os
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


def pytest_runtest_logreport(report):
    """Each phase's seconds as a JSON line in the file XTUNER_RECIPE_TEST_TIMES names (set by
    bench/suite_cost.py): a session fixture's cost lands in the setup of the first test using it."""
    if path := os.environ.get("XTUNER_RECIPE_TEST_TIMES"):
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps({"test": report.nodeid, "phase": report.when,
                                  "seconds": round(report.duration, 3),
                                  "outcome": report.outcome}) + "\n")
