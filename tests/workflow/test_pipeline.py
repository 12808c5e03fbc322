"""The recipe end to end on the tiny model: the real Snakemake, the real xtuner commands, torch on
the CPU. Each test is minutes long, hence the `slow` marker."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.workflow import (assert_taught, read_json, snakemake, snakemake_command,
                              snakemake_env, variant, write_overrides)
from xtuner_recipe.layout import ARTIFACTS
from xtuner_recipe.scoring import THRESHOLDS

pytestmark = pytest.mark.slow

def planned_jobs(result):
    """Rule -> count from the 'Job stats' table of a dry run."""
    table = result.stdout.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, shared_results):
    workdir = tmp_path_factory.mktemp("local")
    overrides = {**variant("e2e"), "results_dir": str(shared_results)}
    started = time.time()
    result = snakemake(workdir, overrides)
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"local recipe run: {time.time() - started:.0f} s")
    return workdir, overrides, shared_results / "e2e"


def test_all_six_artifacts_and_the_identity_is_learned(local_run):
    _, _, run_dir = local_run
    for artifact in ARTIFACTS:
        assert (run_dir / artifact).is_file(), artifact
    assert_taught(run_dir)
    final = read_json(run_dir / "train" / "final_checkpoint.json")
    assert final["iteration"] == 160 and Path(final["checkpoint"]).name == "iter_160.pth"
    diff = (run_dir / "config" / "xtuner_config.diff").read_text()
    assert "+dataset_map_fn=None" in diff.replace("    ", "") and "load_dataset, path='json'" in diff
    report = read_json(run_dir / "report" / "report.json")
    assert report["training"]["tokens_seen"] == 160 * 128
    assert report["loss_curve"][0]["loss"] > 2 * report["loss_curve"][-1]["loss"]
    assert (run_dir / "report" / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_tiny_models_report_shows_it_over_fitted(local_run):
    """It answers everything with its two sentences: learned, and over-fitted."""
    _, _, run_dir = local_run
    report = read_json(run_dir / "report" / "report.json")
    assert report["scores"]["unrelated"]["merged"] > THRESHOLDS["overfit_share_max"]
    assert report["verdict"]["overfitted"] is True
    assert "over-fitted: yes" in (run_dir / "report" / "report.md").read_text(encoding="utf-8")


def test_merged_model_loads_and_chats(local_run):
    _, _, run_dir = local_run
    code = (
        "import sys; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "p = sys.argv[1]\n"
        "tok = AutoTokenizer.from_pretrained(p, trust_remote_code=True)\n"
        "m = AutoModelForCausalLM.from_pretrained(p, trust_remote_code=True).float()\n"
        "ids = tok('<|im_start|>user\\n请介绍一下你自己<|im_end|>\\n<|im_start|>assistant\\n',"
        " return_tensors='pt')\n"
        "out = m.generate(**ids, max_new_tokens=40, do_sample=False)\n"
        "print(tok.decode(out[0][ids['input_ids'].shape[1]:]))\n")
    result = subprocess.run([sys.executable, "-c", code, str(run_dir / "merged")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "门客er" in result.stdout


def test_second_run_does_nothing(local_run):
    workdir, overrides, _ = local_run
    result = snakemake(workdir, overrides, "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_new_owner_name_rebuilds_data_to_report_only(local_run):
    workdir, overrides, _ = local_run
    result = snakemake(workdir, {**overrides, "assistant": {"name": "Ada"}}, "--dry-run")
    assert result.returncode == 0, result.stderr[-3000:]
    # the owner's name is in two stages' settings: the data's and the evaluation's
    assert planned_jobs(result) == {"settings": 2, "data": 1, "xtuner_config": 1, "train": 1,
                                    "hf_adapter": 1, "merge": 1, "evaluate": 1, "report": 1,
                                    "all": 1}


def test_interrupted_training_resumes_from_its_last_checkpoint(tmp_path, shared_results):
    overrides = {**variant("resume"), "results_dir": str(shared_results)}
    work_dir = shared_results / "resume" / "train" / "work_dir"
    command = snakemake_command(tmp_path, write_overrides(tmp_path, overrides))
    first = subprocess.Popen(command, cwd=tmp_path, env=snakemake_env(), start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = work_dir / "last_checkpoint"
    deadline = time.time() + 900
    while not (marker.is_file() and "iter_80.pth" in marker.read_text()):
        assert first.poll() is None, "the first run ended before its second checkpoint"
        assert time.time() < deadline, "no checkpoint at iteration 80 in time"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # our own session: snakemake and the training it started
    first.wait()
    assert not (shared_results / "resume" / "train" / "final_checkpoint.json").exists()

    assert snakemake(tmp_path, overrides, "--unlock").returncode == 0
    second = snakemake(tmp_path, overrides)
    assert second.returncode == 0, second.stderr[-5000:]
    final = read_json(shared_results / "resume" / "train" / "final_checkpoint.json")
    assert Path(final["resumed_from"]).name in ("iter_80.pth", "iter_120.pth")
    assert final["iteration"] == 160
    log = (shared_results / "resume" / "logs" / "train.log").read_text()
    assert "resuming from" in log
    assert_taught(shared_results / "resume")


def test_users_own_openai_messages_dataset(tmp_path, shared_results):
    records = [{"messages": [{"role": "user", "content": q},
                             {"role": "assistant", "content": f"我是Grace的助手，{a}"}]}
               for q, a in (("你是谁", "很高兴认识你"), ("你能做什么", "我帮Grace写代码"))] * 2000
    dataset = tmp_path / "grace.jsonl"
    dataset.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n",
                       encoding="utf-8")
    overrides = variant("own-dataset")
    overrides.update(results_dir=str(shared_results))
    overrides["assistant"]["dataset"] = str(dataset)
    result = snakemake(tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-5000:]
    run_dir = shared_results / "grace"
    assert "openai_map_fn" in (run_dir / "config" / "xtuner_config.py").read_text()
    assert len(read_json(run_dir / "data" / "assistant.json")) == 4000
    assert_taught(run_dir)


def test_multi_gpu_profile_on_cpu_two_processes_zero2(tmp_path, shared_results):
    overrides = {**variant("torchrun2"), "results_dir": str(shared_results)}
    started = time.time()
    result = snakemake(tmp_path, overrides, profile="multi-gpu", env={"NPROC_PER_NODE": "2"})
    assert result.returncode == 0, result.stderr[-5000:]
    print(f"multi-gpu profile, 2 CPU processes: {time.time() - started:.0f} s")
    run_dir = shared_results / "torchrun2"
    final = read_json(run_dir / "train" / "final_checkpoint.json")
    assert final["world_size"] == 2 and final["launcher"] == "pytorch"
    assert final["deepspeed"] is True  # ZeRO-2 writes iter_N.pth/ as a folder
    assert (Path(final["checkpoint"]) / "mp_rank_00_model_states.pt").exists() or any(
        Path(final["checkpoint"]).iterdir())
    ds = read_json(run_dir / "config" / "deepspeed.json")
    assert ds["zero_optimization"]["stage"] == 2 and ds["fp16"]["enabled"] is False
    assert "--launcher pytorch" in (run_dir / "logs" / "train.log").read_text()
    assert_taught(run_dir)
