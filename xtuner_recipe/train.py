"""Run `xtuner train` for one recipe run in its training attempt, launch on one process, under
torchrun, or under srun, check what it wrote, and record which checkpoint is the final one and
the loss/time scalars of every segment of the attempt.

An attempt is named by the hash of everything that decides the weights: the patched config (seed,
hyperparameters, paths), the tokenised training set's bytes, the base model's files, the DeepSpeed
JSON and the world size. Its work dir is `attempts/<hash>/`: the same inputs resume there (or reuse a finished
attempt without training), any other inputs train in their own folder, and nothing is moved or
deleted.

    python -m xtuner_recipe.train --settings settings/train.json --config CFG
        --tokenized data/tokenized --effective config/effective.json
        --final FINAL.json --scalars scalars.jsonl [--deepspeed DS.json]
"""

import argparse
import hashlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from xtuner_recipe import launch, manifest, preemption, tokenized_data
from xtuner_recipe.messages import fail, log, progress
from xtuner_recipe.settings import read_stage

# Files of an attempt's work dir besides xtuner's own.
INPUTS = "attempt.json"  # what the attempt's hash was computed from
SEGMENTS = "segments.jsonl"  # one line per launch: start, end, exit status, resumed from
COMPLETE = "complete.json"  # written once the attempt reached its last iteration


def attempt_inputs(config_path, tokenized, base_model, deepspeed_path, world_size):
    """Everything that decides the trained weights, as hashes."""
    return {
        "xtuner_config": manifest.sha256_of(config_path),
        "dataset": tokenized_data.digest(tokenized),
        "base_model": {name: entry["sha256"]
                       for name, entry in manifest.tree_hashes(base_model).items()},
        "deepspeed": manifest.sha256_of(deepspeed_path) if deepspeed_path else None,
        "world_size": world_size,
    }


def attempt_id(inputs):
    encoded = json.dumps(inputs, sort_keys=True).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


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


def prepare_attempt(work_dir, inputs):
    """Create the attempt's work dir (or find it); return (finished record or None, the
    checkpoint to resume from or None)."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    record = work_dir / INPUTS
    if not record.is_file():
        record.write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n")
    complete = work_dir / COMPLETE
    if complete.is_file():
        finished = json.loads(complete.read_text())
        if Path(finished["checkpoint"]).exists():
            return finished, None
    return None, last_checkpoint(work_dir)


def read_segments(work_dir):
    path = Path(work_dir) / SEGMENTS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_segments(work_dir, segments):
    (Path(work_dir) / SEGMENTS).write_text(
        "".join(json.dumps(s, sort_keys=True) + "\n" for s in segments))


def close_interrupted(work_dir, segments):
    """A segment killed outright (SIGKILL, a lost node) has no end: take the time of the last file
    it wrote, so the attempt's wall time still counts it."""
    newest = max((p.stat().st_mtime for p in Path(work_dir).rglob("*") if p.is_file()),
                 default=None)
    for segment in segments:
        if segment.get("ended") is None:
            segment["ended"] = max(segment["started"], newest or segment["started"])
            segment["exit_status"] = "killed"
    return segments


