import re

import pytest
import yaml

from harness.workflow import REPO
from xtuner_recipe import launch, settings, slurm, xtuner_catalog
from xtuner_recipe.messages import ConfigError, check_schema
from xtuner_recipe.xtuner_config import TRAIN_KEYS


def user_config():
    """config.yaml with the tiny recipe (the values these tests know)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    return {**config, "recipe": "tiny-internlm2/lora_cpu"}


@pytest.fixture
def config():
    """config.yaml over its recipe over the schema's defaults, as the rules see it."""
    return settings.resolve_config(user_config(), REPO)


@pytest.fixture
def schema():
    return settings.load_schema(REPO)


def test_default_config_is_valid(config, schema):
    check_schema(config, schema)


def test_schema_error_names_field_and_allowed_values(config, schema):
    config["train"]["method"] = "qlorra"
    with pytest.raises(ConfigError) as error:
        check_schema(config, schema)
    assert "train.method = 'qlorra'" in str(error.value)
    assert "qlora, lora, full" in str(error.value)


def test_schema_error_lists_allowed_keys_for_a_typo(config, schema):
    config["train"]["learning_rate"] = 0.1
    with pytest.raises(ConfigError, match="learning_rate.*allowed keys: .*lr"):
        check_schema(config, schema)


def test_run_name_from_ascii_and_chinese_names(config):
    config["assistant"]["name"] = "Ada Lovelace"
    name = settings.run_name(config, "results/base_model/tiny-internlm2", "lora", "identity")
    assert name.startswith("ada-lovelace_tiny-internlm2_lora_")
    config["assistant"]["name"] = "门客er"
    chinese = settings.run_name(config, "m", "lora", "identity")
    assert chinese.startswith("门客er_m_lora_")  # the whole name, as the owner wrote it
    config["assistant"]["name"] = "门客"
    assert settings.run_name(config, "m", "lora", "identity").startswith("门客_m_lora_")
    config["assistant"]["name"] = "{x} \"quoted\""  # braces and quotes never reach a path
    braces = settings.run_name(config, "m", "lora", "identity")
    assert re.fullmatch(r"x-quoted-[0-9a-f]{8}_m_lora_[0-9a-f]{6}", braces)
    config["assistant"]["name"] = "x (quoted)"  # left out differently: another folder
    assert settings.run_name(config, "m", "lora", "identity") != braces
    config["run_name"] = "mine"
    assert settings.run_name(config, "m", "lora", "identity") == "mine"


def test_run_folders_differ_for_another_model_method_or_base_config(config):
    """Defect: the run folder derived from the owner only, so the same owner with another model
    or base config reused, then overwrote, the first run's folder."""
    config["assistant"]["name"] = "Ada"
    first = settings.run_name(config, "/models/a", "lora", "identity")
    assert settings.run_name(config, "/models/b", "lora", "identity") != first
    assert settings.run_name(config, "/other/a", "lora", "identity") != first  # same folder name, other path
    assert settings.run_name(config, "/models/a", "qlora", "identity") != first
    config["xtuner"]["base_config"] = "internlm2_chat_7b_qlora_alpaca_e3"
    assert settings.run_name(config, "/models/a", "lora", "identity") != first
    config["dataset"]["path"] = "data/faq.csv"
    faq = settings.run_name(config, "/models/a", "lora", "qa")
    assert faq.startswith("qa-faq_a_lora_")
    config["dataset"]["path"] = "other/faq.csv"
    assert settings.run_name(config, "/models/a", "lora", "qa") != faq


def test_recipe_fills_nulls_and_user_values_win():
    values = settings.train_values(settings.resolve_config(user_config(), REPO), "cpu")
    assert values["method"] == "lora" and values["max_iters"] == 160 and values["lr"] == 0.001
    user = user_config()
    user["train"] = {"lr": 0.01, "max_iters": None}  # null: take the recipe's
    values = settings.train_values(settings.resolve_config(user, REPO), "cpu")
    assert values["lr"] == 0.01 and values["max_iters"] == 160


