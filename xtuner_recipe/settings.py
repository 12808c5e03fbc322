"""The run's settings: the user's config over the recipe over the schema's defaults, resolved and
checked once, at parse time, into one frozen object.

Precedence, for every key: the user's value (config.yaml, --configfile, --config, a profile's
`config:`), else the recipe's (recipes/<name>.yaml, named by `recipe`), else the schema's default.
A null means "not set" at every level; a train key that stays null keeps the value of xtuner's
built-in config. Each rule's module receives its own slice of the object as a JSON file
(`settings/<stage>.json`), written by the `settings` rule: a change to one stage's values then
reruns that stage and what follows it, and nothing before it.
"""

import copy
import dataclasses
import hashlib
import json
import re
import types
from pathlib import Path

import yaml

from xtuner_recipe import (choice_eval, eval_sets, launch, preflight, slurm, user_data,
                           xtuner_catalog)
from xtuner_recipe.layout import RunLayout
from xtuner_recipe.messages import ConfigError, check_schema
from xtuner_recipe.xtuner_config import TRAIN_KEYS

# Where the schema and the recipes live, relative to the workflow's folder (the Snakefile's; the
# package may be installed elsewhere, e.g. in a container image).
SCHEMA = Path("schemas") / "config.schema.yaml"
RECIPES = Path("recipes")


# ---- the stages' slices ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class DataSettings:
    """rule data: the generated identity data (plus the base model's replayed answers), or the
    user's own data (xtuner_recipe.user_data), split into train and test for tasks qa and
    pretrain."""
    task: str  # identity, qa or pretrain
    name: str
    pairs: list
    repeat: int
    format: str
    replay_share: float  # share of the records that are the base model's replayed answers
    path: str | None  # dataset.*: the user's data
    test_path: str | None
    test_size: float
    split_seed: int
    question_column: str
    answer_column: str
    system_column: str | None
    sheet: str | None
    header_row: int | None
    encoding: str
    text_field: str


@dataclasses.dataclass(frozen=True)
class ReplaySettings:
    """rule replay: the base model's own answers to general prompts (shared by the runs of a
    results_dir that train the same model the same way)."""
    model_path: str
    prompts: list
    prompt_template: str
    system: str | None
    max_new_tokens: int


@dataclasses.dataclass(frozen=True)
class TokenizeSettings:
    """rule tokenized_data: what the tokenised, packed training set depends on, and nothing else
    (another learning rate or batch size does not tokenise again)."""
    base_config: str
    model_path: str
    prompt_template: str
    system: str | None
    max_length: int | None
    pack_to_max_length: bool | None
    seed: int  # the shuffle before packing


@dataclasses.dataclass(frozen=True)
class PatchSettings:
    """rule xtuner_config: everything the patched xtuner config depends on."""
    base_config: str
    model_path: str
    data_path: str  # the tokenised training set
    prompt_template: str
    system: str | None
    evaluation_inputs: list
    seed: int
    device: str
    world_size: int  # train.sampler infinite turns epochs into iterations with it
    train: dict
    deepspeed_source: str | None


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """rule train: how training is launched and where its attempts (work dirs named by the hash
    of their inputs) live; the iteration it must end at is the patched config's (effective.json)."""
    device: str
    launcher: str
    nproc: int
    world_size: int
    srun: str
    base_model: str  # hashed into the attempt's name
    attempts_dir: str
    compile_cache: str  # TORCHINDUCTOR_CACHE_DIR for train.compile


@dataclasses.dataclass(frozen=True)
class ConvertSettings:
    """rules hf_adapter and merge."""
    base_model: str
    method: str
    checkpoint: object
    max_shard_size: str
    merge_device: str
    prompt_template: str  # its turn-end token joins the merged model's eos list


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """rule evaluate: the prompt groups (xtuner_recipe.evaluate) and the held-out text."""
    task: str
    base_model: str
    name: str
    prompt_template: str
    system: str | None
    training_prompts: list | None  # None: the distinct first user turns of the dataset
    heldout_identity_prompts: list
    unrelated_prompts: list
    general_knowledge: list
    heldout_text: str
    max_new_tokens: int
    max_test_items: int  # tasks qa and pretrain: how many test items both models answer
    harness_tasks: list  # xtuner_recipe.choice_eval: general ability by multiple choice
    harness_limit: int | None


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """rule report."""
    task: str
    run_name: str
    recipe: str
    method: str
    device: str
    base_model: str
    base_model_public_id: str | None  # the packaged model's hub id, for the model card


