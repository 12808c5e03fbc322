"""The committed default-recipe figures: the table is the one its JSON makes, so a figure edited by
hand (or left from an older run) fails here; `bench/cpu_default_recipe.py --check` reruns make run
against the JSON itself."""

import importlib.util

from harness.workflow import REPO

RESULTS = REPO / "bench" / "results"
spec = importlib.util.spec_from_file_location("cpu_default_recipe",
                                              REPO / "bench" / "cpu_default_recipe.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def test_the_default_recipe_table_is_made_from_its_json():
    import json

    data = json.loads((RESULTS / "cpu-default-recipe.json").read_text(encoding="utf-8"))
    assert (RESULTS / "cpu-default-recipe.md").read_text(encoding="utf-8") == bench.markdown(data)
    assert "seed 42 (make run)" in data["runs"]  # what --check compares with
