"""The training wrapper's pure parts: fingerprint, work-dir resume/supersede, command and env."""

import sys

import pytest

from xtuner_recipe.settings import TrainSettings
from xtuner_recipe.train import (FINGERPRINT, checkpoint_iteration, fingerprint, last_checkpoint,
                                 launch_env, prepare_work_dir, train_command)

TOOL = ["-m", "xtuner_recipe.xtuner_entry", "train"]


@pytest.fixture
def files(tmp_path):
    config = tmp_path / "xtuner_config.py"
    config.write_text("lr = 0.001\n")
    ds = tmp_path / "deepspeed.json"
    ds.write_text('{"zero_optimization": {"stage": 2}}\n')
    return config, ds


def run_for(launcher="none", nproc=1, srun="srun"):
    return TrainSettings(device="cpu", max_iters=160, launcher=launcher, nproc=nproc,
                         world_size=1 if launcher == "none" else nproc, srun=srun, work_dir="wd")


# ---------------------------------------------------------------------------------------------
# fingerprint


def test_fingerprint_is_stable_for_the_same_inputs(files):
    config, ds = files
    assert fingerprint(config, ds, 2) == fingerprint(config, ds, 2)
    assert fingerprint(config, None, 1) == fingerprint(str(config), None, 1)
    assert len(fingerprint(config, None, 1)) == 64


def test_fingerprint_changes_with_config_bytes(files):
    config, _ = files
    before = fingerprint(config, None, 1)
    config.write_text("lr = 0.002\n")
    assert fingerprint(config, None, 1) != before
    config.write_text("lr = 0.001\n")
    assert fingerprint(config, None, 1) == before


def test_fingerprint_changes_with_deepspeed_json_and_world_size(files):
    config, ds = files
    plain = fingerprint(config, None, 1)
    with_ds = fingerprint(config, ds, 1)
    assert with_ds != plain
    ds.write_text('{"zero_optimization": {"stage": 3}}\n')
    assert fingerprint(config, ds, 1) != with_ds
    assert fingerprint(config, None, 2) != plain
    assert fingerprint(config, None, 2) != fingerprint(config, None, 4)


# ---------------------------------------------------------------------------------------------
# work dir


def fp(n):
    return f"{n:064x}"


def test_prepare_fresh_dir_writes_the_fingerprint(tmp_path):
    work = tmp_path / "train" / "work_dir"
    assert prepare_work_dir(work, fp(1)) is None
    assert (work / FINGERPRINT).read_text() == fp(1) + "\n"
    assert sorted(p.name for p in work.iterdir()) == [FINGERPRINT]


def test_prepare_existing_empty_dir_is_a_fresh_start(tmp_path):
    work = tmp_path / "work_dir"
    work.mkdir()
    assert prepare_work_dir(work, fp(1)) is None
    assert (work / FINGERPRINT).read_text().strip() == fp(1)
    assert not list(tmp_path.glob("*.superseded-*"))


def populated(work, fingerprint_value, checkpoint="iter_80.pth", marker_name=None):
    work.mkdir(parents=True, exist_ok=True)
    (work / FINGERPRINT).write_text(fingerprint_value + "\n")
    if checkpoint:
        (work / checkpoint).write_bytes(b"weights")
    # mmengine writes the absolute path of the latest checkpoint, without a newline
    (work / "last_checkpoint").write_text(str(work / (marker_name or checkpoint or "iter_80.pth")))
    (work / "20240101_000000").mkdir()
    (work / "20240101_000000" / "log.txt").write_text("first run")


def test_same_fingerprint_resumes_from_last_checkpoint(tmp_path, capsys):
    work = tmp_path / "work_dir"
    populated(work, fp(1), "iter_80.pth")
    resume = prepare_work_dir(work, fp(1))
    assert resume == work / "iter_80.pth"
    assert checkpoint_iteration(resume) == 80
    assert "resuming from" in capsys.readouterr().out
    assert (work / "20240101_000000" / "log.txt").read_text() == "first run"
    assert not list(tmp_path.glob("*.superseded-*"))


def test_resume_follows_the_marker_by_name_inside_the_work_dir(tmp_path):
    """A work dir moved elsewhere (another machine's absolute path in the marker) still resumes."""
    work = tmp_path / "work_dir"
    populated(work, fp(1), "iter_160.pth")
    (work / "last_checkpoint").write_text("/elsewhere/old/work_dir/iter_160.pth\n")
    assert prepare_work_dir(work, fp(1)) == work / "iter_160.pth"


def test_marker_pointing_at_a_missing_checkpoint_does_not_resume(tmp_path):
    work = tmp_path / "work_dir"
    populated(work, fp(1), checkpoint=None, marker_name="iter_80.pth")
    assert last_checkpoint(work) is None
    assert prepare_work_dir(work, fp(1)) is None
    # same config: nothing is moved aside
    assert not list(tmp_path.glob("*.superseded-*"))
    assert (work / FINGERPRINT).read_text().strip() == fp(1)


def test_last_checkpoint_without_marker_is_none(tmp_path):
    (tmp_path / "iter_5.pth").write_bytes(b"x")
    assert last_checkpoint(tmp_path) is None
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_5.pth"))
    assert last_checkpoint(tmp_path) == tmp_path / "iter_5.pth"


def test_deepspeed_checkpoint_folder_counts_as_a_checkpoint(tmp_path):
    (tmp_path / "iter_10.pth").mkdir()
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "iter_10.pth"))
    assert last_checkpoint(tmp_path) == tmp_path / "iter_10.pth"