STAGES = {"data": DataSettings, "tokenized_data": TokenizeSettings,
          "xtuner_config": PatchSettings, "train": TrainSettings, "convert": ConvertSettings,
          "evaluate": EvalSettings, "report": ReportSettings, "replay": ReplaySettings}
RUN_STAGES = ("data", "tokenized_data", "xtuner_config", "train", "convert", "evaluate",
              "report")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the rules need, resolved. The Snakefile builds it once."""
    config: dict  # the merged, validated config (user over recipe over defaults)
    layout: RunLayout
    base_model: str  # the folder training starts from
    tiny_shape: dict | None  # the tiny model to build
    package: dict | None  # the packaged model to fetch and convert
    deepspeed: bool
    slurm_resources: dict
    data: DataSettings
    tokenized_data: TokenizeSettings
    xtuner_config: PatchSettings
    train: TrainSettings
    convert: ConvertSettings
    evaluate: EvalSettings
    report: ReportSettings
    replay: ReplaySettings
    warnings: tuple = ()  # shown before the run starts; nothing stops

    def files(self):
        """Path -> content of every settings file the `settings` rule writes: each stage's slice,
        and the tiny model's shape (shared by the runs of one results_dir). Stable key order, so
        an unchanged value gives the same bytes."""
        slices = {self.layout.settings(stage): dataclasses.asdict(getattr(self, stage))
                  for stage in RUN_STAGES}
        if self.tiny_shape:
            slices[self.layout.tiny_model_shape] = self.tiny_shape
        if self.data.replay_share:
            slices[self.replay_files()[1]] = dataclasses.asdict(self.replay)
        return {path: json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
                for path, value in slices.items()}

    def replay_files(self):
        """(answers, settings) of this run's replay, named by the digest of its settings."""
        digest = hashlib.sha256(json.dumps(dataclasses.asdict(self.replay), sort_keys=True)
                                .encode("utf-8")).hexdigest()
        return (self.layout.replay(self.base_model, digest),
                self.layout.replay_settings(self.base_model, digest))


def read_stage(path, stage):
    """The typed slice a module receives (see `Settings.stage_json`)."""
    return STAGES[stage](**json.loads(Path(path).read_text(encoding="utf-8")))


# ---- layering -------------------------------------------------------------------------------

def load_schema(root):
    return yaml.safe_load((Path(root) / SCHEMA).read_text(encoding="utf-8"))


def schema_defaults(schema):
    """The `default` of every key in the schema, nested as the config is."""
    defaults = {}
    for key, prop in schema.get("properties", {}).items():
        if prop.get("type") == "object" and "properties" in prop and "default" not in prop:
            defaults[key] = schema_defaults(prop)
        else:
            defaults[key] = copy.deepcopy(prop.get("default"))
    return defaults


def overlay(lower, upper):
    """`upper` over `lower`: mappings merge key by key, a null in `upper` leaves `lower`'s value."""
    merged = copy.deepcopy(lower)
    for key, value in (upper or {}).items():
        if value is None and key in merged:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = overlay(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _types(prop, schema):
    if "$ref" in prop:
        prop = schema["definitions"][prop["$ref"].split("/")[-1]]
    kinds = prop.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else list(kinds)
    for option in prop.get("anyOf", []):
        kinds += _types(option, schema)
    return kinds


def coerce_to_schema(value, prop, schema):
    """Snakemake reads nested `--config key='{a: 1}'` values as strings: give each string the
    type the schema asks for (integer, number, boolean, null) when it reads as one."""
    if isinstance(value, dict) and "properties" in prop:
        return {k: coerce_to_schema(v, prop["properties"].get(k, {}), schema)
                for k, v in value.items()}
    kinds = _types(prop, schema)
    if isinstance(value, str) and "null" in kinds and value in ("null", "~"):
        return None  # "not set", as in a YAML file
    if not isinstance(value, str) or "string" in kinds or not kinds:
        return value
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str) and "number" in kinds:
        try:
            parsed = float(value)  # YAML 1.1 reads 2e-4 (no dot) as a string
        except ValueError:
            pass
    wanted = {"integer": int, "number": (int, float), "boolean": bool, "null": type(None)}
    if any(isinstance(parsed, wanted[k]) and not (k != "boolean" and isinstance(parsed, bool))
           for k in kinds if k in wanted):
        return parsed
    return value


def recipe_names(root):
    recipes = Path(root) / RECIPES
    return sorted(str(p.relative_to(recipes).with_suffix("")) for p in recipes.rglob("*.yaml"))


