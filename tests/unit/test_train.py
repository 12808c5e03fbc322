"""The training wrapper's pure parts: the attempt's identity, resume and reuse, the segments'
wall time, command and env."""

import json
import os
import sys

import pytest

from xtuner_recipe.settings import TrainSettings
from xtuner_recipe.train import (COMPLETE, INPUTS, SEGMENTS, attempt_id, attempt_inputs,
                                 checkpoint_iteration, close_interrupted, last_checkpoint,
                                 launch_env, prepare_attempt, read_segments, train_command,
                                 wall_time, write_segments)

TOOL = ["-m", "xtuner_recipe.xtuner_entry", "train"]


@pytest.fixture
def inputs(tmp_path):
    """The files an attempt's hash is computed from."""
    config = tmp_path / "xtuner_config.py"
    config.write_text("lr = 0.001\n")
    data = tmp_path / "tokenized"  # the tokenized_data rule's folder
    (data / "dataset").mkdir(parents=True)
    (data / "dataset" / "data-00000-of-00001.arrow").write_bytes(b"packs of Ada")
    (data / "dataset" / "state.json").write_text('{"_fingerprint": "a1"}\n')
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}\n")
    (model / "model.safetensors").write_bytes(b"weights")
    ds = tmp_path / "deepspeed.json"
    ds.write_text('{"zero_optimization": {"stage": 2}}\n')
    return config, data, model, ds


def run_for(launcher="none", nproc=1, srun="srun"):
    return TrainSettings(device="cpu", launcher=launcher, nproc=nproc,
                         world_size=1 if launcher == "none" else nproc, srun=srun,
                         base_model="model", attempts_dir="attempts", compile_cache="cache")


def identity(config, data, model, ds=None, world_size=1):
    return attempt_id(attempt_inputs(config, data, model, ds, world_size))


# ---------------------------------------------------------------------------------------------
# the attempt's identity: everything that decides the weights


def test_the_same_inputs_name_the_same_attempt(inputs):
    config, data, model, ds = inputs
    assert identity(config, data, model, ds, 2) == identity(str(config), str(data), model, ds, 2)
    assert len(identity(config, data, model)) == 16


@pytest.mark.parametrize("change", ["config", "dataset", "model weights", "model file added",
                                    "deepspeed", "world size"])
def test_any_input_that_decides_the_weights_names_another_attempt(inputs, change):
    config, data, model, ds = inputs
    before = identity(config, data, model, ds, 1)
    world_size = 1
    if change == "config":
        config.write_text("lr = 0.002\n")
    elif change == "dataset":  # e.g. a new owner name, or another assistant.repeat
        (data / "dataset" / "data-00000-of-00001.arrow").write_bytes(b"packs of Bob")
    elif change == "model weights":
        (model / "model.safetensors").write_bytes(b"other weights")
    elif change == "model file added":
        (model / "tokenizer.json").write_text("{}")
    elif change == "deepspeed":
        ds.write_text('{"zero_optimization": {"stage": 3}}\n')
    else:
        world_size = 2
    assert identity(config, data, model, ds, world_size) != before


def test_the_saved_sets_bookkeeping_does_not_decide_the_attempt(inputs):
    """datasets' state file holds fingerprints that need not repeat, and a reader's map may
    leave cache files: only the saved shards count."""
    config, data, model, ds = inputs
    before = identity(config, data, model, ds)
    (data / "dataset" / "state.json").write_text('{"_fingerprint": "b2"}\n')
    (data / "dataset" / "cache-5544f83fadc2176d.arrow").write_bytes(b"lengths")
    assert identity(config, data, model, ds) == before


def test_returning_to_earlier_inputs_names_the_earlier_attempt(inputs):
    config, data, model, _ = inputs
    first = identity(config, data, model)
    config.write_text("lr = 0.002\n")
    assert identity(config, data, model) != first
    config.write_text("lr = 0.001\n")
    assert identity(config, data, model) == first


