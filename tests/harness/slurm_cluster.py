"""A throwaway one-node Slurm cluster on localhost, for tests.

Usage (as root, on Debian/Ubuntu)::

    from slurm_cluster import SlurmCluster   # tests/ on sys.path, as pytest puts it

    with SlurmCluster(scratch_dir) as cluster:
        subprocess.run(["sbatch", "--wrap", "hostname"], env=cluster.environ(), check=True)
        cluster.job_records()      # finished jobs with the resources they ran with

What it does:

* installs Debian's ``slurm-wlm`` and ``munge`` with apt-get when ``slurmctld`` is missing
  (how CI on a fresh machine gets them);
* starts ``munged``, ``slurmctld`` and ``slurmd -N localhost`` in the foreground as children of
  this process, with every piece of state (munge key/socket/log/pid, slurm.conf, state, spool,
  logs, pids) under the scratch folder, on free TCP ports;
* records every finished job through Slurm's own job completion log
  (``JobCompType=jobcomp/filetxt``), parsed by :meth:`SlurmCluster.job_records` -- no slurmdbd
  and no database needed. ``sacct`` therefore does not work: tell snakemake's slurm executor
  ``--slurm-status-command squeue`` (``MinJobAge`` is kept high so that finished jobs stay
  visible to ``squeue``/``scontrol``);
* makes the config reachable at ``/etc/slurm/slurm.conf`` too (a symlink), because the
  snakemake slurm job step strips every ``SLURM_*`` variable, ``SLURM_CONF`` included, before its
  inner ``srun``. A pre-existing ``/etc/slurm/slurm.conf`` that is not ours is moved aside and put
  back at teardown;
* stops exactly the processes it started, by PID, and undoes the ``/etc/slurm`` change.
  ``stop()`` is idempotent, is also registered with ``atexit``, and the object is a context
  manager.

Only one cluster per machine at a time (``/etc/slurm/slurm.conf`` is global): a file lock in the
temp folder serialises concurrent users (e.g. pytest-xdist workers). Beside the lock, a registry
lists the daemons' PIDs with their start times; a run that was killed (SIGKILL, CI timeout)
leaves them running, and the next start stops exactly those processes before going on.

Job steps (``slurmstepd``) are started by slurmd, not by us: ``stop()`` cancels every job still
queued or running and waits for it to end before stopping the daemons.
"""

from __future__ import annotations

import atexit
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, Optional

from harness.apt import AptError, apt_install

__all__ = [
    "SlurmCluster",
    "SlurmCommandError",
    "SlurmUnavailable",
    "active_clusters",
    "ensure_installed",
    "find_executable",
    "parse_key_values",
]

MARKER = "# managed-by: xtuner-recipe tests/slurm_cluster.py"
ETC_SLURM_CONF = Path("/etc/slurm/slurm.conf")
ETC_BACKUP = ETC_SLURM_CONF.with_name("slurm.conf.orig-by-test-cluster")
PARTITION = "debug"
_SBIN_DIRS = ("/usr/sbin", "/sbin", "/usr/local/sbin")
_APT_PACKAGES = ("slurm-wlm", "munge")


_ACTIVE: List["SlurmCluster"] = []  # clusters started (and not yet stopped) by this process


def active_clusters() -> List["SlurmCluster"]:
    """Clusters this process started and has not stopped yet."""
    return list(_ACTIVE)


class SlurmUnavailable(RuntimeError):
    """Slurm cannot be provided on this machine (not root, no apt-get, install failed).

    Test fixtures turn this into a skip; every other error is a real failure.
    """


class SlurmCommandError(subprocess.CalledProcessError):
    """A Slurm client command failed; unlike CalledProcessError, str() shows its output."""

    def __str__(self) -> str:
        return (
            f"{super().__str__()}\nstdout: {_tail(self.stdout or '', 20)}"
            f"\nstderr: {_tail(self.stderr or '', 20)}"
        )


# --------------------------------------------------------------------------- installation


