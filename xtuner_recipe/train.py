"""Run `xtuner train` for one recipe run: resume an interrupted run, launch on one process, under
torchrun, or under srun, check what it wrote, and record which checkpoint is the final one and
the loss/time scalars of every segment of the run.

    python -m xtuner_recipe.train --settings settings/train.json --config CFG
        --final FINAL.json --scalars scalars.jsonl [--deepspeed DS.json]
"""

import argparse
import hashlib
import json
import os
import re
import resource
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

from xtuner_recipe.messages import fail, log
from xtuner_recipe.settings import read_stage

FINGERPRINT = "recipe_fingerprint.txt"


def fingerprint(config_path, deepspeed_path, world_size):
    """What a checkpoint in the work dir must have been trained with to be resumed."""
    digest = hashlib.sha256(Path(config_path).read_bytes())
    if deepspeed_path:
        digest.update(Path(deepspeed_path).read_bytes())
    digest.update(f"world_size={world_size}".encode())
    return digest.hexdigest()


def last_checkpoint(work_dir):
    """The checkpoint mmengine recorded as its latest (file `last_checkpoint`), if it exists."""
    marker = Path(work_dir) / "last_checkpoint"
    if not marker.is_file():
        return None
    path = Path(work_dir) / Path(marker.read_text().strip()).name
    return path if path.exists() else None


def checkpoint_iteration(path):
    match = re.fullmatch(r"iter_(\d+)\.pth", Path(path).name)
    if not match:
        raise RuntimeError(f"unexpected checkpoint name {path}: expected iter_N.pth")
    return int(match.group(1))


def prepare_work_dir(work_dir, expected_fingerprint):
    """Return the checkpoint to resume from, or None for a fresh start.

    A work dir left by a different config (or world size) is moved aside, never deleted.
    """
    work_dir = Path(work_dir)
    marker = work_dir / FINGERPRINT
    if work_dir.exists() and any(work_dir.iterdir()):
        same = marker.is_file() and marker.read_text().strip() == expected_fingerprint
        resume = last_checkpoint(work_dir) if same else None
        if resume is not None:
            log(f"resuming from {resume}")
            return resume
        if not same:
            n = 1
            while work_dir.with_name(f"{work_dir.name}.superseded-{n}").exists():
                n += 1
            aside = work_dir.with_name(f"{work_dir.name}.superseded-{n}")
            work_dir.rename(aside)
            log(f"{work_dir} was trained with another config; moved to {aside}")
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(expected_fingerprint + "\n")
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(run, config, deepspeed, resume):
    """The command line for `run` (TrainSettings): one process, torchrun, or srun tasks."""
    tool = ["-m", "xtuner_recipe.xtuner_entry", "train", config, "--work-dir", run.work_dir,
            "--launcher", run.launcher]
    if deepspeed:
        tool += ["--deepspeed", deepspeed]
    if resume is not None:
        tool += ["--resume", str(resume)]
    if run.launcher == "pytorch":
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={run.nproc}",
                f"--master_port={free_port()}", *tool]
    if run.launcher == "slurm" and run.srun:
        # One task per GPU (per process on CPU) across the job's nodes; --kill-on-bad-exit ends
        # the step when a rank dies instead of leaving the others waiting.
        return [*shlex.split(run.srun), "--kill-on-bad-exit=1", sys.executable, *tool]
    return [sys.executable, *tool]


def launch_env(launcher, deepspeed):
    env = dict(os.environ)
    # torch >= 2.6 refuses mmengine's resume checkpoints under weights_only loading.
    env.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    if launcher == "slurm":
        # mmengine takes MASTER_ADDR from the job's first node (this batch script runs there)
        # and MASTER_PORT from here, else 29500, which two jobs on one node would share.
        env.setdefault("MASTER_PORT", str(free_port()))
        env.setdefault("OMP_NUM_THREADS", env.get("SLURM_CPUS_PER_TASK", "1"))
    if launcher == "none" and deepspeed:
        # DeepSpeed in one process still initialises torch.distributed; without these it looks
        # for MPI.
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
                   MASTER_ADDR=env.get("MASTER_ADDR", "127.0.0.1"),
                   MASTER_PORT=env.get("MASTER_PORT", str(free_port())))
    return env


def check_device(device):
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        fail("the config was patched for train.device = cuda, but this machine has no usable "
             "GPU; run on a GPU node or set train.device: cpu")


def read_scalars(work_dir):
    """mmengine's per-iteration scalars, from every run in the work dir (resumed runs included),
    later runs winning for the same step."""
    by_step = {}
    for path in sorted(Path(work_dir).glob("*/vis_data/scalars.json")):
        for line in path.read_text().splitlines():
            if line.strip():
                entry = json.loads(line)
                if "loss" in entry and "step" in entry:
                    by_step[entry["step"]] = entry
    return [by_step[s] for s in sorted(by_step)]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="settings/train.json")
    parser.add_argument("--config", required=True)
    parser.add_argument("--final", required=True)
    parser.add_argument("--scalars", required=True)
    parser.add_argument("--deepspeed")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    run = read_stage(args.settings, "train")
    check_device(run.device)
    resume = prepare_work_dir(run.work_dir, fingerprint(args.config, args.deepspeed,
                                                        run.world_size))
    command = train_command(run, args.config, args.deepspeed, resume)
    log(shlex.join(command))
    started = time.time()
    returncode = subprocess.call(command, env=launch_env(run.launcher, args.deepspeed))
    wall = time.time() - started
    if returncode != 0:
        fail(f"xtuner train failed with exit status {returncode}; "
             f"the work dir {run.work_dir} keeps its checkpoints for a resume")
    final = last_checkpoint(run.work_dir)
    if final is None:
        fail(f"xtuner train exited 0 but {run.work_dir} holds no checkpoint")
    iteration = checkpoint_iteration(final)
    if run.max_iters is not None and iteration != run.max_iters:
        fail(f"the last checkpoint is iteration {iteration}, expected {run.max_iters}")
    record = {
        "checkpoint": str(final),
        "iteration": iteration,
        "deepspeed": final.is_dir(),
        "launcher": run.launcher,
        "world_size": run.world_size,
        "resumed_from": str(resume) if resume else None,
        "wall_time_s": round(wall, 1),
        # Largest resident set of any process this step started (one rank), in MB.
        "peak_host_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                                  1),
    }
    Path(args.scalars).write_text("".join(json.dumps(s, sort_keys=True) + "\n"
                                          for s in read_scalars(run.work_dir)))
    Path(args.final).write_text(json.dumps(record, indent=2) + "\n")
    log(f"final checkpoint: {final} (iteration {iteration})")


if __name__ == "__main__":
    main()