# ---------------------------------------------------------------------------------------------
# the attempt's work dir


def test_a_new_attempt_starts_fresh_and_records_its_inputs(tmp_path):
    work = tmp_path / "attempts" / "abc"
    assert prepare_attempt(work, {"dataset": "d1"}) == (None, None)
    assert json.loads((work / INPUTS).read_text()) == {"dataset": "d1"}


def test_an_interrupted_attempt_resumes_from_its_last_checkpoint(tmp_path):
    work = tmp_path / "abc"
    work.mkdir()
    (work / "iter_80.pth").write_bytes(b"w")
    (work / "last_checkpoint").write_text("/elsewhere/old/work_dir/iter_80.pth\n")
    assert prepare_attempt(work, {}) == (None, work / "iter_80.pth")


def test_a_finished_attempt_is_reused_without_training(tmp_path):
    work = tmp_path / "abc"
    work.mkdir()
    (work / "iter_160.pth").write_bytes(b"w")
    finished = {"checkpoint": str(work / "iter_160.pth"), "iteration": 160}
    (work / COMPLETE).write_text(json.dumps(finished))
    assert prepare_attempt(work, {}) == (finished, None)
    (work / "iter_160.pth").unlink()  # its checkpoint gone: not reusable
    assert prepare_attempt(work, {}) == (None, None)


def test_marker_pointing_at_a_missing_checkpoint_does_not_resume(tmp_path):
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_80.pth"))
    assert last_checkpoint(tmp_path) is None
    assert prepare_attempt(tmp_path, {}) == (None, None)


def test_last_checkpoint_without_marker_is_none(tmp_path):
    (tmp_path / "iter_5.pth").write_bytes(b"x")
    assert last_checkpoint(tmp_path) is None
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_5.pth"))
    assert last_checkpoint(tmp_path) == tmp_path / "iter_5.pth"


def test_deepspeed_checkpoint_folder_counts_as_a_checkpoint(tmp_path):
    (tmp_path / "iter_10.pth").mkdir()
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_10.pth"))
    assert last_checkpoint(tmp_path) == tmp_path / "iter_10.pth"


def test_wall_time_counts_every_segment_the_killed_one_included(tmp_path):
    """Defect: the report's wall time after a resume counted only the last segment."""
    (tmp_path / "iter_40.pth").write_bytes(b"w")
    os.utime(tmp_path / "iter_40.pth", (1030, 1030))
    segments = [{"started": 1000.0, "ended": None, "exit_status": None, "resumed_from": None}]
    write_segments(tmp_path, segments)
    os.utime(tmp_path / SEGMENTS, (1000, 1000))
    closed = close_interrupted(tmp_path, read_segments(tmp_path))
    assert closed[0]["ended"] == 1030 and closed[0]["exit_status"] == "killed"
    closed.append({"started": 2000.0, "ended": 2050.0, "exit_status": 0,
                   "resumed_from": "iter_40.pth"})
    assert wall_time(closed) == 80.0


@pytest.mark.parametrize("name, iteration", [("iter_1.pth", 1), ("iter_160.pth", 160),
                                             ("/a/b/iter_007.pth", 7)])
def test_checkpoint_iteration_parses_iter_n(name, iteration):
    assert checkpoint_iteration(name) == iteration


@pytest.mark.parametrize("name", ["epoch_1.pth", "iter_.pth", "iter_10.pt", "iter_10.pth.bak",
                                  "xiter_10.pth", "iter_-1.pth", "last_checkpoint"])
def test_checkpoint_iteration_rejects_other_names(name):
    with pytest.raises(RuntimeError, match="expected iter_N.pth"):
        checkpoint_iteration(name)


# ---------------------------------------------------------------------------------------------
# command and environment


def test_command_without_launcher():
    assert train_command(run_for(), "cfg.py", None, None, "wd") == [sys.executable, *TOOL, "cfg.py", "--work-dir", "wd",
                                         "--launcher", "none"]