def test_real_model_keeps_base_config_values(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    user = {"recipe": "internlm2-chat-1_8b/qlora", "model": {"path": str(tmp_path)}}
    config = settings.resolve_config(user, REPO)
    values = settings.train_values(config, "cuda")
    assert values["method"] == "qlora"
    assert all(values[k] is None for k in TRAIN_KEYS if k != "method")
    assert settings.train_values(config, "cpu")["method"] == "lora"


def test_a_model_path_with_a_tiny_model_recipe_names_the_fix():
    with pytest.raises(ConfigError, match="recipe: internlm2-chat-1_8b/qlora"):
        settings.resolve_config({**user_config(), "model": {"path": "/models/x"}}, REPO)


def test_unknown_recipe_lists_the_recipes():
    with pytest.raises(ConfigError, match="recipe = 'tiny/nope'.*tiny-internlm2/lora_cpu"):
        settings.resolve_config({"recipe": "tiny/nope"}, REPO)


def test_qlora_on_cpu_is_refused_with_the_fix(config):
    config["train"]["method"] = "qlora"
    with pytest.raises(ConfigError, match="train.method.*set train.method: lora"):
        settings.train_values(config, "cpu")


def test_max_epochs_replaces_the_recipes_max_iters():
    user = user_config()
    user["train"] = {"max_epochs": 2}
    values = settings.train_values(settings.resolve_config(user, REPO), "cpu")
    assert values["max_iters"] is None and values["max_epochs"] == 2
    user["train"]["max_iters"] = 10
    with pytest.raises(ConfigError, match="both set"):
        settings.resolve_config(user, REPO)


def test_overlay_null_keeps_the_lower_value_and_lists_replace():
    lower = {"a": 1, "b": {"c": 2, "d": [1, 2]}, "e": None}
    assert settings.overlay(lower, {"a": None, "b": {"d": [3]}, "e": 5}) == \
        {"a": 1, "b": {"c": 2, "d": [3]}, "e": 5}


def test_model_path_checks(config, tmp_path):
    config["model"]["path"] = str(tmp_path / "missing")
    with pytest.raises(ConfigError, match="model.path.*no such folder"):
        settings.check_model(config)
    config["model"]["path"] = str(tmp_path)
    with pytest.raises(ConfigError, match="no config.json"):
        settings.check_model(config)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    # defect: config.json and weights but no tokenizer passed, then failed deep in training
    with pytest.raises(ConfigError, match="model.path.*has no tokenizer"):
        settings.check_model(config)
    (tmp_path / "tokenizer.json").write_text("{}")
    settings.check_model(config)


def test_default_pairs_are_the_bilingual_set_and_replay_adds_its_settings_file():
    user = {"recipe": "smollm2-135m-instruct/lora_cpu", "assistant": {"name": "Ada"}}
    built = settings.build(user, REPO)
    assert {p["input"] for p in built.data.pairs} >= {"请介绍一下你自己", "Please introduce yourself."}
    assert built.evaluate.training_prompts == [p["input"] for p in built.data.pairs]
    assert len(built.evaluate.general_knowledge) == 40 and built.evaluate.heldout_text
    assert built.base_model.endswith("base_model/packaged/smollm2-135m-instruct")
    recipe = settings.load_recipe("smollm2-135m-instruct/lora_cpu", REPO, settings.load_schema(REPO))
    assert built.data.replay_share == recipe["assistant"]["replay_share"] > 0
    assert built.replay_files()[1] in built.files()
    user["assistant"]["replay_share"] = 0
    plain = settings.build(user, REPO)
    assert plain.replay_files()[1] not in plain.files()
    user["assistant"]["replay_share"] = 0.25
    replayed = settings.build(user, REPO)
    assert replayed.data.replay_share == 0.25
    assert replayed.replay.model_path == replayed.base_model
    assert replayed.replay_files()[1] in replayed.files()
    # another recipe on the same model asks with other settings: its own file, so two runs in
    # one results_dir never rewrite (and so rerun) each other's replay
    other = settings.build({**user, "eval": {"max_new_tokens": 16}}, REPO)
    assert other.replay_files()[0] != replayed.replay_files()[0]


def test_every_train_key_is_in_the_schema(schema):
    assert set(TRAIN_KEYS) <= set(schema["properties"]["train"]["properties"])


def test_every_recipe_is_valid_and_resolves():
    for name in settings.recipe_names(REPO):
        recipe = settings.load_recipe(name, REPO, settings.load_schema(REPO))
        assert recipe.get("xtuner", {}).get("base_config"), name
    assert "tiny-internlm2/lora_cpu" in settings.recipe_names(REPO)


def test_config_yaml_names_the_default_recipe():
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    assert config["recipe"] == settings.schema_defaults(settings.load_schema(REPO))["recipe"]
    names = settings.recipe_names(REPO)
    assert {f"{config['recipe']}_gpu", f"{config['recipe']}_cpu"} <= set(names)


@pytest.mark.parametrize("device, gpu_present, chosen", [
    ("auto", True, "lora_gpu"), ("auto", False, "lora_cpu"), ("cpu", True, "lora_cpu"),
    ("cuda", False, "lora_gpu")])
def test_a_recipe_with_device_variants_picks_the_one_training_runs_on(
        monkeypatch, tmp_path, device, gpu_present, chosen):
    """The default recipe is the GPU one where a GPU is present: NVIDIA's driver, then torch."""
    driver = tmp_path / "nvidia"
    if gpu_present:
        driver.mkdir()
    monkeypatch.setattr(launch, "NVIDIA_DRIVER", driver)
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu_present)
    config = settings.resolve_config({"recipe": "smollm2-135m-instruct/lora",
                                      "train": {"device": device}}, REPO)
    assert config["recipe"] == f"smollm2-135m-instruct/{chosen}"
    tuned = config["train"]["precision"] == "bf16"
    assert tuned == (chosen == "lora_gpu")
    # the two variants train the same: the same data, model and schedule
    gpu, cpu = (settings.load_recipe(f"smollm2-135m-instruct/{v}", REPO,
                                     settings.load_schema(REPO)) for v in ("lora_gpu", "lora_cpu"))
    assert {k: v for k, v in gpu["train"].items() if k in cpu["train"]} == cpu["train"]
    assert (gpu["model"], gpu["assistant"]) == (cpu["model"], cpu["assistant"])


