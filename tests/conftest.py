"""Fixtures shared by every kind of test, and how the suite is split among parallel workers. The
harness (tests/harness/) is a pytest plugin: the Slurm and Docker session fixtures come from there."""

import json
import os
import time

import pytest

from harness.browser import ARTIFACTS

SESSION_STARTED = time.time()
# Tests that need a daemon run in one worker, so that each daemon (and the image) starts once.
DAEMON_GROUPS = {"docker_engine": "docker", "slurm_cluster": "slurm"}

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


def shared_fixture_group(item) -> str | None:
    """The xdist group of a test: the daemon it needs, else its module when it reads a
    module-scoped fixture (a recipe run several tests assert on), else none (any worker)."""
    for fixture, group in DAEMON_GROUPS.items():
        if fixture in item.fixturenames:
            return group
    definitions = item._fixtureinfo.name2fixturedefs.values()
    if any(defs[-1].scope == "module" for defs in definitions):
        return item.module.__name__
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook turns the marks into node ids
def pytest_collection_modifyitems(items):
    for item in items:
        if group := shared_fixture_group(item):
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_runtest_logreport(report):
    """Each phase's seconds as a JSON line in the file XTUNER_RECIPE_TEST_TIMES names (set by
    bench/suite_cost.py): a shared fixture's cost lands in the setup of the first test using it.
    Under xdist the controller writes them, with the worker and the phase's start time."""
    path = os.environ.get("XTUNER_RECIPE_TEST_TIMES")
    if not path or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    worker = getattr(report, "node", None)
    test = report.nodeid  # xdist appends "@group" after the test's id (and its [parameters])
    if test.rfind("@") > test.rfind("]"):
        test = test.rsplit("@", 1)[0]
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"test": test, "phase": report.when,
                              "seconds": round(report.duration, 3), "outcome": report.outcome,
                              "worker": worker.gateway.id if worker else "main",
                              "start": round(report.start - SESSION_STARTED, 1)}) + "\n")
