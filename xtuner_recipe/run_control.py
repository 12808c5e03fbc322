"""What the Snakemake process does for a run, besides scheduling: it passes a stop signal on to
the running jobs, holds its working folder for one run at a time, and ends a failed run with the
failed jobs' own lines.

Snakemake answers SIGTERM (docker stop, timeout, a CI cancel, systemd) by waiting for its running
jobs, and SIGINT by waiting for them too; it passes neither on. Training would then run to its
end or be killed when the grace period ends, losing everything since its last periodic
checkpoint. Passed on, training saves the iteration it is at and stops
(xtuner_recipe.preemption), the job fails, and Snakemake exits and releases its lock.
"""

import fcntl
import json
import os
import re
import shlex
import signal
import socket
import sys
import time
from pathlib import Path

import psutil

from xtuner_recipe.messages import LOG_PREFIX, ConfigError

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Beside Snakemake's own metadata in the working folder; flock'ed for the life of the process that
# holds it, so the kernel releases it when that process ends, however it ends.
HOLDER = Path(".snakemake") / "xtuner-recipe-run.json"
SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"


def job_processes():
    """The commands of the running jobs: the children of the shells Snakemake started (a shell
    that got the signal itself would exit at once, before its command has saved anything)."""
    return [command for shell in psutil.Process().children() for command in shell.children()]


def pass_stop_signals_to_jobs(log):
    """Put a handler in front of Snakemake's for SIGTERM and SIGINT (call after Snakemake set its
    handlers: in `onstart`): it sends the same signal to every running job, then asks Snakemake
    to exit once they have (its SIGTERM handler). A second Ctrl-C is Snakemake's own again."""
    finish_running_jobs = signal.getsignal(signal.SIGTERM)
    interrupt = signal.getsignal(signal.SIGINT)

    def stop(received, frame):
        signal.signal(signal.SIGINT, interrupt)
        commands = job_processes()
        for command in commands:
            try:
                command.send_signal(received)
            except psutil.NoSuchProcess:
                pass
        log(f"{LOG_PREFIX} {signal.Signals(received).name}: passed on to the running jobs "
            f"({', '.join(str(c.pid) for c in commands) or 'none'}); training saves the "
            "iteration it is at and stops; run the same command again to resume there")
        finish_running_jobs(received, frame)

    for number in STOP_SIGNALS:
        signal.signal(number, stop)


def hold_folder(run_name, log):
    """Hold the working folder for this run (the returned file must stay open). Refuse when
    another live run holds it: waiting is the fix, `--unlock` would let both write the same files.
    When none does, Snakemake's locks left in it are a killed run's: clear them, as `--unlock`
    would, so that the rerun needs no `--unlock`."""
    HOLDER.parent.mkdir(exist_ok=True)
    held = open(HOLDER, "a+", encoding="utf-8")
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        held.seek(0)
        other = json.loads(held.read() or "{}")
        held.close()
        raise ConfigError(
            f"another run is using this folder ({Path.cwd()}): pid {other.get('pid')} on "
            f"{other.get('host')}, run_name {other.get('run_name')}, started "
            f"{other.get('started')} ({other.get('command')}). Wait for it to finish, or stop it "
            f"with `kill {other.get('pid')}` (its training saves where it is). Do not use "
            "--unlock: it does not stop that run and lets both write the same files") from None
    held.seek(0)
    previous = json.loads(held.read() or "{}")
    stale = sorted(SNAKEMAKE_LOCKS.glob("*.lock"))
    if stale:
        for lock in stale:
            lock.unlink()
        log(f"{LOG_PREFIX} cleared the Snakemake locks of a run that was killed in this folder "
            f"(pid {previous.get('pid')}, started {previous.get('started')}); no run holds it "
            "now, and an interrupted training resumes from its last checkpoint")
    held.seek(0)
    held.truncate()
    held.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                           "run_name": run_name, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                           "command": shlex.join(["snakemake", *sys.argv[1:]])}) + "\n")
    held.flush()
    return held


def failed_jobs_last_lines(snakemake_logs):
    """The recipe's own closing line from the log of each job that failed, as Snakemake's logs of
    the run (onerror's `log`, a list) name those jobs ('Error in rule R: ... log: PATH'):
    repeated last, so that a failed run's console ends with what failed and the fix, not with a
    library's traceback. A log whose last line is not the recipe's (a crash) gives none."""
    text = "".join(Path(p).read_text(errors="replace") for p in snakemake_logs or ()
                   if Path(p).is_file())
    lines = []
    for log in re.findall(r"^Error in rule \w+:\n(?:    .*\n)*?    log: (\S+)", text, re.M):
        log = Path(log)
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
        lines += [line for line in tail if line.startswith(LOG_PREFIX)]
    return lines