def test_a_gpu_recipe_named_on_a_cpu_is_refused_naming_the_fix():
    config = settings.resolve_config({"recipe": "smollm2-135m-instruct/lora_gpu",
                                      "train": {"device": "cpu"}}, REPO)
    with pytest.raises(ConfigError, match="train.precision = 'bf16'.*_cpu variant"):
        settings.train_values(config, "cpu")


@pytest.mark.parametrize("launcher, nproc, tasks, world", [
    ("auto", 1, 1, 1), ("none", 4, 1, 1), ("pytorch", 3, 1, 3), ("slurm", 1, 4, 4)])
def test_world_size_per_launcher(launcher, nproc, tasks, world):
    user = user_config()
    user["train"] = {"launcher": launcher, "nproc_per_node": nproc}
    user["slurm"] = {"tasks_per_node": tasks}
    built = settings.build(user, REPO)
    assert built.train.world_size == world
    # the plugin's job step strips SLURM_NTASKS: the rule passes the task count itself
    assert built.train.nproc == (tasks if launcher == "slurm" else nproc)


def test_each_stage_gets_its_own_settings_file():
    built = settings.build(user_config(), REPO)
    files = built.files()
    assert sorted(files) == sorted([built.layout.settings(s) for s in settings.RUN_STAGES] +
                                   [built.layout.tiny_model_shape])
    for stage in settings.RUN_STAGES:
        text = files[built.layout.settings(stage)]
        assert text == files[built.layout.settings(stage)]  # stable
        assert settings.STAGES[stage](**yaml.safe_load(text)) == getattr(built, stage)


def test_base_config_lookup_suggests_close_names():
    assert xtuner_catalog.check_base_config("internlm2_chat_1_8b_qlora_alpaca_e3").endswith(".py")
    with pytest.raises(ConfigError, match="did you mean: internlm2_chat_1_8b_qlora_alpaca_e3"):
        xtuner_catalog.check_base_config("internlm2_chat_1_8b_qlora_alpaca_e4")