def test_different_fingerprint_moves_the_old_dir_aside_never_deletes(tmp_path, capsys):
    work = tmp_path / "work_dir"
    populated(work, fp(1), "iter_80.pth")
    assert prepare_work_dir(work, fp(2)) is None
    aside = tmp_path / "work_dir.superseded-1"
    assert aside.is_dir()
    assert (aside / "iter_80.pth").read_bytes() == b"weights"
    assert (aside / FINGERPRINT).read_text().strip() == fp(1)
    assert (aside / "20240101_000000" / "log.txt").read_text() == "first run"
    assert "moved to" in capsys.readouterr().out
    # the new work dir starts clean, with the new fingerprint
    assert sorted(p.name for p in work.iterdir()) == [FINGERPRINT]
    assert (work / FINGERPRINT).read_text().strip() == fp(2)

    # train something under fp(2), then change the config again: -2, and -1 is left alone
    (work / "iter_40.pth").write_bytes(b"second")
    (work / "last_checkpoint").write_text(str(work / "iter_40.pth"))
    assert prepare_work_dir(work, fp(3)) is None
    second = tmp_path / "work_dir.superseded-2"
    assert (second / "iter_40.pth").read_bytes() == b"second"
    assert (second / FINGERPRINT).read_text().strip() == fp(2)
    assert (aside / "iter_80.pth").read_bytes() == b"weights"
    assert (work / FINGERPRINT).read_text().strip() == fp(3)


def test_dir_without_fingerprint_is_moved_aside(tmp_path):
    work = tmp_path / "work_dir"
    work.mkdir()
    (work / "iter_80.pth").write_bytes(b"unknown origin")
    (work / "last_checkpoint").write_text(str(work / "iter_80.pth"))
    assert prepare_work_dir(work, fp(1)) is None
    assert (tmp_path / "work_dir.superseded-1" / "iter_80.pth").read_bytes() == b"unknown origin"


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
    assert train_command(run_for(), "cfg.py", None, None) == [sys.executable, *TOOL, "cfg.py", "--work-dir", "wd",
                                         "--launcher", "none"]


def test_command_with_deepspeed_and_resume(tmp_path):
    command = train_command(run_for(), "cfg.py", "ds.json", tmp_path / "iter_80.pth")
    assert command == [sys.executable, *TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "none",
                       "--deepspeed", "ds.json", "--resume", str(tmp_path / "iter_80.pth")]


def test_pytorch_launcher_uses_torch_distributed_run():
    command = train_command(run_for("pytorch", 4), "cfg.py", "ds.json", None)
    assert command[:4] == [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=4"]
    assert command[4].startswith("--master_port=")
    port = int(command[4].split("=", 1)[1])
    assert 0 < port < 65536
    assert command[5:] == [*TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "pytorch",
                           "--deepspeed", "ds.json"]
    assert "--resume" not in command


def test_slurm_launcher_prefixes_srun_with_kill_on_bad_exit():
    run = run_for("slurm", srun="srun --cpu-bind=none -n 4")
    command = train_command(run, "cfg.py", None, "wd/iter_8.pth")
    assert command == ["srun", "--cpu-bind=none", "-n", "4", "--kill-on-bad-exit=1",
                       sys.executable, *TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "slurm",
                       "--resume", "wd/iter_8.pth"]
    assert train_command(run_for("slurm"), "cfg.py", None, None)[:3] == [
        "srun", "--kill-on-bad-exit=1", sys.executable]


def test_slurm_launcher_with_empty_srun_runs_in_place():
    command = train_command(run_for("slurm", srun=""), "cfg.py", None, None)
    assert command == [sys.executable, *TOOL, "cfg.py", "--work-dir", "wd", "--launcher", "slurm"]


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
                "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK",
                "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_env_for_one_process_with_deepspeed_sets_the_rendezvous(clean_env):
    env = launch_env("none", "ds.json")
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"]) == ("0", "0", "1")
    assert env["MASTER_ADDR"] == "127.0.0.1"
    assert 0 < int(env["MASTER_PORT"]) < 65536
    assert env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"


def test_env_keeps_a_given_master_address_and_port(clean_env):
    clean_env.setenv("MASTER_ADDR", "10.0.0.5")
    clean_env.setenv("MASTER_PORT", "29555")
    env = launch_env("none", "ds.json")
    assert (env["MASTER_ADDR"], env["MASTER_PORT"]) == ("10.0.0.5", "29555")


@pytest.mark.parametrize("launcher, deepspeed", [("none", None), ("pytorch", None),
                                                 ("pytorch", "ds.json")])
def test_env_without_single_process_deepspeed_has_no_rank_variables(clean_env, launcher,
                                                                    deepspeed):
    env = launch_env(launcher, deepspeed)
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        assert var not in env
    assert env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"


def test_env_respects_a_user_weights_only_setting(clean_env):
    clean_env.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0")
    assert launch_env("none", None)["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "0"


def test_env_is_a_copy_of_the_process_env(clean_env):
    env = launch_env("none", "ds.json")
    assert env["RANK"] == "0"
    import os
    assert "RANK" not in os.environ


def test_env_under_slurm_sets_a_port_and_threads_but_no_ranks(clean_env):
    clean_env.setenv("SLURM_CPUS_PER_TASK", "3")
    env = launch_env("slurm", "ds.json")
    assert 0 < int(env["MASTER_PORT"]) < 65536
    assert env["OMP_NUM_THREADS"] == "3"
    for var in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR"):
        assert var not in env
    clean_env.delenv("SLURM_CPUS_PER_TASK")
    clean_env.setenv("MASTER_PORT", "29600")
    env = launch_env("slurm", None)
    assert (env["MASTER_PORT"], env["OMP_NUM_THREADS"]) == ("29600", "1")