def wall_time(segments):
    return round(sum(s["ended"] - s["started"] for s in segments if s.get("ended")), 1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_command(run, config, deepspeed, resume, work_dir):
    """The command line for `run` (TrainSettings): one process, torchrun, or srun tasks."""
    tool = ["-m", "xtuner_recipe.xtuner_entry", "train", config, "--work-dir", str(work_dir),
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


def launch_env(launcher, deepspeed, compile_cache):
    env = dict(os.environ)
    # torch >= 2.6 refuses mmengine's resume checkpoints under weights_only loading.
    env.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    # train.compile's kernels beside the runs, not in the machine's /tmp: a retrain, a fresh
    # container or another node starts from them (first iteration 35 -> 7 s on an H100 with the
    # kernels cached: bench/results/compile-h100.md)
    env.setdefault("TORCHINDUCTOR_CACHE_DIR", compile_cache)
    if launcher == "slurm":
        # mmengine takes MASTER_ADDR from the job's first node (this batch script runs there)
        # and MASTER_PORT from here, else 29500, which two jobs on one node would share.
        env.setdefault("MASTER_PORT", str(free_port()))
    if launcher == "none" and deepspeed:
        # DeepSpeed in one process still initialises torch.distributed; without these it looks
        # for MPI.
        env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1",
                   MASTER_ADDR=env.get("MASTER_ADDR", "127.0.0.1"),
                   MASTER_PORT=env.get("MASTER_PORT", str(free_port())))
    return env


def check_device(device):
    # NVIDIA's driver, not torch: importing torch here would delay the launch by seconds
    if device == "cuda" and not launch.NVIDIA_DRIVER.exists():
        fail("the config was patched for train.device = cuda, but this machine has no usable "
             f"GPU (no NVIDIA driver at {launch.NVIDIA_DRIVER}); run on a GPU node or set "
             "train.device: cpu")


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


def devices(device):
    """What trained: the GPUs' names, or the CPU's model and core count."""
    if device == "cuda":
        # nvidia-smi answers without the seconds of a torch import; it numbers the GPUs as
        # CUDA_VISIBLE_DEVICES does when that holds indices
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
            result = subprocess.run(query + (["-i", visible] if visible else []),
                                    capture_output=True, text=True)
            if result.returncode == 0 and result.stdout.strip():
                return result.stdout.strip().splitlines()
        import torch

        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "cpu")
    return [f"{model} ({os.cpu_count()} cores)"]


PROGRESS_EVERY_S = 5


def clock(seconds):
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def report_progress(work_dir, total, done):
    """Until `done` is set: a line for each new logged iteration (of `total`) with its loss, the
    time so far and the time left at the speed since this segment's first logged line."""
    started, first, shown = time.time(), None, None
    while not done.wait(PROGRESS_EVERY_S):
        scalars = read_scalars(work_dir)
        if not scalars or scalars[-1]["step"] == shown:
            continue
        step, now = scalars[-1]["step"], time.time()
        first = first or (step, now)
        rate = (now - first[1]) / (step - first[0]) if step > first[0] else None
        left = f", about {clock(rate * (total - step))} left" if rate and total else ""
        progress(f"train: iteration {step}/{total or '?'}, loss {scalars[-1]['loss']:.3f}, "
                 f"{clock(now - started)} elapsed{left}")
        shown = step


def run_forwarding_signals(command, env):
    """Run the training; a SIGTERM or SIGUSR1 sent to this wrapper goes on to it (its ranks save
    a checkpoint and stop, see xtuner_recipe.preemption)."""
    child = subprocess.Popen(command, env=env)

    def forward(number, frame):
        child.send_signal(number)

    previous = {n: signal.signal(n, forward) for n in preemption.SIGNALS}
    try:
        return child.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stopped_on_signal(work_dir):
    path = Path(work_dir) / preemption.STOPPED
    return json.loads(path.read_text()) if path.is_file() else None


