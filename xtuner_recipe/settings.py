"""Turn config.yaml into concrete settings, and refuse bad input early with a message that names
the field and the fix. Everything here runs before any model is loaded or trained."""

import difflib
import hashlib
import re
from pathlib import Path

TRAIN_KEYS = (
    "method", "max_length", "pack_to_max_length", "batch_size", "accumulative_counts",
    "max_epochs", "max_iters", "lr", "warmup_ratio", "lora_r", "lora_alpha", "save_steps",
    "save_total_limit", "evaluation_freq", "log_interval",
)
DEEPSPEED_PRESETS = ("zero1", "zero2", "zero2_offload", "zero3", "zero3_offload")


class ConfigError(ValueError):
    """A config.yaml value that cannot work; the message names the field and the fix."""


def schema_error_message(error):
    """One line for a jsonschema ValidationError: the field, what is wrong, and the allowed values."""
    field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        return f"config field {field}: {error.message}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        allowed = ", ".join("null" if v is None else str(v) for v in error.validator_value)
        return f"config field {field} = {error.instance!r}: must be one of {allowed}"
    return f"config field {field} = {error.instance!r}: {error.message}"


def check_schema(config, schema):
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " +
                          "\n  ".join(schema_error_message(e) for e in errors))


def run_name(config):
    """The results folder of this run: run_name if set, else a slug of the owner's name.

    Non-ASCII names (the tutorial's are Chinese) keep a short hash so the folder stays portable.
    """
    if config.get("run_name"):
        return config["run_name"]
    name = config["assistant"]["name"]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()
    if slug and slug.isascii() and re.sub(r"[^A-Za-z0-9]", "", name) == re.sub(r"\s", "", name):
        return f"assistant-{slug}"
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:8]
    return f"assistant-{slug + '-' if slug else ''}{digest}"


def uses_tiny_model(config):
    return not config["model"].get("path")


def resolve_device(requested):
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def train_settings(config, device):
    """The train values to write into the xtuner config; None means 'keep the base config's'."""
    train = config["train"]
    preset = config.get("presets", {}).get("tiny", {}) if uses_tiny_model(config) else {}
    values = {key: train.get(key) if train.get(key) is not None else preset.get(key)
              for key in TRAIN_KEYS}
    if values["method"] is None:
        values["method"] = base_config_method(config["xtuner"]["base_config"])
        if values["method"] == "qlora" and device != "cuda":
            values["method"] = "lora"  # the 4-bit base needs CUDA; same adapter, full-precision base
    if values["method"] == "qlora" and device != "cuda":
        raise ConfigError(
            "config field train.method = 'qlora': 4-bit QLoRA needs a CUDA GPU (bitsandbytes has "
            "no CPU 4-bit path in this stack); on CPU set train.method: lora (or full)")
    if train.get("max_iters") is not None and train.get("max_epochs") is not None:
        raise ConfigError("config fields train.max_iters and train.max_epochs are both set: "
                          "keep one (max_iters trains exactly that many iterations)")
    if train.get("max_epochs") is not None:
        values["max_iters"] = None
    return values


def check_model_path(config):
    path = config["model"].get("path")
    if not path:
        return
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"config field model.path = {path!r}: no such folder; point it at a "
                          "local Hugging Face model folder (config.json, weights, tokenizer), "
                          "or set it to null for the tiny offline model")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"config field model.path = {path!r}: the folder has no config.json, "
                          "so it is not a Hugging Face model folder")


def xtuner_package_dir():
    """The installed xtuner's folder, found without importing it (the import costs seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("xtuner")
    if spec is None:
        raise ConfigError("xtuner is not installed in this environment: run `make install`")
    return Path(spec.submodule_search_locations[0])


def builtin_configs():
    """Name -> path of xtuner's built-in configs, as `xtuner list-cfg` and `copy-cfg` see them."""
    root = xtuner_package_dir() / "configs"
    return {p.stem: str(p) for p in sorted(root.rglob("*"))
            if p.suffix in (".py", ".json") and not p.name.startswith("_")}


