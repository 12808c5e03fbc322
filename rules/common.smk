# Shared by every rule: config validation (schema, then the checks that need xtuner or the file
import json
# system), the run's paths, and small input functions. Bad input stops here, before any job runs.
import os

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from xtuner_recipe import assistant_data, settings

# The hub libraries must never reach for the network: every model and dataset is local.
for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_var, "1")
# What the tutorial sets for convert/merge; harmless elsewhere.
os.environ.setdefault("MKL_SERVICE_FORCE_INTEL", "1")
os.environ.setdefault("MKL_THREADING_LAYER", "GNU")


def _with_defaults(config):
    """The repo's config.yaml is the one source of defaults; a --configfile or --config only needs
    the keys it changes."""
    with open(workflow.source_path("../config.yaml"), encoding="utf-8") as f:
        merged = yaml.safe_load(f)
    update_config(merged, config)
    config.clear()
    config.update(merged)


def _validated(config):
    schema_path = workflow.source_path("../schemas/config.schema.yaml")
    try:
        validate(config, schema_path)
    except WorkflowError:
        with open(schema_path) as f:
            settings.check_schema(config, yaml.safe_load(f))  # names the field and the fix
        raise
    try:
        settings.check_model_path(config)
        settings.check_base_config(config["xtuner"]["base_config"])
        settings.check_prompt_template(config["xtuner"]["prompt_template"])
        deepspeed = settings.deepspeed_source(config["train"]["deepspeed"])
        device = settings.resolve_device(config["train"]["device"])
        train = settings.train_settings(config, device)
        if config["assistant"].get("dataset"):
            source = config["assistant"]["dataset"]
            assistant_data.check_records(assistant_data.read_records(source), source)
    except (settings.ConfigError, assistant_data.DatasetError) as error:
        raise WorkflowError(str(error)) from None
    return device, train, deepspeed


_with_defaults(config)
DEVICE, TRAIN, DEEPSPEED_SOURCE = _validated(config)
NPROC = settings.resolve_nproc(config["train"])
LAUNCHER = settings.resolve_launcher(config["train"], NPROC)
RUN = settings.run_name(config)
RESULTS = config["results_dir"]
RUN_DIR = f"{RESULTS}/{RUN}"
TINY_MODEL = f"{RESULTS}/base_model/tiny-internlm2"
BASE_MODEL = config["model"]["path"] or TINY_MODEL


def final_outputs():
    return [f"{RUN_DIR}/report/report.md", f"{RUN_DIR}/report/report.json",
            f"{RUN_DIR}/report/loss_curve.png", f"{RUN_DIR}/merged"]


def base_model_input(wildcards):
    """The tiny model is a rule's output; a real model folder is used where it is."""
    return [] if config["model"]["path"] else [TINY_MODEL]