# A recipe name without a file of its own names a pair of device variants, <name>_gpu and
# <name>_cpu: the GPU one when training will run on a GPU.
DEVICE_VARIANTS = {"cuda": "_gpu", "cpu": "_cpu"}


def recipe_variant(name, root, device):
    """The recipe file `name` names: itself, or its variant for the device training will use
    (train.device; auto asks the machine)."""
    recipes = Path(root) / RECIPES
    if not name or (recipes / f"{name}.yaml").is_file():
        return name
    if all((recipes / f"{name}{suffix}.yaml").is_file() for suffix in DEVICE_VARIANTS.values()):
        return name + DEVICE_VARIANTS[launch.resolve_device(device)]
    return name


def load_recipe(name, root, schema):
    path = Path(root) / RECIPES / f"{name}.yaml"
    if not name or not path.is_file():
        raise ConfigError(f"config field recipe = {name!r}: no such recipe; choose one of "
                          f"{', '.join(recipe_names(root))} (files under recipes/)")
    recipe = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if "recipe" in recipe:
        raise ConfigError(f"recipes/{name}.yaml: a recipe cannot name another recipe")
    check_schema(recipe, schema, where=f"recipe recipes/{name}.yaml")
    for key in ("path", "test_path"):  # a recipe's data ships with the workflow
        value = (recipe.get("dataset") or {}).get(key)
        if value and not Path(value).is_absolute():
            recipe["dataset"][key] = str(Path(root) / value)
    return recipe


def _one_schedule(user_train, recipe_train):
    """max_iters and max_epochs are alternatives: the user's choice of one drops the recipe's
    other; both set at one level is an error."""
    for label, layer in (("", user_train), (" (recipe)", recipe_train)):
        if layer.get("max_iters") is not None and layer.get("max_epochs") is not None:
            raise ConfigError(f"config fields train.max_iters and train.max_epochs are both set"
                              f"{label}: keep one (max_iters trains exactly that many iterations)")
    for chosen, other in (("max_iters", "max_epochs"), ("max_epochs", "max_iters")):
        if user_train.get(chosen) is not None:
            recipe_train.pop(other, None)


def resolve_config(user, root):
    """The config every rule sees: the user's values over the recipe's over the defaults.
    `root` is the workflow's folder (schemas/, recipes/)."""
    schema = load_schema(root)
    user = coerce_to_schema(user, schema, schema)
    check_schema(user, schema)
    user_train = user.get("train") or {}
    user["recipe"] = recipe_variant(user.get("recipe") or schema_defaults(schema)["recipe"], root,
                                    user_train.get("device") or "auto")
    recipe = load_recipe(user["recipe"], root, schema)
    builds = {k for k in ("tiny", "package") if (recipe.get("model") or {}).get(k)}
    if (user.get("model") or {}).get("path") and builds:
        raise ConfigError(f"config field model.path is set, but recipe {user.get('recipe')!r} "
                          "builds its own model; choose the recipe for your model, "
                          "e.g. recipe: internlm2-chat-1_8b/qlora (recipes/ lists them)")
    _one_schedule(user_train, recipe.setdefault("train", {}))
    merged = overlay(overlay(schema_defaults(schema), recipe), user)
    check_schema(merged, schema)
    return merged


# ---- resolved values ------------------------------------------------------------------------

def slug(text):
    """A folder-name-safe form of `text`: its letters and digits, of any script (the tutorial's
    owner names are Chinese), lower-cased, other characters as "-"; text with characters beyond
    spaces, dots and dashes left out keeps a short hash, so two names never share a slug."""
    plain = re.sub(r"[\W_]+", "-", text).strip("-").lower()
    if plain and re.fullmatch(r"[\w\s.-]+", text) and "_" not in text:
        return plain
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return f"{plain + '-' if plain else ''}{digest}"


def run_name(config, base_model, method, task):
    """The results folder of this run: run_name if set, else the owner (task identity) or the
    task and the data's name, the model and the method, plus a short hash of the model's path,
    the base config and the data's path (two runs with the same owner but another model, method,
    base config or data never share a folder)."""
    if config.get("run_name"):
        return config["run_name"]
    data = config["dataset"]["path"]
    identity = json.dumps([str(base_model), config["xtuner"]["base_config"], method]
                          + ([task, data] if data else []))
    digest = hashlib.sha1(identity.encode("utf-8")).hexdigest()[:6]
    model = slug(Path(str(base_model)).name)
    what = (slug(config["assistant"]["name"]) if task == "identity"
            else f"{task}-{slug(Path(data).stem)}")
    return f"{what}_{model}_{method}_{digest}"


