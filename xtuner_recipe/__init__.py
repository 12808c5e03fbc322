"""Python that the recipe's Snakemake rules call: one module per stage, each unit-tested."""

import os
import sys

# The hub libraries must never reach for the network: every model and dataset is local. The MKL
# pair is what the tutorial sets for convert/merge; harmless elsewhere.
RUNTIME_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "MKL_SERVICE_FORCE_INTEL": "1", "MKL_THREADING_LAYER": "GNU"}
# What Snakemake sets to a rule's `threads` (1 for every rule here), which would leave torch on
# one core.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "GOTO_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                    "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def torch_threads(environ=os.environ, cores=None):
    """CPU threads for torch in this process: the cores it may run on (all of the machine's, or
    what taskset or Slurm allow), capped by Slurm's cpus_per_task and shared among the ranks
    torchrun started on this node."""
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    if environ.get("SLURM_CPUS_PER_TASK"):
        cores = min(cores, int(environ["SLURM_CPUS_PER_TASK"]))
    return max(1, cores // int(environ.get("LOCAL_WORLD_SIZE") or 1))


def use_runtime_env(environ=os.environ):
    """Called first by every module that loads a model; a value the user set wins, except the
    thread counts, which Snakemake has always set by then (to 1)."""
    for key, value in RUNTIME_ENV.items():
        environ.setdefault(key, value)
    threads = torch_threads(environ)
    environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
    if "torch" in sys.modules:  # imported already: it has read the variables
        sys.modules["torch"].set_num_threads(threads)
