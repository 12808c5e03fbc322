"""The evaluation and replay sets shipped with the recipe (YAML and text files in this folder)."""

from pathlib import Path

import yaml

HERE = Path(__file__).parent


def load(name):
    """A shipped set by file name, or a user's file by path: .yaml parsed, anything else text."""
    path = HERE / name if (HERE / name).is_file() else Path(name)
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else text