def requeue_slurm_job():
    """Inside a Slurm job: put it back in the queue; the restarted job resumes this attempt.
    Slurm then ends this job with SIGTERM: ignored here, so the caller can record the segment."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return False
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    log(f"scontrol requeue {job}: exit status {result.returncode} {result.stderr.strip()}")
    return result.returncode == 0


def train(run, args, work_dir, resume):
    """Launch one segment of the attempt; return the checkpoint it ended at."""
    segments = close_interrupted(work_dir, read_segments(work_dir))
    (Path(work_dir) / preemption.STOPPED).unlink(missing_ok=True)  # recorded in its segment
    command = train_command(run, args.config, args.deepspeed, resume, work_dir)
    log(shlex.join(command))
    segment = {"started": time.time(), "ended": None, "exit_status": None,
               "resumed_from": str(resume) if resume else None}
    write_segments(work_dir, [*segments, segment])
    done = threading.Event()
    threading.Thread(target=report_progress, args=(work_dir, args.max_iters, done),
                     daemon=True).start()
    try:
        returncode = run_forwarding_signals(
            command, launch_env(run.launcher, args.deepspeed, run.compile_cache))
    finally:
        done.set()
    stopped = stopped_on_signal(work_dir)
    segment.update(ended=time.time(), exit_status=returncode, stopped_on_signal=stopped)
    write_segments(work_dir, [*segments, segment])
    if returncode != 0:
        if stopped:
            # the rerun's log replaces this one: the segment record keeps what happened
            segment["requeued"] = run.launcher == "slurm" and requeue_slurm_job()
            write_segments(work_dir, [*segments, segment])
            if segment["requeued"]:
                log(f"stopped on {stopped['signal']} at iteration {stopped['iteration']}; "
                    "the job is requeued and will resume there")
            fail(f"training stopped on {stopped['signal']} after saving iteration "
                 f"{stopped['iteration']} in {work_dir}; run the recipe again to resume there")
        last = last_checkpoint(work_dir)
        fail(f"xtuner train failed with exit status {returncode} (the error is above). The "
             f"attempt's work dir {work_dir} keeps "
             + (f"its checkpoints: the same settings resume from {last.name}" if last else
                "no checkpoint yet: the same settings start it again")
             + "; the published result of this run is untouched")
    final = last_checkpoint(work_dir)
    if final is None:
        fail(f"xtuner train exited 0 but {work_dir} holds no checkpoint")
    iteration = checkpoint_iteration(final)
    if args.max_iters is not None and iteration != args.max_iters:
        fail(f"the last checkpoint is iteration {iteration}, expected {args.max_iters}")
    finished = {"checkpoint": str(final), "iteration": iteration,
                "devices": devices(run.device), "environment": manifest.environment(),
                # Largest resident set of any process this segment started (one rank), in MB.
                "peak_host_rss_mb": round(
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}
    (Path(work_dir) / COMPLETE).write_text(json.dumps(finished, indent=2) + "\n")
    return finished


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="settings/train.json")
    parser.add_argument("--config", required=True)
    parser.add_argument("--tokenized", required=True, help="the tokenized_data rule's folder")
    parser.add_argument("--effective", required=True, help="config/effective.json")
    parser.add_argument("--final", required=True)
    parser.add_argument("--scalars", required=True)
    parser.add_argument("--deepspeed")
    return parser.parse_args(argv)


def main(argv=None):
    started = time.time()
    args = parse_args(argv)
    args.max_iters = json.loads(Path(args.effective).read_text())["max_iters"]
    run = read_stage(args.settings, "train")
    check_device(run.device)
    inputs = attempt_inputs(args.config, args.tokenized, run.base_model, args.deepspeed,
                            run.world_size)
    log(f"inputs hashed in {time.time() - started:.1f} s")
    attempt = attempt_id(inputs)
    work_dir = Path(run.attempts_dir) / attempt
    finished, resume = prepare_attempt(work_dir, inputs)
    reused = bool(finished)
    if finished:
        log(f"attempt {attempt} finished before (iteration {finished['iteration']}): reused, "
            "nothing trained")
    else:
        log(f"attempt {attempt}: " + (f"resuming from {resume}" if resume else "new"))
        finished = train(run, args, work_dir, resume)
    segments = read_segments(work_dir)
    record = {
        **finished,
        "attempt": attempt,
        "inputs": inputs,
        "deepspeed": Path(finished["checkpoint"]).is_dir(),
        "launcher": run.launcher,
        "world_size": run.world_size,
        "resumed_from": [s["resumed_from"] for s in segments if s["resumed_from"]],
        "stopped_on_signal": [s["stopped_on_signal"] for s in segments
                              if s.get("stopped_on_signal")],
        "segments": len(segments),
        # every segment of the attempt, the interrupted ones included
        "wall_time_s": wall_time(segments),
        # this rule's own time: hashing the inputs, launching, training, saving
        "trained_now": not reused,
        "rule_wall_time_s": round(time.time() - started, 1),
    }
    Path(args.scalars).write_text("".join(json.dumps(s, sort_keys=True) + "\n"
                                          for s in read_scalars(work_dir)))
    Path(args.final).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    log(f"final checkpoint: {finished['checkpoint']} (iteration {finished['iteration']})")


if __name__ == "__main__":
    main()
