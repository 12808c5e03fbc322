"""How training meets Slurm: the executor check and the failed jobs' logs."""

import os
import time

import pytest

from xtuner_recipe.messages import ConfigError
from xtuner_recipe.slurm import check_executor, failed_job_logs


def test_the_slurm_executor_needs_the_slurm_launcher():
    """Defect: a --config with --profile profiles/slurm silently dropped the profile's
    train.launcher, and training ran without srun and DeepSpeed."""
    check_executor("slurm", "slurm", environ={})
    with pytest.raises(ConfigError, match="launcher resolved to 'none'.*replaces the profile's "
                                          "`config:` list.*--configfile"):
        check_executor("slurm", "none", environ={})
    check_executor("slurm-jobstep", "slurm", environ={})  # inside the job: the same rule


def test_the_slurm_launcher_needs_a_slurm_job():
    with pytest.raises(ConfigError, match="train.launcher = 'slurm'.*profiles/slurm"):
        check_executor("local", "slurm", environ={})
    check_executor("local", "slurm", environ={"SLURM_JOB_ID": "7"})  # inside an allocation
    check_executor("local", "none", environ={})


def test_failed_jobs_logs_are_quoted_into_the_rules_log(tmp_path):
    logdir = tmp_path / "slurm_logs"
    (logdir / "rule_train").mkdir(parents=True)
    (logdir / "rule_merge").mkdir(parents=True)
    old = logdir / "rule_merge" / "11.log"
    old.write_text("an earlier run's failure\n")
    os.utime(old, (1000, 1000))
    failed = logdir / "rule_train" / "12.log"
    failed.write_text("".join(f"line {i}\n" for i in range(100)) +
                      "srun: fatal: Could not establish a configuration source\n")
    rule_logs = tmp_path / "logs"
    rule_logs.mkdir()
    (rule_logs / "train.log").write_text("")  # empty: the error never reached it

    quotes = failed_job_logs(logdir, time.time() - 60, lambda rule: rule_logs / f"{rule}.log")
    assert len(quotes) == 1  # the earlier run's log is not this run's
    assert quotes[0].splitlines()[0].endswith(f"job 12 (rule train), {failed}, last 40 lines:")
    assert quotes[0].splitlines()[-1] == "  | srun: fatal: Could not establish a configuration " \
                                         "source"
    assert "Could not establish" in (rule_logs / "train.log").read_text()
    assert failed_job_logs(tmp_path / "none", 0, str) == []
