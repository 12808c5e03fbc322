"""The whole recipe through profiles/slurm against a real one-node Slurm cluster: training as one
2-task job (srun, `--launcher slurm`, DeepSpeed ZeRO-2 on CPU), the other heavy rules as jobs;
the training job is sent SIGUSR1 mid-run (what Slurm sends ahead of the time limit), saves, requeues
itself and resumes. Also: a profile whose settings a --config dropped, and a failed job's log."""

import json
import subprocess
import time

import pytest

from harness.workflow import (assert_taught, build_dir, published, read_json, snakemake,
                              snakemake_command, snakemake_env, variant, write_overrides)
from xtuner_recipe.layout import ARTIFACTS

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

# quicker polling than a real cluster needs; no Snakemake retry: a resumed job is Slurm's requeue
FAST = ("--seconds-between-status-checks", "1", "--slurm-init-seconds-before-status-checks", "2",
        "--retries", "0")


def rule_of(info):
    return info.get("Comment", "").removeprefix("rule_").split("_wildcards")[0]


def logged_steps(run_dir):
    return [json.loads(line)["step"] for f in run_dir.glob("attempts/*/*/vis_data/scalars.json")
            for line in f.read_text().splitlines() if '"loss"' in line]


def test_recipe_through_slurm_with_a_signal_mid_training(slurm_cluster, tmp_path,
                                                         shared_results):
    overrides = {**variant("slurm2"), "results_dir": str(shared_results)}
    run_dir = shared_results / "slurm2"
    started = time.time()
    command = snakemake_command(tmp_path, write_overrides(tmp_path, overrides), *FAST,
                                profile="slurm")
    workflow = subprocess.Popen(command, cwd=tmp_path, env=snakemake_env(slurm_cluster.environ()),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline, reached = time.time() + 1200, 0
    while reached < 40:
        assert workflow.poll() is None and time.time() < deadline, "training never reached 40"
        reached = max(logged_steps(run_dir), default=0)
        time.sleep(0.3)
    train_job = next(job["id"] for job in slurm_cluster.squeue() if job["state"] == "RUNNING"
                     and rule_of(slurm_cluster.show_job(job["id"])) == "train")
    slurm_cluster.run("scancel", "--signal=USR1", train_job)
    output = workflow.communicate(timeout=1800)[0]
    took = time.time() - started
    assert workflow.returncode == 0, output[-8000:]
    print(f"recipe through slurm, signalled once: {took:.0f} s")

    # Slurm's own records: the job completion log, and ctld's memory of each job (MinJobAge).
    records = {}
    for record in slurm_cluster.job_records():
        if record.get("WorkDir") == str(tmp_path):
            records.setdefault(str(record["JobId"]), []).append(record)
    jobs = {job_id: slurm_cluster.show_job(job_id) for job_id in records}
    by_rule = {rule_of(info): job_id for job_id, info in jobs.items()}
    assert set(by_rule) >= {"train", "hf_adapter", "merge", "evaluate"}, jobs
    assert not {"data", "xtuner_config", "report", "publish"} & set(by_rule)  # local rules
    assert all(r[-1]["JobState"] == "COMPLETED" for r in records.values()), records
    for rule, job_id in sorted(by_rule.items()):  # evidence, shown with pytest -s
        info = jobs[job_id]
        print(f"slurm job {job_id} rule={rule} states={[r['JobState'] for r in records[job_id]]}"
              f" restarts={info.get('Restarts')} cpus={records[job_id][-1]['cpus']} "
              f"tasks={info['NumTasks']} nodes={info['NumNodes']}")
    train = jobs[by_rule["train"]]
    assert by_rule["train"] == train_job and train["Restarts"] == "1", train  # requeued once
    assert train["NumTasks"] == "2" and train["NumNodes"] == "1", train
    assert records[train_job][-1]["cpus"] == 2
    assert records[train_job][-1]["tres"]["mem"] == "6000M"
    assert train["TimeLimit"] == "00:30:00"

    final = read_json(published(run_dir) / "train" / "final_checkpoint.json")
    assert final["launcher"] == "slurm" and final["world_size"] == 2 and final["deepspeed"]
    [stopped] = final["stopped_on_signal"]
    assert stopped["signal"] == "SIGUSR1" and stopped["iteration"] >= reached
    assert [r.rsplit("/", 1)[1] for r in final["resumed_from"]] == \
        [f"iter_{stopped['iteration']}.pth"]  # lost nothing: resumed where the signal came
    assert final["iteration"] == 160 and final["segments"] == 2
    print(f"signal at iteration >= {reached}; saved {stopped['iteration']}; the requeued job "
          f"resumed there and ended at {final['iteration']}")
    log = (build_dir(run_dir) / "logs" / "train.log").read_text(errors="replace")
    assert "srun --nodes=1 --ntasks-per-node=2 --kill-on-bad-exit=1" in log
    assert "--launcher slurm" in log
    segments = [json.loads(line) for line in (run_dir / "attempts" / final["attempt"] /
                                              "segments.jsonl").read_text().splitlines()]
    assert [s.get("requeued") for s in segments] == [True, None]  # the job requeued itself
    for artifact in ARTIFACTS:
        assert (published(run_dir) / artifact).is_file(), artifact
    assert_taught(run_dir)
    # progress lands in each job's Slurm log, where a cluster user looks (tail -f)
    job_logs = tmp_path / ".snakemake" / "slurm_logs"
    for rule, line in (("train", "train: iteration "), ("evaluate", "evaluate: merged model")):
        text = "".join(p.read_text(errors="replace") for p in job_logs.glob(f"rule_{rule}/**/*.log"))
        assert line in text, (rule, text[-2000:])


def test_a_config_that_drops_the_profiles_launcher_is_refused(slurm_cluster, tmp_path,
                                                              shared_results):
    """Defect: a --config replaced the profile's `config:` list and training fell back to one
    process without srun and DeepSpeed, silently."""
    overrides = {**variant("slurm2"), "run_name": "dropped", "results_dir": str(shared_results)}
    result = snakemake(tmp_path, overrides, *FAST, "--config", "assistant={name: Ada}",
                       profile="slurm", env=slurm_cluster.environ())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "train.launcher resolved to 'none'" in output and "--configfile" in output
    assert "Submitted job" not in output and not (shared_results / "dropped").exists()


def test_a_failed_jobs_slurm_log_is_quoted(slurm_cluster, tmp_path, shared_results):
    """Defect: a failed training job said only "Detailed failure reason unavailable"; its Slurm
    log held the error."""
    overrides = {**variant("slurm2"), "run_name": "slurmfail", "results_dir": str(shared_results),
                 "train": {"device": "cuda"}}  # this machine has no GPU: the job fails
    result = snakemake(tmp_path, overrides, *FAST, profile="slurm", env=slurm_cluster.environ())
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Slurm log of the failed job" in output and "(rule train)" in output
    train_log = (build_dir(shared_results / "slurmfail") / "logs" / "train.log").read_text()
    assert "Slurm log of the failed job" in train_log and "no usable GPU" in train_log
    assert not published(shared_results / "slurmfail").exists()
