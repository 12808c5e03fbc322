"""How training starts on one machine: how many processes, and which launcher."""

import os
from pathlib import Path

from xtuner_recipe.messages import ConfigError

# Without NVIDIA's kernel driver there is no GPU: the auto values then come without importing
# torch (about 2 s of every Snakemake start, no-op reruns included).
NVIDIA_DRIVER = Path("/proc/driver/nvidia")


def resolve_nproc(value, environ=None):
    """Processes per machine: the configured number, or for auto xtuner's own NPROC_PER_NODE,
    else the visible GPU count, else 1."""
    if value != "auto":
        return value
    environ = os.environ if environ is None else environ
    if environ.get("NPROC_PER_NODE"):
        try:
            return max(1, int(environ["NPROC_PER_NODE"]))
        except ValueError:
            raise ConfigError(f"NPROC_PER_NODE = {environ['NPROC_PER_NODE']!r} is not a number "
                              "(train.nproc_per_node: auto reads it)") from None
    if not NVIDIA_DRIVER.exists():
        return 1
    import torch

    return max(1, torch.cuda.device_count())


def resolve_launcher(requested, nproc):
    """none (one process), pytorch (torchrun, nproc processes) or slurm (srun tasks)."""
    if requested != "auto":
        return requested
    return "pytorch" if nproc > 1 else "none"


def resolve_device(requested):
    """auto: cuda when torch sees a GPU."""
    if requested != "auto":
        return requested
    if not NVIDIA_DRIVER.exists():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
