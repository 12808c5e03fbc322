"""Run `xtuner train` for one recipe run: resume an interrupted run, launch on one process, under
torchrun, or under srun, check what it wrote, and record which checkpoint is the final one.

    python -m xtuner_recipe.train --config CFG --plan PLAN --work-dir DIR --final FINAL.json
        [--deepspeed DS.json] [--launcher none|pytorch|slurm] [--nproc N] [--srun "srun"]
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
            print(f"[xtuner-recipe] resuming from {resume}", flush=True)
            return resume
        if not same:
            n = 1
            while work_dir.with_name(f"{work_dir.name}.superseded-{n}").exists():
                n += 1
            aside = work_dir.with_name(f"{work_dir.name}.superseded-{n}")
            work_dir.rename(aside)
            print(f"[xtuner-recipe] {work_dir} was trained with another config; moved to {aside}",
                  flush=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(expected_fingerprint + "\n")
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(args, resume):
    tool = ["-m", "xtuner_recipe.xtuner_entry", "train", args.config, "--work-dir", args.work_dir,
            "--launcher", args.launcher]
    if args.deepspeed:
        tool += ["--deepspeed", args.deepspeed]
    if resume is not None:
        tool += ["--resume", str(resume)]
    if args.launcher == "pytorch":
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={args.nproc}",
                f"--master_port={free_port()}", *tool]
    if args.launcher == "slurm" and args.srun:
        # One task per GPU (per process on CPU) across the job's nodes; --kill-on-bad-exit ends
        # the step when a rank dies instead of leaving the others waiting.
        return [*shlex.split(args.srun), "--kill-on-bad-exit=1", sys.executable, *tool]
    return [sys.executable, *tool]


def launch_env(args):
    env = dict(os.environ)
    # torch >= 2.6 refuses mmengine's resume checkpoints under weights_only loading.
    env.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    if args.launcher == "slurm":
        # mmengine takes MASTER_ADDR from the job's first node (this batch script runs there)
        # and MASTER_PORT from here, else 29500, which two jobs on one node would share.
        env.setdefault("MASTER_PORT", str(free_port()))
        env.setdefault("OMP_NUM_THREADS", env.get("SLURM_CPUS_PER_TASK", "1"))
    if args.launcher == "none" and args.deepspeed:
        # DeepSpeed in one process still initialises torch.distributed; without these it looks
        # for MPI.
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
                   MASTER_ADDR=env.get("MASTER_ADDR", "127.0.0.1"),
                   MASTER_PORT=env.get("MASTER_PORT", str(free_port())))
    return env


def check_device(plan):
    import torch

    if plan["device"] == "cuda" and not torch.cuda.is_available():
        sys.exit("[xtuner-recipe] the config was patched for train.device = cuda, but this "
                 "machine has no usable GPU; run on a GPU node or set train.device: cpu")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--final", required=True)
    parser.add_argument("--deepspeed")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none")
    parser.add_argument("--nproc", type=int, default=1,
                        help="processes in all (torchrun: per machine; slurm: srun tasks)")
    parser.add_argument("--srun", default="srun",
                        help="srun prefix for --launcher slurm; empty: already one task in a step")
    return parser.parse_args(argv)


def world_size(args):
    return 1 if args.launcher == "none" else args.nproc


def main(argv=None):
    args = parse_args(argv)
    plan = json.loads(Path(args.plan).read_text(encoding="utf-8"))
    check_device(plan)
    size = world_size(args)
    resume = prepare_work_dir(args.work_dir, fingerprint(args.config, args.deepspeed, size))
    command = train_command(args, resume)
    print("[xtuner-recipe] " + shlex.join(command), flush=True)
    started = time.time()
    returncode = subprocess.call(command, env=launch_env(args))
    wall = time.time() - started
    if returncode != 0:
        sys.exit(f"[xtuner-recipe] xtuner train failed with exit status {returncode}; "
                 f"the work dir {args.work_dir} keeps its checkpoints for a resume")
    final = last_checkpoint(args.work_dir)
    if final is None:
        sys.exit(f"[xtuner-recipe] xtuner train exited 0 but {args.work_dir} holds no checkpoint")
    iteration = checkpoint_iteration(final)
    expected = plan["train"].get("max_iters")
    if expected is not None and iteration != expected:
        sys.exit(f"[xtuner-recipe] the last checkpoint is iteration {iteration}, "
                 f"expected {expected}")
    record = {
        "checkpoint": str(final),
        "iteration": iteration,
        "deepspeed": final.is_dir(),
        "launcher": args.launcher,
        "world_size": size,
        "resumed_from": str(resume) if resume else None,
        "wall_time_s": round(wall, 1),
        # Largest resident set of any process this step started (one rank), in MB.
        "peak_host_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                                  1),
    }
    Path(args.final).write_text(json.dumps(record, indent=2) + "\n")
    print(f"[xtuner-recipe] final checkpoint: {final} (iteration {iteration})", flush=True)


if __name__ == "__main__":
    main()