def test_prompt_templates_match_xtuner():
    from xtuner.utils import PROMPT_TEMPLATE

    assert set(xtuner_catalog.prompt_templates()) == set(PROMPT_TEMPLATE)
    with pytest.raises(ConfigError, match="internlm2_chat"):
        xtuner_catalog.check_prompt_template("internlm2_chta")


def test_deepspeed_choices(tmp_path):
    assert xtuner_catalog.deepspeed_source(None) is None
    assert xtuner_catalog.deepspeed_source("zero2").name == "deepspeed_zero2.json"
    own = tmp_path / "ds.json"
    own.write_text("{}")
    assert xtuner_catalog.deepspeed_source(str(own)) == own
    with pytest.raises(ConfigError, match="zero1, zero2"):
        xtuner_catalog.deepspeed_source("zero4")
    with pytest.raises(ConfigError, match="file not found"):
        xtuner_catalog.deepspeed_source(str(tmp_path / "missing.json"))


def test_launcher_resolution():
    assert launch.resolve_launcher("auto", 1) == "none"
    assert launch.resolve_launcher("auto", 2) == "pytorch"
    assert launch.resolve_launcher("slurm", 1) == "slurm"


def test_nproc_auto_reads_xtuners_variable():
    assert launch.resolve_nproc(3, {}) == 3
    assert launch.resolve_nproc("auto", {"NPROC_PER_NODE": "4"}) == 4
    assert launch.resolve_nproc("auto", {}) == 1  # no GPU here
    with pytest.raises(ConfigError, match="NPROC_PER_NODE"):
        launch.resolve_nproc("auto", {"NPROC_PER_NODE": "two"})


def slurm_section(**changes):
    section = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1,
               "mem_mb": 4000, "runtime": 60, "partition": None, "account": None, "extra": None,
               "signal_before_limit_s": 180}
    section.update(changes)
    return section


def test_slurm_one_task_runs_in_the_plugins_own_step():
    resources = slurm.slurm_train_resources(slurm_section())
    assert "mpi" not in resources and "tasks" not in resources
    assert "slurm_extra" not in resources  # a signal would also stop the plugin's own step
    assert slurm.train_srun(slurm_section()) == ""


def test_slurm_several_tasks_on_one_node():
    resources = slurm.slurm_train_resources(slurm_section(tasks_per_node=2, partition="p",
                                                             extra="--qos=x"))
    assert resources["mpi"] == "srun" and resources["tasks"] == 2 and resources["nodes"] == 1
    assert resources["slurm_partition"] == "p"
    # the training tasks are told 180 s before the time limit: they save, the job requeues
    assert resources["slurm_extra"] == "--qos=x --signal=USR1@180"
    assert "slurm_account" not in resources
    no_signal = slurm_section(tasks_per_node=2, signal_before_limit_s=0)
    assert "slurm_extra" not in slurm.slurm_train_resources(no_signal)
    assert slurm.train_srun(slurm_section(tasks_per_node=2)) == \
        "srun --nodes=1 --ntasks-per-node=2"


def test_slurm_multi_node_gpu_geometry():
    resources = slurm.slurm_train_resources(slurm_section(nodes=2, tasks_per_node=4,
                                                             gpus_per_node=4))
    assert resources["tasks_per_node"] == 4 and "tasks" not in resources
    assert resources["gres"] == "gpu:4" and resources["tasks_per_gpu"] == 1
    with pytest.raises(ConfigError, match="slurm.tasks_per_node"):
        slurm.slurm_train_resources(slurm_section(nodes=2, tasks_per_node=1))


def test_auto_device_without_nvidias_driver_is_cpu_without_importing_torch(tmp_path):
    """A no-op rerun must not pay torch's import (about 2 s) on a machine with no GPU driver."""
    import subprocess
    import sys

    code = ("import sys; from pathlib import Path; from xtuner_recipe import launch; "
            f"launch.NVIDIA_DRIVER = Path({str(tmp_path / 'none')!r}); "
            "print(launch.resolve_device('auto'), launch.resolve_nproc('auto', {}), "
            "'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["cpu", "1", "False"]
