"""The training job under profiles/slurm: Snakemake resources for the Slurm executor plugin and
the srun line the training wrapper starts its tasks with."""

from xtuner_recipe.messages import ConfigError


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
    for key, resource in (("partition", "slurm_partition"), ("account", "slurm_account"),
                          ("extra", "slurm_extra")):
        if slurm.get(key):
            resources[resource] = slurm[key]
    return resources


def train_srun(slurm):
    """The srun prefix the training wrapper starts its tasks with ('' when the job is one task
    that already runs inside the plugin's own srun step). The geometry is explicit because the
    plugin's job step strips SLURM_NTASKS and friends before running the rule."""
    if slurm_tasks(slurm) == 1:
        return ""
    return f"srun --nodes={slurm['nodes']} --ntasks-per-node={slurm['tasks_per_node']}"
