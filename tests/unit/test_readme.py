"""README.md's configuration reference lists every key of the schema, with the schema's default
and description, so the documentation cannot drift from the code."""

import re

from harness.workflow import REPO
from xtuner_recipe.settings import load_schema, schema_defaults


def leaf_rows(schema, defaults, prefix=""):
    """(key, default, description) for every key of the schema, in schema order; an object with
    its own description is one row, others are listed key by key."""
    rows = []
    for key, prop in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        value = defaults.get(key) if isinstance(defaults, dict) else None
        if prop.get("type") == "object" and "properties" in prop and "description" not in prop:
            rows += leaf_rows(prop, value or {}, f"{path}.")
        else:
            rows.append((path, value, " ".join(prop.get("description", "").split())))
    return rows


def render(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return f"{len(value)} items" if value else "[]"
    if isinstance(value, dict):
        return "{" + ", ".join(value) + "}" if len(value) <= 3 else f"{len(value)} keys"
    return str(value)


def expected_table():
    schema = load_schema(REPO)
    defaults = schema_defaults(schema)
    lines = ["| key | default | description |", "|---|---|---|"]
    lines += [f"| `{k}` | `{render(v)}` | {d} |" for k, v, d in leaf_rows(schema, defaults)]
    return "\n".join(lines)


def test_readme_configuration_reference_matches_schema():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- config-reference:start -->\n(.*?)\n<!-- config-reference:end -->",
                      readme, re.S)
    assert match, "README.md lacks the config-reference markers"
    expected = expected_table()
    assert match.group(1).strip() == expected, (
        "README.md's configuration reference is out of date; replace it with:\n" + expected)


def test_readme_quick_start_is_the_two_make_commands():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme and "make test" in readme
    assert "make test" in (REPO / ".ci" / "run").read_text()
