# Shared by every rule: the run's settings, resolved and checked once (bad input stops here,
# before any job runs), and the small functions the rules take their values from.
from snakemake.exceptions import WorkflowError

from xtuner_recipe import assistant_data
from xtuner_recipe import settings as recipe_settings
from xtuner_recipe.messages import ConfigError


def build_settings(user_config):
    try:
        built = recipe_settings.build(user_config, workflow.basedir)
        if built.data.dataset:
            records = assistant_data.read_records(built.data.dataset)
            assistant_data.check_records(records, built.data.dataset)
    except (ConfigError, assistant_data.DatasetError) as error:
        raise WorkflowError(str(error)) from None
    return built


SETTINGS = build_settings(config)
LAYOUT = SETTINGS.layout


def get_settings_file(wildcards):
    """The content of one settings file. A function of the wildcards only: Snakemake compares
    such params with the last run's (a function of the output would be exempt)."""
    return SETTINGS.files()[settings_path(wildcards.folder, wildcards.name)]


def settings_path(folder, name):
    return f"{LAYOUT.results_dir}/{folder}/settings/{name}.json"


def get_base_model_input(wildcards):
    """A built or fetched model is a rule's output; a local model folder is used where it is."""
    return [SETTINGS.base_model] if SETTINGS.tiny_shape or SETTINGS.package else []


def get_package(key):
    """One field of the packaged model's pin (model.package), for the packaged_model rule."""
    return lambda wildcards: (SETTINGS.package or {})[key]


def get_replay(wildcards):
    """The base model's replayed answers, when the data mixes them in."""
    return [LAYOUT.replay(SETTINGS.base_model)] if SETTINGS.data.replay_share else []


def get_user_dataset(wildcards):
    """A user's dataset is an input: editing it rebuilds everything downstream."""
    return [SETTINGS.data.dataset] if SETTINGS.data.dataset else []


def get_train_resources():
    return SETTINGS.slurm_resources
