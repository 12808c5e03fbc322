"""What the installed xtuner offers, read from its files without importing it (the import costs
seconds): built-in configs, prompt templates, DeepSpeed presets."""

import ast
import difflib
import importlib.util
from pathlib import Path

from xtuner_recipe.messages import ConfigError

DEEPSPEED_PRESETS = ("zero1", "zero2", "zero2_offload", "zero3", "zero3_offload")


def xtuner_package_dir():
    spec = importlib.util.find_spec("xtuner")
    if spec is None:
        raise ConfigError("xtuner is not installed in this environment: run `make install`")
    return Path(spec.submodule_search_locations[0])


def builtin_configs():
    """Name -> path of xtuner's built-in configs, as `xtuner list-cfg` and `copy-cfg` see them."""
    root = xtuner_package_dir() / "configs"
    return {p.stem: str(p) for p in sorted(root.rglob("*"))
            if p.suffix in (".py", ".json") and not p.name.startswith("_")}


def _prompt_template_calls():
    source = (xtuner_package_dir() / "utils" / "templates.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "PROMPT_TEMPLATE"):
            return {kw.arg: kw.value for kw in node.value.keywords}
    raise ConfigError("cannot read PROMPT_TEMPLATE from the installed xtuner")


def prompt_templates():
    """The names in xtuner's PROMPT_TEMPLATE."""
    return list(_prompt_template_calls())


def prompt_template(name):
    """One entry of xtuner's PROMPT_TEMPLATE as a dict (its values are literals)."""
    call = _prompt_template_calls()[name]
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def check_base_config(name):
    """The path of a built-in config, or an error that suggests close names."""
    configs = builtin_configs()
    if name in configs:
        return configs[name]
    close = difflib.get_close_matches(name, configs, n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    raise ConfigError(f"config field xtuner.base_config = {name!r}: not a built-in xtuner config"
                      f"{hint} (`xtuner list-cfg -p internlm2` lists them)")


def base_config_method(name):
    """qlora, lora or full: what the built-in config trains, read from its model dict."""
    tree = ast.parse(Path(check_base_config(name)).read_text(encoding="utf-8"))
    keywords = {node.arg for node in ast.walk(tree) if isinstance(node, ast.keyword)}
    if "quantization_config" in keywords:
        return "qlora"
    return "lora" if "lora" in keywords else "full"


def check_prompt_template(name):
    templates = prompt_templates()
    if name not in templates:
        close = difflib.get_close_matches(name, templates, n=5, cutoff=0.5)
        raise ConfigError(f"config field xtuner.prompt_template = {name!r}: unknown template; "
                          f"close names: {', '.join(close) or 'none'}; "
                          f"all: {', '.join(templates)}")


def deepspeed_source(value):
    """The JSON file a train.deepspeed value stands for (None: DeepSpeed off)."""
    if value is None:
        return None
    if value in DEEPSPEED_PRESETS:
        return Path(builtin_configs()[f"deepspeed_{value}"])
    path = Path(value)
    if path.suffix == ".json" and path.is_file():
        return path
    if path.suffix == ".json":
        raise ConfigError(f"config field train.deepspeed = {value!r}: file not found")
    raise ConfigError(f"config field train.deepspeed = {value!r}: must be null, one of "
                      f"{', '.join(DEEPSPEED_PRESETS)}, or a path to a DeepSpeed .json file")
