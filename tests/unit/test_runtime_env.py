"""The environment every model-loading process sets first (xtuner_recipe.use_runtime_env)."""

import torch

from xtuner_recipe import THREAD_VARIABLES, torch_threads, use_runtime_env


def test_torch_gets_the_cores_not_snakemakes_one_thread(monkeypatch):
    environ = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "0"}
    told = []
    monkeypatch.setattr(torch, "set_num_threads", told.append)
    use_runtime_env(environ)
    cores = torch_threads({})
    assert all(environ[key] == str(cores) for key in THREAD_VARIABLES)
    assert told == [cores]  # torch is imported here: told directly as well
    assert environ["HF_HUB_OFFLINE"] == "0" and environ["TRANSFORMERS_OFFLINE"] == "1"


def test_ranks_and_slurm_tasks_share_the_cores():
    assert torch_threads({}, cores=8) == 8
    assert torch_threads({"LOCAL_WORLD_SIZE": "2"}, cores=8) == 4  # torchrun's ranks on a node
    assert torch_threads({"LOCAL_WORLD_SIZE": "16"}, cores=8) == 1
    assert torch_threads({"SLURM_CPUS_PER_TASK": "3"}, cores=8) == 3
    assert torch_threads({"SLURM_CPUS_PER_TASK": "16"}, cores=8) == 8