def find_executable(name: str) -> Optional[str]:
    """``shutil.which`` that also looks in the sbin folders (often not on a user's PATH)."""
    found = shutil.which(name)
    if found:
        return found
    for folder in _SBIN_DIRS:
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def ensure_installed() -> None:
    """Install ``slurm-wlm`` and ``munge`` with apt-get unless already present (idempotent)."""
    needed = ("slurmctld", "slurmd", "munged", "sbatch", "srun", "squeue", "sinfo", "scontrol")
    if all(find_executable(n) for n in needed):
        return
    try:
        apt_install(_APT_PACKAGES)
    except AptError as e:
        raise SlurmUnavailable(f"could not install slurm-wlm and munge: {e}") from e
    missing = [n for n in needed if not find_executable(n)]
    if missing:
        raise SlurmUnavailable(f"after installing slurm-wlm and munge, still missing: {missing}")


# --------------------------------------------------------------------------- small helpers


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _real_memory_mb() -> int:
    """MemTotal in MB minus headroom (10 %, at least 512 MB) so slurmd never finds less."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                total_mb = int(line.split()[1]) // 1024
                break
        else:  # pragma: no cover - every Linux has it
            raise RuntimeError("no MemTotal in /proc/meminfo")
    headroom = max(512, total_mb // 10)
    return max(256, total_mb - headroom)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - exists, not ours
        return True
    return True


def _lock_dir() -> Path:
    return Path(tempfile.gettempdir())


LOCK_PATH_NAME = "xtuner-recipe-slurm-test-cluster.lock"
REGISTRY_NAME = "xtuner-recipe-slurm-test-cluster.pids.json"


def _proc_start_ticks(pid: int) -> Optional[str]:
    """Field 22 of /proc/PID/stat (start time): with the PID it names one process for good."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _read_registry(path: Path) -> List[Dict[str, object]]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, list) else []
    except (OSError, ValueError):
        return []


def _write_registry(path: Path, entries: List[Dict[str, object]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, path)


def reap_leftovers(registry: Path) -> List[int]:
    """Stop daemons that an earlier, killed run of this module started (by PID, verified by the
    process start time recorded at spawn). Call only while holding the cluster lock."""
    reaped = []
    for entry in _read_registry(registry):
        pid = int(entry.get("pid", 0))
        if pid > 0 and _proc_start_ticks(pid) == entry.get("start"):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while _proc_start_ticks(pid) == entry.get("start") and time.monotonic() < deadline:
                time.sleep(0.1)
            if _proc_start_ticks(pid) == entry.get("start"):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            reaped.append(pid)
    if registry.exists():
        registry.unlink()
    return reaped


def parse_key_values(text: str) -> Dict[str, str]:
    """Parse Slurm's ``Key=Value Key2=Value two`` lines (scontrol -o, jobcomp/filetxt).

    A value runs until the next `` Key=`` so values with spaces survive.
    """
    out: Dict[str, str] = {}
    for part in re.split(r"\s+(?=[A-Za-z][A-Za-z0-9_:/]*=)", text.strip()):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key] = value.strip()
    return out


def _tres(value: str) -> Dict[str, str]:
    """``cpu=2,mem=100M,node=1,billing=2`` -> dict."""
    return dict(item.split("=", 1) for item in value.split(",") if "=" in item)


# --------------------------------------------------------------------------- the cluster


