"""The committed benchmark tables (the default recipe's, the suite's cost): each is the one its JSON
makes, so a figure edited by hand (or left from an older run) fails here;
`bench/cpu_default_recipe.py --check` reruns make run against its JSON itself."""

import importlib.util
import json

import pytest

from harness.workflow import REPO

BENCH = REPO / "bench"
# The container image carries the workflow and its tests, not the benchmarks (.dockerignore).
pytestmark = pytest.mark.skipif(not BENCH.is_dir(), reason="no bench/ in this copy of the project")


def bench_script(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def committed(name):
    return json.loads((BENCH / "results" / f"{name}.json").read_text(encoding="utf-8"))


def test_the_default_recipe_table_is_made_from_its_json():
    data = committed("cpu-default-recipe")
    assert ((BENCH / "results" / "cpu-default-recipe.md").read_text(encoding="utf-8")
            == bench_script("cpu_default_recipe").markdown(data))
    assert "seed 42 (make run)" in data["runs"]  # what --check compares with


def test_the_suite_cost_table_is_made_from_its_json_of_a_passing_run():
    data = committed("suite-cost")
    assert ((BENCH / "results" / "suite-cost.md").read_text(encoding="utf-8")
            == bench_script("suite_cost").markdown(data))
    assert data["exit_code"] == 0  # a failed run stops early and would hide where time goes