def test_command_with_deepspeed_and_resume(tmp_path):
    command = train_command(run_for(), "cfg.py", "ds.json", tmp_path / "iter_80.pth", "wd")
    assert command == [sys.executable, *TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "none",
                       "--deepspeed", "ds.json", "--resume", str(tmp_path / "iter_80.pth")]


def test_pytorch_launcher_uses_torch_distributed_run():
    command = train_command(run_for("pytorch", 4), "cfg.py", "ds.json", None, "wd")
    assert command[:4] == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=4"]
    assert command[4].startswith("--master_port=")
    port = int(command[4].split("=", 1)[1])
    assert 0 < port < 65536
    assert command[5:] == [*TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "pytorch",
                           "--deepspeed", "ds.json"]
    assert "--resume" not in command


def test_slurm_launcher_prefixes_srun_with_kill_on_bad_exit():
    run = run_for("slurm", srun="srun --cpu-bind=none -n 4")
    command = train_command(run, "cfg.py", None, "wd/iter_8.pth", "wd")
    assert command == ["srun", "--cpu-bind=none", "-n", "4", "--kill-on-bad-exit=1",
                       sys.executable, *TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "slurm",
                       "--resume", "wd/iter_8.pth"]
    assert train_command(run_for("slurm"), "cfg.py", None, None, "wd")[:3] == [
        "srun", "--kill-on-bad-exit=1", sys.executable]


def test_slurm_launcher_with_empty_srun_runs_in_place():
    command = train_command(run_for("slurm", srun=""), "cfg.py", None, None, "wd")
    assert command == [sys.executable, *TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "slurm"]


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK",
                "SLURM_NTASKS", "TORCHINDUCTOR_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_env_for_one_process_with_deepspeed_sets_the_rendezvous(clean_env):
    env = launch_env("none", "ds.json", "cache")
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("0", "0", "1")
    assert env["MASTER_ADDR"] == "127.0.0.1"
    assert 0 < int(env["MASTER_PORT"]) < 65536
    assert env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"


def test_env_keeps_a_given_master_address_and_port(clean_env):
    clean_env.setenv("MASTER_ADDR", "10.0.0.5")
    clean_env.setenv("MASTER_PORT", "29555")
    env = launch_env("none", "ds.json", "cache")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.0.0.5", "29555")


@pytest.mark.parametrize("launcher, deepspeed", [("none", None), ("pytorch", None),
                                                 ("pytorch", "ds.json")])
def test_env_without_single_process_deepspeed_has_no_rank_variables(clean_env, launcher,
                                                                    deepspeed):
    env = launch_env(launcher, deepspeed, "cache")
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        assert var not in env
    assert env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"


def test_env_respects_a_user_weights_only_setting(clean_env):
    clean_env.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0")
    assert launch_env("none", None, "cache")["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "0"


def test_compiled_kernels_are_kept_in_the_results_dir_unless_the_user_says(clean_env):
    assert launch_env("none", None, "results/compile_cache")["TORCHINDUCTOR_CACHE_DIR"] == \
        "results/compile_cache"
    clean_env.setenv("TORCHINDUCTOR_CACHE_DIR", "/scratch/inductor")
    assert launch_env("none", None, "results/compile_cache")["TORCHINDUCTOR_CACHE_DIR"] == \
        "/scratch/inductor"


def test_env_is_a_copy_of_the_process_env(clean_env):
    env = launch_env("none", "ds.json", "cache")
    assert env["RANK"] == "0"
    import os
    assert "RANK" not in os.environ


def test_env_under_slurm_sets_a_port_but_no_ranks(clean_env):
    env = launch_env("slurm", "ds.json", "cache")
    assert 0 < int(env["MASTER_PORT"]) < 65536
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"):
        assert var not in env
    clean_env.setenv("MASTER_PORT", "29600")
    assert launch_env("slurm", None, "cache")["MASTER_PORT"] == "29600"
