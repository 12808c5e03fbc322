"""The whole recipe through profiles/slurm against a real one-node Slurm cluster: training as one
2-task job (srun, `--launcher slurm`, DeepSpeed ZeRO-2 on CPU), the other heavy rules as jobs."""

import time

import pytest

from harness.workflow import assert_taught, read_json, snakemake, variant
from xtuner_recipe.layout import ARTIFACTS

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def test_recipe_through_slurm(slurm_cluster, tmp_path, shared_results):
    overrides = {**variant("slurm2"), "results_dir": str(shared_results)}
    started = time.time()
    result = snakemake(
        tmp_path, overrides,
        # quicker polling than a real cluster needs
        "--seconds-between-status-checks", "1", "--slurm-init-seconds-before-status-checks", "2",
        "--retries", "0",
        profile="slurm", env=slurm_cluster.environ())
    took = time.time() - started
    assert result.returncode == 0, (result.stdout + result.stderr)[-8000:]
    print(f"recipe through slurm: {took:.0f} s")

    # Slurm's own records: the job completion log, and ctld's memory of each job (MinJobAge).
    records = {str(r["JobId"]): r for r in slurm_cluster.job_records()
               if r.get("WorkDir") == str(tmp_path)}
    jobs = {job_id: slurm_cluster.show_job(job_id) for job_id in records}
    by_rule = {info["Comment"].removeprefix("rule_").split("_wildcards")[0]: job_id
               for job_id, info in jobs.items()}
    assert set(by_rule) >= {"train", "hf_adapter", "merge", "evaluate"}, jobs
    assert not {"data", "xtuner_config", "report"} & set(by_rule)  # localrules stay local
    assert all(r["JobState"] == "COMPLETED" for r in records.values()), records

    for rule, job_id in sorted(by_rule.items()):  # evidence, shown with pytest -s
        record, info = records[job_id], jobs[job_id]
        print(f"slurm job {job_id} rule={rule} state={record['JobState']} cpus={record['cpus']} "
              f"tasks={info['NumTasks']} nodes={info['NumNodes']} tres={record.get('Tres')}")
    train = jobs[by_rule["train"]]
    assert train["NumTasks"] == "2" and train["NumNodes"] == "1", train
    assert records[by_rule["train"]]["cpus"] == 2
    assert records[by_rule["train"]]["tres"]["mem"] == "6000M"
    assert train["TimeLimit"] == "00:30:00"

    run_dir = shared_results / "slurm2"
    final = read_json(run_dir / "train" / "final_checkpoint.json")
    assert final["launcher"] == "slurm" and final["world_size"] == 2 and final["deepspeed"]
    log = (run_dir / "logs" / "train.log").read_text(errors="replace")
    assert "srun --nodes=1 --ntasks-per-node=2 --kill-on-bad-exit=1" in log
    assert "--launcher slurm" in log
    for artifact in ARTIFACTS:
        assert (run_dir / artifact).is_file(), artifact
    assert_taught(run_dir)
