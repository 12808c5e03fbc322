"""A real one-node Slurm cluster (tests/harness/slurm_cluster.py) and the Snakemake profile
profiles/slurm.

Run: ``python -m pytest tests/cluster -m slurm -v`` (as root; installs slurm-wlm and munge with
apt-get when missing). The ``slurm_cluster`` fixture comes from the harness (tests/harness/slurm.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import harness.slurm_cluster as sc
from harness.workflow import REPO
PROFILE = REPO / "profiles" / "slurm"

slurm = [pytest.mark.slurm, pytest.mark.slow]


def _skip_unless_root():
    if os.geteuid() != 0:
        pytest.skip("the test Slurm cluster runs its daemons as root (run the tests as root)")


# --------------------------------------------------------------------- no daemons needed


def test_parse_key_values_keeps_values_with_spaces():
    line = "JobId=7 Name=my job JobState=COMPLETED WorkDir=/a b/c Tres=cpu=2,mem=10M,node=1"
    rec = sc.parse_key_values(line)
    assert rec["Name"] == "my job"
    assert rec["WorkDir"] == "/a b/c"
    assert rec["Tres"] == "cpu=2,mem=10M,node=1"


def test_etc_conf_foreign_file_is_backed_up_and_restored(tmp_path, monkeypatch):
    etc = tmp_path / "etc" / "slurm" / "slurm.conf"
    etc.parent.mkdir(parents=True)
    etc.write_text("ClusterName=site\n")
    monkeypatch.setattr(sc, "ETC_SLURM_CONF", etc)
    monkeypatch.setattr(sc, "ETC_BACKUP", etc.with_name("slurm.conf.orig-by-test-cluster"))
    cluster = sc.SlurmCluster(tmp_path / "scratch")
    cluster.conf.parent.mkdir(parents=True)
    cluster.conf.write_text(sc.MARKER + "\n")
    cluster._link_etc_conf()
    assert etc.is_symlink() and Path(os.readlink(etc)) == cluster.conf
    cluster._unlink_etc_conf()
    cluster._unlink_etc_conf()  # twice is harmless
    assert not etc.is_symlink() and etc.read_text() == "ClusterName=site\n"
    assert not sc.ETC_BACKUP.exists()


def test_etc_conf_stale_link_of_killed_run_is_replaced_and_removed(tmp_path, monkeypatch):
    etc = tmp_path / "etc" / "slurm" / "slurm.conf"
    etc.parent.mkdir(parents=True)
    etc.symlink_to(tmp_path / "gone" / "slurm.conf")  # dangling: its scratch was deleted
    monkeypatch.setattr(sc, "ETC_SLURM_CONF", etc)
    monkeypatch.setattr(sc, "ETC_BACKUP", etc.with_name("slurm.conf.orig-by-test-cluster"))
    cluster = sc.SlurmCluster(tmp_path / "scratch")
    cluster.conf.parent.mkdir(parents=True)
    cluster.conf.write_text(sc.MARKER + "\n")
    cluster._link_etc_conf()
    assert Path(os.readlink(etc)) == cluster.conf
    cluster._unlink_etc_conf()
    assert not etc.exists() and not etc.is_symlink()


# --------------------------------------------------------------------- real daemons


@pytest.mark.slurm
@pytest.mark.slow
def test_cluster_lifecycle_start_stop_twice(tmp_path):
    """Start, use, stop, stop again: every daemon we started is gone, /etc/slurm is as before."""
    _skip_unless_root()
    if sc.active_clusters():
        pytest.skip("the session's Slurm cluster is already running (one per machine)")
    etc = sc.ETC_SLURM_CONF
    # A foreign config must come back; a stale link of a killed earlier cluster is ours to drop.
    foreign_before = (etc.is_symlink() or etc.exists()) and not sc.SlurmCluster._is_ours(etc)
    t0 = time.monotonic()
    try:
        cluster = sc.SlurmCluster(tmp_path / "cluster").start()
    except sc.SlurmUnavailable as exc:
        pytest.skip(f"no Slurm on this machine: {exc}")
    started = time.monotonic() - t0
    with cluster:  # context manager: stop() on exit, on top of the explicit stops below
        assert set(cluster.pids) == {"munged", "slurmctld", "slurmd"}
        assert cluster.env["SLURM_CONF"] == str(cluster.conf)
        assert Path(os.readlink(sc.ETC_SLURM_CONF)) == cluster.conf
        out = cluster.run("sinfo", "-h", "-o", "%P %a %D %t").stdout.split()
        assert out == [cluster.partition + "*", "up", "1", "idle"]
        pids = dict(cluster.pids)
        t1 = time.monotonic()
        cluster.stop()
        stopped = time.monotonic() - t1
        cluster.stop()
    for name, pid in pids.items():
        assert not sc._pid_alive(pid), f"{name} (pid {pid}) still alive"
    assert (etc.is_symlink() or etc.exists()) == foreign_before
    assert not sc.active_clusters()
    print(f"cluster start {started:.2f}s (daemons {cluster.timings['start_s']:.2f}s), "
          f"stop {stopped:.2f}s")


@pytest.mark.slurm
@pytest.mark.slow
def test_sbatch_wrap_runs_and_finishes(slurm_cluster, tmp_path):
    out = tmp_path / "wrap.out"
    job = slurm_cluster.sbatch("-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID")
    info = slurm_cluster.wait_job(job, timeout=120)
    assert info["JobState"] == "COMPLETED", info
    assert info["ExitCode"] == "0:0"
    assert info["Partition"] == slurm_cluster.partition
    assert out.read_text().strip() == f"hello from {job}"


@pytest.mark.slurm
@pytest.mark.slow
def test_srun_two_tasks(slurm_cluster):
    proc = slurm_cluster.run("srun", "-n2", "hostname", timeout=120)
    assert len(proc.stdout.splitlines()) == 2, proc
    proc = slurm_cluster.run("srun", "-n2", "bash", "-c", "echo $SLURM_PROCID/$SLURM_NTASKS",
                             timeout=120)
    assert sorted(proc.stdout.split()) == ["0/2", "1/2"], proc


@pytest.mark.slurm
@pytest.mark.slow
def test_job_record_shows_requested_resources(slurm_cluster, tmp_path):
    job = slurm_cluster.sbatch(
        "-J", "two-tasks", "-n2", "--cpus-per-task=1", "--mem=200", "-o", str(tmp_path / "o"),
        "--wrap", "srun hostname",
    )
    info = slurm_cluster.wait_job(job, timeout=120)
    assert info["JobState"] == "COMPLETED", info
    assert (info["NumTasks"], info["NumCPUs"], info["NumNodes"]) == ("2", "2", "1")
    assert len((tmp_path / "o").read_text().splitlines()) == 2
    rec = slurm_cluster.job_record(job)
    assert rec["Name"] == "two-tasks"
    assert rec["JobState"] == "COMPLETED"
    assert rec["cpus"] == 2 and rec["nodes"] == 1
    assert rec["tres"]["mem"] == "200M"


SNAKEFILE = textwrap.dedent(
    """\
    rule all:
        input: "hosts.txt"

    rule two_tasks:
        output: "hosts.txt"
        resources:
            tasks=2,
            nodes=1,
            mpi="srun",
            mem_mb=300,
            runtime=5,
        shell: "{resources.mpi} -n {resources.tasks} hostname > {output}"
    """
)


@pytest.mark.slurm
@pytest.mark.slow
def test_snakemake_profile_submits_two_task_job(slurm_cluster, tmp_path):
    workdir = tmp_path / "wf"
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE)
    env = slurm_cluster.environ()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    cmd = [
        sys.executable, "-m", "snakemake",
        "--profile", str(PROFILE),
        "--directory", str(workdir),
        "--snakefile", str(workdir / "Snakefile"),
        # quicker polling than the profile's real-cluster values
        "--seconds-between-status-checks", "1",
        "--slurm-init-seconds-before-status-checks", "2",
        "--latency-wait", "5",
        "--retries", "0",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    took = time.monotonic() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    lines = (workdir / "hosts.txt").read_text().splitlines()
    assert len(lines) == 2, lines

    records = [r for r in slurm_cluster.job_records() if r.get("WorkDir") == str(workdir)]
    assert len(records) == 1, (records, log[-3000:])
    rec = records[0]
    assert rec["JobState"] == "COMPLETED"
    assert rec["cpus"] == 2 and rec["nodes"] == 1
    assert rec["tres"]["mem"] == "300M"
    info = slurm_cluster.show_job(str(rec["JobId"]))
    assert info["NumTasks"] == "2" and info["NumCPUs"] == "2", info
    assert info["Comment"] == "rule_two_tasks"
    print(f"snakemake through slurm: {took:.1f}s")