def train_values(config, device):
    """The train values to write into the xtuner config; None means 'keep the base config's'."""
    train = config["train"]
    values = {key: train.get(key) for key in TRAIN_KEYS}
    if values["method"] is None:
        values["method"] = xtuner_catalog.base_config_method(config["xtuner"]["base_config"])
        if values["method"] == "qlora" and device != "cuda":
            values["method"] = "lora"  # the 4-bit base needs CUDA; same adapter, full-precision base
    if values["method"] == "qlora" and device != "cuda":
        raise ConfigError(
            "config field train.method = 'qlora': 4-bit QLoRA needs a CUDA GPU (bitsandbytes has "
            "no CPU 4-bit path in this stack); on CPU set train.method: lora (or full)")
    if values["precision"] is not None and device != "cuda":
        raise ConfigError(
            f"config field train.precision = {values['precision']!r} applies to GPU training; on "
            "CPU training is float32: set train.precision: null (a recipe's *_cpu variant does)")
    return values


def check_model(config):
    """A local model folder must look like a Hugging Face model; without one the recipe must
    build its model."""
    path = config["model"].get("path")
    if not path:
        if not config["model"].get("tiny") and not config["model"].get("package"):
            raise ConfigError(f"recipe {config['recipe']!r} has no model to build: set "
                              "model.path to a local Hugging Face model folder")
        return
    folder = Path(path)
    if not folder.is_dir():
        raise ConfigError(f"config field model.path = {path!r}: no such folder; point it at a "
                          "local Hugging Face model folder (config.json, weights, tokenizer), "
                          "or remove it to use the recipe's own model")
    if not (folder / "config.json").is_file():
        raise ConfigError(f"config field model.path = {path!r}: the folder has no config.json, "
                          "so it is not a Hugging Face model folder")
    preflight.check_tokenizer_files(folder)


def resolve_task(config, root):
    """The task and the split data (None for generated identity data); bad data raises here,
    at parse time, before any job starts."""
    task, dataset = config["task"], config["dataset"]
    if not dataset["path"]:
        if task not in (None, "identity"):
            raise ConfigError(f"config field task = {task!r} needs your data: set dataset.path "
                              "(the README's 'Your own data' lists the formats)")
        return "identity", None
    spec = types.SimpleNamespace(**dataset)  # the dataset.* fields user_data reads
    if task == "identity":
        _, record_format, _ = user_data.read_source(dataset["path"], spec)
        if record_format == "text":
            raise ConfigError(f"config field task = 'identity': {dataset['path']} holds text for "
                              "pre-training; set task: pretrain")
        return "identity", None
    prepared = user_data.prepare(spec)
    if task is not None and task != prepared.task:
        raise ConfigError(f"config field task = {task!r}: {dataset['path']} holds "
                          f"{prepared.format} records, which make a {prepared.task!r} run; set "
                          f"task: {prepared.task} (or null)")
    return prepared.task, prepared


DATASET_KEYS = ("path", "test_path", "test_size", "split_seed", "question_column",
                "answer_column", "system_column", "sheet", "header_row", "encoding", "text_field")


def patch_settings(config, device, model_path, data_path, values=None, world_size=1):
    """What the patched xtuner config depends on (the size of the tokenised set is added once
    it exists)."""
    deepspeed_source = xtuner_catalog.deepspeed_source(config["train"]["deepspeed"])
    return PatchSettings(
        base_config=config["xtuner"]["base_config"], model_path=str(model_path),
        data_path=str(data_path), prompt_template=config["xtuner"]["prompt_template"],
        system=config["xtuner"]["system"],
        evaluation_inputs=config["train"]["evaluation_inputs"] or [],
        seed=config["train"]["seed"], device=device, world_size=world_size,
        train=values if values is not None else train_values(config, device),
        deepspeed_source=str(deepspeed_source) if deepspeed_source else None)


def tokenize_settings(config, model_path):
    return TokenizeSettings(
        base_config=config["xtuner"]["base_config"], model_path=str(model_path),
        prompt_template=config["xtuner"]["prompt_template"], system=config["xtuner"]["system"],
        max_length=config["train"]["max_length"],
        pack_to_max_length=config["train"]["pack_to_max_length"], seed=config["train"]["seed"])