class SlurmCluster:
    """A one-node Slurm cluster whose whole state lives in ``scratch``.

    Attributes after :meth:`start`: ``conf`` (slurm.conf path), ``env`` (variables to add to a
    client's environment), ``partition``, ``node``, ``cpus``, ``real_memory_mb``, ``jobcomp_log``,
    ``log_dir``, ``munge_socket``, ``pids`` (name -> PID of the daemons we started).
    """

    def __init__(
        self,
        scratch: os.PathLike | str,
        *,
        cpus: Optional[int] = None,
        real_memory_mb: Optional[int] = None,
        link_etc_conf: bool = True,
        install: bool = True,
        start_timeout: float = 60.0,
        lock_timeout: float = 900.0,
    ):
        self.scratch = Path(scratch).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.real_memory_mb = real_memory_mb or _real_memory_mb()
        self.link_etc_conf = link_etc_conf
        self.install = install
        self.start_timeout = start_timeout
        self.lock_timeout = lock_timeout
        self.partition = PARTITION
        self.node = "localhost"
        self.cluster_name = "testcluster"

        self.conf = self.scratch / "etc" / "slurm.conf"
        self.log_dir = self.scratch / "log"
        self.state_dir = self.scratch / "state"
        self.spool_dir = self.scratch / "spool"
        self.run_dir = self.scratch / "run"
        self.munge_dir = self.scratch / "munge"
        self.munge_key = self.munge_dir / "munge.key"
        self.munge_socket = self.munge_dir / "munge.socket"
        self.jobcomp_log = self.log_dir / "jobcomp.log"
        self.env: Dict[str, str] = {}
        self.pids: Dict[str, int] = {}
        self.timings: Dict[str, float] = {}

        self._procs: Dict[str, subprocess.Popen] = {}
        self._short_socket_dir: Optional[Path] = None
        self._etc_action: Optional[str] = None  # "linked" while /etc/slurm/slurm.conf is ours
        self._etc_dir_created = False
        self._lock_fh = None
        self._started = False
        self._atexit_registered = False
        self._registry = _lock_dir() / REGISTRY_NAME
        self.reaped_leftovers: List[int] = []

    # ----------------------------------------------------------------- public API

    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def environ(self, base: Optional[Dict[str, str]] = None) -> Dict[str, str]:
        """A full environment for Slurm clients: ``base`` (default os.environ) plus ``env``."""
        env = dict(os.environ if base is None else base)
        # a client inside some other allocation must not talk to that one
        for key in list(env):
            if key.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_")):
                del env[key]
        env.update(self.env)
        return env

    def run(self, *args: str, check: bool = True, timeout: float = 120, **kw):
        """Run a Slurm client command against this cluster; returns CompletedProcess (text).

        With ``check`` a failure raises :class:`SlurmCommandError`, whose message has stderr.
        """
        proc = subprocess.run(
            list(args),
            env=self.environ(),
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if check and proc.returncode != 0:
            raise SlurmCommandError(proc.returncode, proc.args, proc.stdout, proc.stderr)
        return proc

    def start(self) -> "SlurmCluster":
        if self._started:
            return self
        t0 = time.monotonic()
        if self.install:
            ensure_installed()
        else:
            if not find_executable("slurmctld"):
                raise SlurmUnavailable("slurmctld not installed")
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test cluster runs its daemons as root")
        self.timings["install_check_s"] = time.monotonic() - t0

        self._acquire_lock()
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        self._started = True
        try:
            # we hold the lock, so no live cluster owns what the registry still lists
            self.reaped_leftovers = reap_leftovers(self._registry)
            t1 = time.monotonic()
            self._make_dirs()
            self._write_config()
            self._start_munge()
            self._link_etc_conf()
            self._start_slurm()
            self._wait_idle()
            self.timings["start_s"] = time.monotonic() - t1
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel jobs, stop our daemons by PID, undo /etc/slurm changes. Safe to call twice."""
        if not self._started:
            return
        t0 = time.monotonic()
        try:
            self._cancel_all_jobs()
        except Exception:
            pass
        try:
            # reverse start order: slurmd, slurmctld, munged
            for name in ("slurmd", "slurmctld", "munged"):
                proc = self._procs.get(name)
                if proc is not None:
                    self._terminate(name, proc)
                    del self._procs[name]
        finally:
            try:
                self._unlink_etc_conf()
            finally:
                if self._short_socket_dir is not None:
                    shutil.rmtree(self._short_socket_dir, ignore_errors=True)
                    self._short_socket_dir = None
                if not self._procs:  # keep the lock while any daemon of ours may still run
                    self._release_lock()
                    self._started = False
        self.timings["stop_s"] = time.monotonic() - t0

    # clients -------------------------------------------------------------

    def sbatch(self, *args: str, timeout: float = 60) -> str:
        """``sbatch --parsable ARGS``; returns the job id."""
        out = self.run("sbatch", "--parsable", *args, timeout=timeout).stdout
        return out.strip().split(";")[0]

    def show_job(self, job_id: str) -> Dict[str, str]:
        """``scontrol show job -o ID`` as a dict ({} when Slurm has forgotten the job)."""
        proc = self.run("scontrol", "show", "job", "-o", str(job_id), check=False)
        if proc.returncode != 0 or not proc.stdout.strip():
            return {}
        return parse_key_values(proc.stdout.splitlines()[0])

    def squeue(self) -> List[Dict[str, str]]:
        """Jobs ctld still knows (any state) as dicts: id, name, state, nodes, cpus, nodelist."""
        fmt = "%i|%j|%T|%D|%C|%N"
        proc = self.run("squeue", "-h", "--states=all", f"--format={fmt}")
        keys = ("id", "name", "state", "nodes", "cpus", "nodelist")
        return [dict(zip(keys, line.split("|"))) for line in proc.stdout.splitlines() if line]

    def wait_job(self, job_id: str, timeout: float = 120, poll: float = 0.25) -> Dict[str, str]:
        """Wait until the job leaves PENDING/RUNNING/COMPLETING; returns ``show_job`` dict."""
        deadline = time.monotonic() + timeout
        info: Dict[str, str] = {}
        while time.monotonic() < deadline:
            info = self.show_job(job_id)
            state = info.get("JobState", "")
            if state and state not in ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING"):
                return info
            time.sleep(poll)
        raise TimeoutError(
            f"job {job_id} not finished after {timeout}s: {info}\n{self.log_tail()}"
        )

    def job_records(self) -> List[Dict[str, object]]:
        """Finished jobs from the job completion log (``jobcomp/filetxt``), oldest first.

        Each record holds every ``Key=Value`` of the line (strings, e.g. ``JobId``, ``Name``,
        ``JobState``, ``NodeCnt``, ``ProcCnt``, ``Partition``, ``ExitCode``, ``WorkDir``) plus
        ``tres`` (dict from ``Tres=cpu=2,mem=...,node=1``) and the ints ``cpus``/``nodes``.
        The log holds whole jobs, not steps, and has no task count: use :meth:`show_job`
        (``NumTasks``) while ctld still remembers the job (``MinJobAge``).
        """
        if not self.jobcomp_log.exists():
            return []
        records: List[Dict[str, object]] = []
        for line in self.jobcomp_log.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            rec: Dict[str, object] = dict(parse_key_values(line))
            rec["tres"] = _tres(str(rec.get("Tres", "")))
            for key, src in (("cpus", "ProcCnt"), ("nodes", "NodeCnt")):
                try:
                    rec[key] = int(str(rec.get(src, "")))
                except ValueError:
                    rec[key] = None
            records.append(rec)
        return records

    def job_record(self, job_id: str, timeout: float = 30) -> Dict[str, object]:
        """The job completion record of one job, waiting briefly for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            for rec in self.job_records():
                if rec.get("JobId") == str(job_id):
                    return rec
            if time.monotonic() > deadline:
                raise TimeoutError(f"no job completion record for job {job_id}")
            time.sleep(0.2)

    def log_tail(self, lines: int = 25) -> str:
        parts = []
        for name in ("munged.stdout", "slurmctld.log", "slurmd.log", "slurmd.stdout"):
            path = self.log_dir / name
            if path.exists():
                text = _tail(path.read_text(errors="replace"), lines)
                parts.append(f"--- {path.name} (last {lines} lines) ---\n{text}")
            else:
                parts.append(f"--- {path.name}: not written ---")
        return "\n".join(parts)

    # ----------------------------------------------------------------- internals

    def _acquire_lock(self) -> None:
        others = [c for c in _ACTIVE if c is not self]
        if others:
            # flock would make this process wait for itself
            raise RuntimeError(
                f"a test Slurm cluster is already running in this process ({others[0].scratch}); "
                "stop it first (only one per machine: /etc/slurm/slurm.conf is global)"
            )
        lock_path = _lock_dir() / LOCK_PATH_NAME
        fh = open(lock_path, "a+")
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    fh.close()
                    raise RuntimeError(
                        f"another test Slurm cluster holds {lock_path} for over "
                        f"{self.lock_timeout}s"
                    ) from e
                time.sleep(0.5)
        self._lock_fh = fh
        _ACTIVE.append(self)

    def _release_lock(self) -> None:
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        if self._lock_fh is not None:
            try:
                fcntl.flock(self._lock_fh, fcntl.LOCK_UN)
            finally:
                self._lock_fh.close()
                self._lock_fh = None

    def _make_dirs(self) -> None:
        for d in (self.conf.parent, self.log_dir, self.state_dir, self.spool_dir,
                  self.run_dir, self.munge_dir):
            d.mkdir(parents=True, exist_ok=True)
        # munged refuses group/world-writable folders on its paths; others may reach the socket
        os.chmod(self.munge_dir, 0o755)
        # slurmd logs an error when its spool folder is missing at start
        (self.spool_dir / f"slurmd-{self.node}").mkdir(exist_ok=True)
        # unix socket paths are limited to 107 bytes: fall back to a short private folder
        if len(str(self.munge_socket)) > 100:
            self._short_socket_dir = Path(tempfile.mkdtemp(prefix="munge-"))
            os.chmod(self._short_socket_dir, 0o700)
            self.munge_socket = self._short_socket_dir / "munge.socket"

    def _write_config(self) -> None:
        self.ctld_port = _free_port()
        self.slurmd_port = _free_port()
        while self.slurmd_port == self.ctld_port:  # pragma: no cover
            self.slurmd_port = _free_port()
        conf = f"""\
{MARKER}
# A one-node test cluster; every path lives under its scratch folder.
ClusterName={self.cluster_name}
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={self.ctld_port}
SlurmdPort={self.slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={self.state_dir}
SlurmdSpoolDir={self.spool_dir}/slurmd-%n
SlurmctldPidFile={self.run_dir}/slurmctld.pid
SlurmdPidFile={self.run_dir}/slurmd-%n.pid
SlurmctldLogFile={self.log_dir}/slurmctld.log
SlurmdLogFile={self.log_dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
# schedule batch jobs at submit time (default: up to 3 s later)
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# jobs without --mem get a slice, not the whole node (which would serialise all jobs)
DefMemPerCPU={max(100, min(1024, self.real_memory_mb // self.cpus))}
# keep finished jobs visible to squeue/scontrol (snakemake's squeue status command)
MinJobAge=600
# no slurmdbd: finished jobs are recorded in the job completion log instead
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc={self.jobcomp_log}
# trust the node line below even where the hardware topology differs (e.g. hyperthreads)
SlurmdParameters=config_overrides
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.real_memory_mb} \
State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        self.conf.write_text(conf)
        os.chmod(self.conf, 0o644)
        self.env = {"SLURM_CONF": str(self.conf)}

    def _spawn(self, name: str, argv: List[str]) -> subprocess.Popen:
        out = open(self.log_dir / f"{name}.stdout", "ab")
        env = self.environ()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(self.scratch),
            start_new_session=True,  # Ctrl-C in the terminal reaches pytest, not them
            close_fds=True,
        )
        out.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid
        entries = _read_registry(self._registry)
        entries.append({"pid": proc.pid, "start": _proc_start_ticks(proc.pid), "name": name,
                        "scratch": str(self.scratch)})
        _write_registry(self._registry, entries)
        return proc

    def _wait_for(self, what: str, predicate, proc_names: Iterable[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            for n in proc_names:
                p = self._procs.get(n)
                if p is not None and p.poll() is not None:
                    raise RuntimeError(
                        f"{n} exited with code {p.returncode} while waiting for {what}\n"
                        + self._stdout_tail(n)
                        + "\n"
                        + self.log_tail()
                    )
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout}s waiting for {what}\n{self.log_tail()}")

    def _stdout_tail(self, name: str) -> str:
        path = self.log_dir / f"{name}.stdout"
        if path.exists():
            return f"--- {path.name} ---\n" + _tail(path.read_text(errors="replace"))
        return ""

    def _start_munge(self) -> None:
        self.munge_key.write_bytes(secrets.token_bytes(1024))
        os.chmod(self.munge_key, 0o400)
        self._spawn(
            "munged",
            [
                find_executable("munged") or "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={self.munge_key}",
                f"--pid-file={self.run_dir}/munged.pid",  # unused in the foreground
                f"--log-file={self.log_dir}/munged.log",  # idem: it logs to munged.stdout
                f"--seed-file={self.munge_dir}/munged.seed",
                "--num-threads=2",
                "--force",  # e.g. a stale socket of a killed run: start anyway
            ],
        )
        self._wait_for("the munge socket", self.munge_socket.exists, ["munged"], 20)

    def _start_slurm(self) -> None:
        self._spawn("slurmctld", [find_executable("slurmctld") or "slurmctld",
                                  "-D", "-i", "-f", str(self.conf)])

        def ctld_up() -> bool:
            p = subprocess.run(["scontrol", "ping"], env=self.environ(),
                               capture_output=True, text=True)
            return p.returncode == 0 and "UP" in p.stdout

        self._wait_for("slurmctld to answer", ctld_up, ["slurmctld"], self.start_timeout)
        self._spawn("slurmd", [find_executable("slurmd") or "slurmd",
                               "-D", "-N", self.node, "-f", str(self.conf)])

    def _wait_idle(self) -> None:
        def idle() -> bool:
            p = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.environ(),
                               capture_output=True, text=True)
            return p.returncode == 0 and any(
                line.split()[1:2] == ["idle"] for line in p.stdout.splitlines()
            )

        self._wait_for("the node to be idle in sinfo", idle, ["slurmctld", "slurmd"],
                       self.start_timeout)

    def _cancel_all_jobs(self) -> None:
        if "slurmctld" not in self._procs or self._procs["slurmctld"].poll() is not None:
            return
        active = ("PENDING", "RUNNING", "COMPLETING", "CONFIGURING", "SUSPENDED")
        jobs = [j for j in self.squeue() if j["state"] in active]
        if not jobs:
            return
        self.run("scancel", *[j["id"] for j in jobs], check=False)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not [j for j in self.squeue() if j["state"] in active]:
                return
            time.sleep(0.2)

    def _terminate(self, name: str, proc: subprocess.Popen, timeout: float = 20) -> None:
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        entries = [e for e in _read_registry(self._registry) if e.get("pid") != proc.pid]
        if entries:
            _write_registry(self._registry, entries)
        elif self._registry.exists():
            self._registry.unlink()

    # /etc/slurm/slurm.conf --------------------------------------------------

    @staticmethod
    def _is_ours(path: Path) -> bool:
        """A symlink to a config we wrote (or a dangling one left by a killed run)."""
        if not path.is_symlink():
            return False
        target = Path(os.readlink(path))
        if not target.exists():
            return target.name == "slurm.conf"
        try:
            with open(target, errors="replace") as fh:
                return fh.readline().strip() == MARKER
        except OSError:
            return False

    def _link_etc_conf(self) -> None:
        if not self.link_etc_conf:
            return
        etc = ETC_SLURM_CONF
        if not etc.parent.exists():
            etc.parent.mkdir(parents=True)
            self._etc_dir_created = True
        if etc.is_symlink() or etc.exists():
            if self._is_ours(etc):
                etc.unlink()  # stale link of an earlier run that was killed
            else:
                if ETC_BACKUP.exists() or ETC_BACKUP.is_symlink():
                    raise RuntimeError(
                        f"{etc} is not ours and {ETC_BACKUP} already exists: move one of them "
                        "away by hand before running the Slurm tests"
                    )
                os.rename(etc, ETC_BACKUP)
        os.symlink(self.conf, etc)
        self._etc_action = "linked"

    def _unlink_etc_conf(self) -> None:
        if self._etc_action is None:
            return
        etc = ETC_SLURM_CONF
        if etc.is_symlink() and Path(os.readlink(etc)) == self.conf:
            etc.unlink()
        if (ETC_BACKUP.exists() or ETC_BACKUP.is_symlink()) and not (
            etc.exists() or etc.is_symlink()
        ):
            os.rename(ETC_BACKUP, etc)
        if self._etc_dir_created:
            try:
                etc.parent.rmdir()
            except OSError:
                pass
            self._etc_dir_created = False
        self._etc_action = None