def prompt_templates():
    """The names in xtuner's PROMPT_TEMPLATE, read from its source without importing xtuner."""
    import ast

    source = (xtuner_package_dir() / "utils" / "templates.py").read_text(encoding="utf-8")
    for node in ast.parse(source).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "PROMPT_TEMPLATE"):
            return [kw.arg for kw in node.value.keywords]
    raise ConfigError("cannot read PROMPT_TEMPLATE from the installed xtuner")


def check_base_config(name):
    configs = builtin_configs()
    if name in configs:
        return configs[name]
    close = difflib.get_close_matches(name, configs, n=5, cutoff=0.6)
    hint = f"; did you mean: {', '.join(close)}" if close else ""
    raise ConfigError(f"config field xtuner.base_config = {name!r}: not a built-in xtuner config"
                      f"{hint} (`xtuner list-cfg -p internlm2` lists them)")


def base_config_method(name):
    """qlora, lora or full: what the built-in config trains, read from its model dict."""
    import ast

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


def resolve_nproc(train, environ=None):
    """Processes per machine: the configured number, or for auto xtuner's own NPROC_PER_NODE,
    else the visible GPU count, else 1."""
    import os

    value = train["nproc_per_node"]
    if value != "auto":
        return value
    environ = os.environ if environ is None else environ
    if environ.get("NPROC_PER_NODE"):
        try:
            return max(1, int(environ["NPROC_PER_NODE"]))
        except ValueError:
            raise ConfigError(f"NPROC_PER_NODE = {environ['NPROC_PER_NODE']!r} is not a number "
                              "(train.nproc_per_node: auto reads it)") from None
    import torch

    return max(1, torch.cuda.device_count())


def resolve_launcher(train, nproc):
    """none (one process), pytorch (torchrun, nproc processes) or slurm (srun tasks)."""
    if train.get("launcher", "auto") != "auto":
        return train["launcher"]
    return "pytorch" if nproc > 1 else "none"


def slurm_train_resources(slurm):
    """Snakemake resources that make the Slurm executor plugin submit the training job as
    nodes x tasks_per_node srun tasks (one per GPU), with the rule's own srun inside.

    The plugin only runs a rule without its own `srun -n1` wrapper when the rule has an `mpi`
    resource, and it accepts that only for more than one task; a one-task job runs inside the
    plugin's step instead (see `train_srun`).
    """
    tasks = slurm_tasks(slurm)
    resources = {"nodes": slurm["nodes"], "cpus_per_task": slurm["cpus_per_task"],
                 "mem_mb": slurm["mem_mb"], "runtime": slurm["runtime"]}
    if tasks > 1:
        resources["mpi"] = "srun"
        if slurm["nodes"] > 1:
            if slurm["tasks_per_node"] < 2:
                raise ConfigError("config field slurm.tasks_per_node: with several nodes the "
                                  "Slurm plugin needs at least 2 tasks per node")
            resources["tasks_per_node"] = slurm["tasks_per_node"]
        else:
            resources["tasks"] = tasks
    if slurm["gpus_per_node"]:
        resources["gres"] = f"gpu:{slurm['gpus_per_node']}"
        resources["tasks_per_gpu"] = max(1, slurm["tasks_per_node"] // slurm["gpus_per_node"])
    for key, resource in (("partition", "slurm_partition"), ("account", "slurm_account"),
                          ("extra", "slurm_extra")):
        if slurm.get(key):
            resources[resource] = slurm[key]
    return resources


def slurm_tasks(slurm):
    return slurm["nodes"] * slurm["tasks_per_node"]


def train_srun(slurm):
    """The srun prefix the training wrapper starts its tasks with ('' when the job is one task
    that already runs inside the plugin's own srun step). The geometry is explicit because the
    plugin's job step strips SLURM_NTASKS and friends before running the rule."""
    if slurm_tasks(slurm) == 1:
        return ""
    return f"srun --nodes={slurm['nodes']} --ntasks-per-node={slurm['tasks_per_node']}"
