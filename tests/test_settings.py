import pytest
import yaml

from conftest import REPO
from xtuner_recipe import settings


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))


@pytest.fixture
def schema():
    return yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())


def test_default_config_is_valid(config, schema):
    settings.check_schema(config, schema)


def test_schema_error_names_field_and_allowed_values(config, schema):
    config["train"]["method"] = "qlorra"
    with pytest.raises(settings.ConfigError) as error:
        settings.check_schema(config, schema)
    assert "train.method = 'qlorra'" in str(error.value)
    assert "qlora, lora, full" in str(error.value)


def test_schema_error_lists_allowed_keys_for_a_typo(config, schema):
    config["train"]["learning_rate"] = 0.1
    with pytest.raises(settings.ConfigError, match="learning_rate.*allowed keys: .*lr"):
        settings.check_schema(config, schema)


def test_run_name_from_ascii_and_chinese_names(config):
    config["assistant"]["name"] = "Ada Lovelace"
    assert settings.run_name(config) == "assistant-ada-lovelace"
    config["assistant"]["name"] = "门客er"
    chinese = settings.run_name(config)
    assert chinese.startswith("assistant-er-") and chinese.isascii()
    config["assistant"]["name"] = "门客"
    assert settings.run_name(config) != chinese
    config["run_name"] = "mine"
    assert settings.run_name(config) == "mine"


def test_tiny_preset_fills_nulls_and_user_values_win(config):
    values = settings.train_settings(config, "cpu")
    assert values["method"] == "lora" and values["max_iters"] == 160 and values["lr"] == 0.001
    config["train"]["lr"] = 0.01
    assert settings.train_settings(config, "cpu")["lr"] == 0.01


def test_real_model_keeps_base_config_values(config):
    config["model"]["path"] = "/some/model"
    values = settings.train_settings(config, "cuda")
    assert values["method"] == "qlora"
    assert all(values[k] is None for k in settings.TRAIN_KEYS if k != "method")
    assert settings.train_settings(config, "cpu")["method"] == "lora"


def test_qlora_on_cpu_is_refused_with_the_fix(config):
    config["train"]["method"] = "qlora"
    with pytest.raises(settings.ConfigError, match="train.method.*set train.method: lora"):
        settings.train_settings(config, "cpu")


def test_max_epochs_replaces_the_presets_max_iters(config):
    config["train"]["max_epochs"] = 2
    values = settings.train_settings(config, "cpu")
    assert values["max_iters"] is None
    config["train"]["max_iters"] = 10
    with pytest.raises(settings.ConfigError, match="both set"):
        settings.train_settings(config, "cpu")


def test_model_path_checks(config, tmp_path):
    config["model"]["path"] = str(tmp_path / "missing")
    with pytest.raises(settings.ConfigError, match="model.path.*no such folder"):
        settings.check_model_path(config)
    config["model"]["path"] = str(tmp_path)
    with pytest.raises(settings.ConfigError, match="no config.json"):
        settings.check_model_path(config)
    (tmp_path / "config.json").write_text("{}")
    settings.check_model_path(config)


def test_base_config_lookup_suggests_close_names():
    assert settings.check_base_config("internlm2_chat_1_8b_qlora_alpaca_e3").endswith(".py")
    with pytest.raises(settings.ConfigError, match="did you mean: internlm2_chat_1_8b_qlora_alpaca_e3"):
        settings.check_base_config("internlm2_chat_1_8b_qlora_alpaca_e4")


def test_prompt_templates_match_xtuner():
    from xtuner.utils import PROMPT_TEMPLATE

    assert set(settings.prompt_templates()) == set(PROMPT_TEMPLATE)
    with pytest.raises(settings.ConfigError, match="internlm2_chat"):
        settings.check_prompt_template("internlm2_chta")


def test_deepspeed_choices(tmp_path):
    assert settings.deepspeed_source(None) is None
    assert settings.deepspeed_source("zero2").name == "deepspeed_zero2.json"
    own = tmp_path / "ds.json"
    own.write_text("{}")
    assert settings.deepspeed_source(str(own)) == own
    with pytest.raises(settings.ConfigError, match="zero1, zero2"):
        settings.deepspeed_source("zero4")
    with pytest.raises(settings.ConfigError, match="file not found"):
        settings.deepspeed_source(str(tmp_path / "missing.json"))


def test_launcher_resolution():
    assert settings.resolve_launcher({"launcher": "auto"}, 1) == "none"
    assert settings.resolve_launcher({"launcher": "auto"}, 2) == "pytorch"
    assert settings.resolve_launcher({"launcher": "slurm"}, 1) == "slurm"


def test_nproc_auto_reads_xtuners_variable():
    assert settings.resolve_nproc({"nproc_per_node": 3}, {}) == 3
    assert settings.resolve_nproc({"nproc_per_node": "auto"}, {"NPROC_PER_NODE": "4"}) == 4
    assert settings.resolve_nproc({"nproc_per_node": "auto"}, {}) == 1  # no GPU here
    with pytest.raises(settings.ConfigError, match="NPROC_PER_NODE"):
        settings.resolve_nproc({"nproc_per_node": "auto"}, {"NPROC_PER_NODE": "two"})


def slurm_section(**changes):
    section = {"nodes": 1, "tasks_per_node": 1, "gpus_per_node": 0, "cpus_per_task": 1,
               "mem_mb": 4000, "runtime": 60, "partition": None, "account": None, "extra": None}
    section.update(changes)
    return section


def test_slurm_one_task_runs_in_the_plugins_own_step():
    resources = settings.slurm_train_resources(slurm_section())
    assert "mpi" not in resources and "tasks" not in resources
    assert settings.train_srun(slurm_section()) == ""


def test_slurm_several_tasks_on_one_node():
    resources = settings.slurm_train_resources(slurm_section(tasks_per_node=2, partition="p",
                                                             extra="--qos=x"))
    assert resources["mpi"] == "srun" and resources["tasks"] == 2 and resources["nodes"] == 1
    assert resources["slurm_partition"] == "p" and resources["slurm_extra"] == "--qos=x"
    assert "slurm_account" not in resources
    assert settings.train_srun(slurm_section(tasks_per_node=2)) == \
        "srun --nodes=1 --ntasks-per-node=2"


def test_slurm_multi_node_gpu_geometry():
    resources = settings.slurm_train_resources(slurm_section(nodes=2, tasks_per_node=4,
                                                             gpus_per_node=4))
    assert resources["tasks_per_node"] == 4 and "tasks" not in resources
    assert resources["gres"] == "gpu:4" and resources["tasks_per_gpu"] == 1
    with pytest.raises(settings.ConfigError, match="slurm.tasks_per_node"):
        settings.slurm_train_resources(slurm_section(nodes=2, tasks_per_node=1))
