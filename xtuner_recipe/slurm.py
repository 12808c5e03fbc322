"""The training job under profiles/slurm: Snakemake resources for the Slurm executor plugin and
the srun line the training wrapper starts its tasks with."""

import os
from pathlib import Path

from xtuner_recipe.messages import LOG_PREFIX, ConfigError


def slurm_tasks(slurm):
    return slurm["nodes"] * slurm["tasks_per_node"]


def slurm_train_resources(slurm):
    """Resources that make the plugin submit the training job as nodes x tasks_per_node srun
    tasks (one per GPU), with the rule's own srun inside.

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
    for key, resource in (("partition", "slurm_partition"), ("account", "slurm_account")):
        if slurm.get(key):
            resources[resource] = slurm[key]
    extra = [slurm["extra"]] if slurm.get("extra") else []
    if tasks > 1 and slurm["signal_before_limit_s"]:
        # Only the job steps get it: the training tasks, which save and stop; the batch script
        # (Snakemake's job step runner) keeps going and the job requeues itself.
        extra.append(f"--signal=USR1@{slurm['signal_before_limit_s']}")
    if extra:
        resources["slurm_extra"] = " ".join(extra)
    return resources


def train_srun(slurm):
    """The srun prefix the training wrapper starts its tasks with ('' when the job is one task
    that already runs inside the plugin's own srun step). The geometry is explicit because the
    plugin's job step strips SLURM_NTASKS and friends before running the rule."""
    if slurm_tasks(slurm) == 1:
        return ""
    return f"srun --nodes={slurm['nodes']} --ntasks-per-node={slurm['tasks_per_node']}"


def check_executor(executor, launcher, environ=None):
    """Training must start the way the executor runs it. Snakemake replaces a profile's whole
    `config:` list with a command-line --config, so profiles/slurm's train.launcher can vanish
    without a word: stop, and say so."""
    environ = os.environ if environ is None else environ
    on_slurm = executor.startswith("slurm")
    if on_slurm and launcher != "slurm":
        raise ConfigError(
            f"the Slurm executor runs training as a Slurm job, but train.launcher resolved to "
            f"{launcher!r}: a --config on the command line replaces the profile's `config:` list "
            "(train={launcher: slurm, deepspeed: zero2}). Repeat those keys in your --config, or "
            "put your own values in a --configfile")
    if launcher == "slurm" and not on_slurm and "SLURM_JOB_ID" not in environ:
        raise ConfigError("config field train.launcher = 'slurm' starts training with srun, "
                          "which needs a Slurm job: run with --profile profiles/slurm, or inside "
                          "an allocation (salloc, sbatch)")


def failed_job_logs(logdir, since, rule_log):
    """Quote the Slurm logs of this run's failed jobs (the plugin deletes the logs of jobs that
    succeeded) into the console and into each rule's own log: the real error often sits there,
    not in the rule's log (srun failing before the rule's command started, say)."""
    quotes = []
    logdir = Path(logdir)
    for path in sorted(logdir.rglob("*.log")) if logdir.is_dir() else []:
        if path.stat().st_mtime < since:
            continue
        rule = path.relative_to(logdir).parts[0].removeprefix("rule_")
        tail = path.read_text(errors="replace").splitlines()[-40:]
        quote = "\n".join([f"{LOG_PREFIX} Slurm log of the failed job {path.stem} (rule {rule}),"
                           f" {path}, last {len(tail)} lines:", *(f"  | {line}" for line in tail)])
        own_log = Path(rule_log(rule))
        if own_log.parent.is_dir():
            with own_log.open("a", encoding="utf-8") as handle:
                handle.write("\n" + quote + "\n")
        quotes.append(quote)
    return quotes