def build(user, root, environ=None):
    """Resolve and check the user's config into Settings; raises ConfigError (field and fix)."""
    config = resolve_config(user, root)
    preflight.check_owner_name(config["assistant"]["name"])
    check_model(config)
    task, prepared = resolve_task(config, root)
    xtuner_catalog.check_base_config(config["xtuner"]["base_config"])
    xtuner_catalog.check_prompt_template(config["xtuner"]["prompt_template"])
    choice_eval.check_tasks(config["eval"]["harness_tasks"])
    device = launch.resolve_device(config["train"]["device"])
    values = train_values(config, device)
    nproc = launch.resolve_nproc(config["train"]["nproc_per_node"], environ)
    launcher = launch.resolve_launcher(config["train"]["launcher"], nproc)
    processes = slurm.slurm_tasks(config["slurm"]) if launcher == "slurm" else nproc
    model = config["model"]
    package = None if model["path"] or model["tiny"] else model["package"]
    shared = RunLayout(config["results_dir"], "")  # the base models are shared by every run
    base_model = (model["path"] or (shared.tiny_model if model["tiny"] else
                                    shared.packaged_model(package["member"])))
    layout = RunLayout(config["results_dir"], run_name(config, base_model, values["method"], task))
    if prepared:
        preflight.check_record_sizes(prepared.train + prepared.test, base_model,
                                     config["train"]["max_length"],
                                     lambda r: preflight.locate_record(r, config["dataset"]))
    xt, assistant, ev = config["xtuner"], config["assistant"], config["eval"]
    own_data = bool(config["dataset"]["path"])
    world_size = 1 if launcher == "none" else processes
    patch = patch_settings(config, device, base_model, layout.tokenized, values, world_size)
    identity = eval_sets.load("identity.yaml")
    pairs = assistant["pairs"] or [{"input": p["input"], "output": p["output"]}
                                   for p in identity["training"]]
    return Settings(
        config=config,
        layout=layout,
        base_model=str(base_model),
        tiny_shape=None if model["path"] else model["tiny"],
        package=package,
        deepspeed=patch.deepspeed_source is not None,
        slurm_resources=slurm.slurm_train_resources(config["slurm"]) if launcher == "slurm"
        else {},
        data=DataSettings(task=task, name=assistant["name"], pairs=pairs,
                          repeat=assistant["repeat"], format=assistant["format"],
                          replay_share=0.0 if task == "pretrain" else assistant["replay_share"],
                          **{k: config["dataset"][k] for k in DATASET_KEYS}),
        tokenized_data=tokenize_settings(config, base_model),
        xtuner_config=patch,
        train=TrainSettings(device=device, launcher=launcher, nproc=processes,
                            world_size=world_size,
                            srun=slurm.train_srun(config["slurm"]), base_model=str(base_model),
                            attempts_dir=layout.attempts_dir,
                            compile_cache=layout.compile_cache),
        convert=ConvertSettings(base_model=str(base_model), method=values["method"],
                                checkpoint=config["convert"]["checkpoint"],
                                max_shard_size=config["convert"]["max_shard_size"],
                                merge_device=config["convert"]["merge_device"],
                                prompt_template=xt["prompt_template"]),
        evaluate=EvalSettings(
            task=task, base_model=str(base_model), name=assistant["name"],
            prompt_template=xt["prompt_template"], system=xt["system"],
            training_prompts=None if own_data else [p["input"] for p in pairs],
            heldout_identity_prompts=ev["heldout_identity_prompts"]
            or [p["input"] for p in identity["heldout"]],
            unrelated_prompts=ev["unrelated_prompts"] or [p["input"] for p in identity["unrelated"]],
            general_knowledge=eval_sets.load(ev["general_knowledge"] or
                                             "general_knowledge.yaml")["questions"],
            heldout_text=eval_sets.load(ev["heldout_text"] or "heldout_text.txt"),
            max_new_tokens=ev["max_new_tokens"], max_test_items=ev["max_test_items"],
            harness_tasks=ev["harness_tasks"], harness_limit=ev["harness_limit"]),
        report=ReportSettings(task=task, run_name=layout.run_name, recipe=config["recipe"],
                              method=values["method"], device=device,
                              base_model=str(base_model),
                              base_model_public_id=(package or {}).get("public_id")),
        replay=ReplaySettings(model_path=str(base_model),
                              prompts=eval_sets.load("replay_prompts.yaml")["prompts"],
                              prompt_template=xt["prompt_template"], system=xt["system"],
                              max_new_tokens=ev["max_new_tokens"]),
        warnings=tuple(w for w in [model["path"] and preflight.template_warning(
            model["path"], xt["prompt_template"]), *(prepared.warnings if prepared else ())]
            if w),
    )
