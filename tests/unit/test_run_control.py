"""The working folder is held for one run at a time; a killed run's locks do not need --unlock;
a failed run ends with the failed jobs' own lines."""

import json
import subprocess
import sys

import pytest

from harness.workflow import another_run_holding
from xtuner_recipe import run_control
from xtuner_recipe.messages import ConfigError


@pytest.fixture
def other_run(tmp_path):
    with another_run_holding(tmp_path) as holder:
        yield holder


def test_a_live_run_holding_the_folder_is_named_and_waiting_is_the_fix(tmp_path, monkeypatch,
                                                                       other_run):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        run_control.hold_folder("mine", print)
    message = str(refused.value)
    assert f"pid {other_run.pid}" in message and "run_name other" in message
    assert "Wait for it to finish" in message and "Do not use --unlock" in message


def test_the_folder_is_free_again_when_its_holder_is_gone(tmp_path, monkeypatch, other_run):
    other_run.kill()
    other_run.wait()
    monkeypatch.chdir(tmp_path)
    held = run_control.hold_folder("mine", print)
    assert json.loads(run_control.HOLDER.read_text())["run_name"] == "mine"
    held.close()


def test_a_killed_runs_snakemake_locks_are_cleared(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_control.SNAKEMAKE_LOCKS.mkdir(parents=True)
    (run_control.SNAKEMAKE_LOCKS / "0.output.lock").write_text("results/x\n")
    run_control.HOLDER.write_text(json.dumps({"pid": 4242, "started": "then"}))
    said = []
    held = run_control.hold_folder("mine", said.append)
    assert not list(run_control.SNAKEMAKE_LOCKS.glob("*.lock"))
    assert "killed in this folder (pid 4242, started then)" in said[0]
    held.close()


def test_a_failed_runs_closing_lines_are_the_failed_jobs_own(tmp_path, monkeypatch):
    """Read from the log of a real Snakemake run: one job fails with the recipe's line last in its
    log, one crashes with a traceback, one succeeds."""
    (tmp_path / "Snakefile").write_text(
        'rule all:\n    input: "said", "crashed", "fine"\n\n'
        'rule said:\n    output: "said"\n    log: "said.log"\n'
        '    shell: "(echo \'[xtuner-recipe] a step\'; echo \'Traceback: os error 28\';'
        ' echo \'[xtuner-recipe] merge ran out of disk space\') > {log} 2>&1; exit 1"\n\n'
        'rule crashed:\n    output: "crashed"\n    log: "crashed.log"\n'
        '    shell: "(echo \'[xtuner-recipe] a step\'; echo \'Traceback ...\') > {log}; exit 1"\n\n'
        'rule fine:\n    output: "fine"\n    log: "fine.log"\n'
        '    shell: "echo \'[xtuner-recipe] done\' > {log}; touch {output}"\n')
    result = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "--keep-going"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    logs = list((tmp_path / ".snakemake" / "log").glob("*.snakemake.log"))  # onerror's `log`
    monkeypatch.chdir(tmp_path)  # Snakemake names the logs relative to its working folder
    assert run_control.failed_jobs_last_lines(logs) == ["[xtuner-recipe] merge ran out of disk space"]
    assert run_control.failed_jobs_last_lines([]) == []
