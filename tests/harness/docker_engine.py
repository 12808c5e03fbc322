"""A private Docker engine for the container tests (and for anyone who needs one by hand).

No Docker daemon runs on the project's machines and no registry is reachable, so the tests start
Debian's own ``dockerd`` (package ``docker.io``, 20.10) as root with everything it owns in folders
the caller names:

* ``data_root`` keeps images and the build cache. Let it persist between runs (the tests use the
  repository's ignored ``.scratch/docker/data``) so a second run reuses the cached layers.
* ``run_dir`` (per run, a short path under the temporary folder by default) holds the unix socket,
  the exec-root with the managed containerd's sockets, the pid file and the daemon's log. Unix
  socket paths are limited to 107 bytes, which is why it is not put under the repository.

The daemon runs with ``--storage-driver=overlay2 --iptables=false --bridge=none``: no default
bridge network exists, so builds need ``--network host`` and containers ``--network none`` (or
``host``). Teardown stops exactly the process this module started, by its PID (SIGTERM, then
SIGKILL after a timeout), waits for it, and does the same for the containerd child that dockerd
started, should it outlive its parent. Nothing is ever stopped by name.

Usage::

    with DockerEngine(data_root=".scratch/docker/data") as engine:
        subprocess.run(["docker", "info"], env=engine.environ(), check=True)

or ``engine.start()`` / ``engine.stop()``; both are idempotent, and ``stop()`` is also registered
with ``atexit``. ``python tests/docker_engine.py --data-root DIR`` starts one in the foreground and
prints the ``DOCKER_HOST`` to export (Ctrl-C stops it).
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness.apt import AptError, apt_install

__all__ = ["DockerEngine", "EngineError", "ensure_installed"]

# Debian packages: the engine (dockerd + its containerd + runc), debootstrap for the base image,
# and bubblewrap for the Apptainer STAND-IN (containers/apptainer-standin/apptainer).
PACKAGES = {"dockerd": "docker.io", "containerd": "docker.io", "docker": "docker.io",
            "debootstrap": "debootstrap", "bwrap": "bubblewrap"}


class EngineError(RuntimeError):
    pass


def ensure_installed(tools=("dockerd", "containerd", "docker", "debootstrap")) -> None:
    """apt-get install the Debian packages that provide ``tools`` when any is missing (root only)."""
    missing = sorted({PACKAGES[t] for t in tools if shutil.which(t) is None})
    if not missing:
        return
    try:
        apt_install(missing)
    except AptError as e:
        raise EngineError(str(e)) from e
    still = [t for t in tools if shutil.which(t) is None]
    if still:
        raise EngineError(f"still missing after apt-get install: {still}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) still answers kill(0).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


class DockerEngine:
    """One private dockerd. ``data_root`` persists (image cache); ``run_dir`` is per run."""

    def __init__(self, data_root: str | os.PathLike, run_dir: str | os.PathLike | None = None,
                 *, dockerd: str = "dockerd", extra_args: tuple[str, ...] = (),
                 start_timeout: float = 60.0, stop_timeout: float = 30.0):
        self.data_root = Path(data_root).resolve()
        self._own_run_dir = run_dir is None
        self.run_dir = Path(run_dir).resolve() if run_dir is not None else None
        self.dockerd = dockerd
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._proc: subprocess.Popen | None = None
        self._containerd_pid: int | None = None
        self._lock_fd: int | None = None
        self._log = None
        self._atexit = False

    # ---- paths -----------------------------------------------------------------------------
    @property
    def socket_path(self) -> Path:
        return self._need_run_dir() / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self._need_run_dir() / "exec"

    @property
    def pidfile(self) -> Path:
        return self._need_run_dir() / "dockerd.pid"

    @property
    def logfile(self) -> Path:
        return self._need_run_dir() / "dockerd.log"

    @property
    def host(self) -> str:
        """The value for DOCKER_HOST."""
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def environ(self, base: dict | None = None) -> dict:
        """A copy of ``base`` (default: os.environ) with DOCKER_HOST pointing at this engine."""
        env = dict(os.environ if base is None else base)
        env["DOCKER_HOST"] = self.host
        env.pop("DOCKER_CONTEXT", None)
        return env

    def _need_run_dir(self) -> Path:
        if self.run_dir is None:
            raise EngineError("engine not started (no run_dir yet)")
        return self.run_dir

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "DockerEngine":
        if self.running:
            return self
        if os.geteuid() != 0:
            raise EngineError("dockerd needs root")
        ensure_installed(("dockerd", "containerd", "docker"))
        self.data_root.mkdir(parents=True, exist_ok=True)
        self._take_lock()
        try:
            if self.run_dir is None:
                self.run_dir = Path(tempfile.mkdtemp(prefix="xtr-docker-"))
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if len(str(self.exec_root / "containerd" / "containerd.sock.ttrpc")) > 100:
                raise EngineError(f"run_dir {self.run_dir} is too long for unix sockets")
            for stale in (self.socket_path, self.pidfile):
                stale.unlink(missing_ok=True)
            config = self.run_dir / "daemon.json"
            config.write_text("{}\n")  # never read the host's /etc/docker/daemon.json
            cmd = [
                self.dockerd,
                f"--host=unix://{self.socket_path}",
                f"--data-root={self.data_root}",
                f"--exec-root={self.exec_root}",
                f"--pidfile={self.pidfile}",
                f"--config-file={config}",
                "--storage-driver=overlay2",
                "--iptables=false",
                "--ip-masq=false",
                "--bridge=none",
                *self.extra_args,
            ]
            self._log = open(self.logfile, "ab")
            self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
            if not self._atexit:
                atexit.register(self.stop)
                self._atexit = True
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_lock(self) -> None:
        if self._lock_fd is not None:
            return
        lock = self.data_root.parent / f".{self.data_root.name}.engine.lock"
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise EngineError(f"another engine uses data root {self.data_root} (lock {lock})")
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.socket_path))
                s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return s.recv(64).split(b" ")[1:2] == [b"200"]
        except (OSError, IndexError):
            return False

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise EngineError(f"dockerd exited with {self._proc.returncode}:\n{self.log_tail()}")
            if self.ping():
                self._containerd_pid = self._find_containerd()
                return
            time.sleep(0.2)
        raise EngineError(f"dockerd not ready after {self.start_timeout:.0f} s:\n{self.log_tail()}")

    def _find_containerd(self) -> int | None:
        """The PID of the containerd that this dockerd started (a direct child)."""
        pidfile = self.exec_root / "containerd" / "containerd.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is None:  # fall back to the children of our dockerd
            try:
                kids = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children").read_text()
                pid = next((int(k) for k in kids.split() if "containerd" in _cmdline(int(k))), None)
            except OSError:
                pid = None
        return pid

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])
        except (OSError, EngineError):
            return "(no log)"

    def stop(self) -> None:
        """Stop the dockerd this object started (by PID), then its containerd if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        cpid, self._containerd_pid = self._containerd_pid, None
        if cpid is not None and _alive(cpid) and "containerd" in _cmdline(cpid):
            os.kill(cpid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while _alive(cpid) and time.monotonic() < deadline:
                time.sleep(0.2)
            if _alive(cpid):
                os.kill(cpid, signal.SIGKILL)
        if proc is not None:
            self._unmount_leftovers()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._release_lock()
        if self._own_run_dir and self.run_dir is not None and proc is not None:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            self.run_dir = None

    def _unmount_leftovers(self) -> None:
        """Unmount what the stopped daemon left mounted under its folders (dockerd 20.10 leaves
        exec-root/netns/default, a bind mount of its network namespace, which blocks removal)."""
        roots = [str(r) + "/" for r in (self.run_dir, self.data_root) if r is not None]
        try:
            lines = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return
        points = [ln.split()[4].replace("\\040", " ") for ln in lines]
        for point in sorted({m for m in points if any(m.startswith(r) for r in roots)},
                            key=len, reverse=True):
            subprocess.run(["umount", point], capture_output=True)
            if any(ln.split()[4] == point for ln in Path("/proc/self/mountinfo").read_text().splitlines()):
                subprocess.run(["umount", "-l", point], capture_output=True)

    def __enter__(self) -> "DockerEngine":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def info(self) -> dict:
        out = subprocess.run(["docker", "info", "--format", "{{json .}}"], env=self.environ(),
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", required=True, help="persistent image store")
    p.add_argument("--run-dir", default=None, help="socket/pid/exec-root folder (default: a temp dir)")
    a = p.parse_args(argv)
    eng = DockerEngine(a.data_root, a.run_dir)
    eng.start()
    print(f"export DOCKER_HOST={eng.host}   # dockerd pid {eng.pid}; Ctrl-C stops it", flush=True)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        eng.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
