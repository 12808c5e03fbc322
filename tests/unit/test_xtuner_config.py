"""The patched xtuner config: AST-addressed edits of xtuner's built-in config text, loaded back with
mmengine's real Config. Lazy values (types, torch dtypes) are read raw, without building them, so
the test process never imports xtuner.dataset (which needs torchvision)."""

import ast
import copy
import dataclasses
import difflib
import json
import re
from pathlib import Path

import pytest
import yaml
from mmengine.config import Config

from harness.workflow import REPO
from xtuner_recipe import settings, xtuner_config
from xtuner_recipe.messages import ConfigError
from xtuner_recipe.xtuner_catalog import builtin_configs, check_base_config, deepspeed_source
from xtuner_recipe.xtuner_config import TRAIN_KEYS, SourceEdits

BASE = "internlm2_chat_1_8b_qlora_alpaca_e3"
MODEL = "/models/internlm2-chat-1_8b"
DATA = "/runs/demo/data/assistant.json"
TOKENIZED = "/runs/demo/data/tokenized"
SAMPLES = 123  # packs in the tokenised training set


def raw(mapping, key):
    """A ConfigDict value as stored (a LazyObject / LazyAttr for imported names), not built."""
    return dict.__getitem__(mapping, key)


# The built-in config's values of the train keys the tiny recipe leaves null.
BUILTIN = {"batch_size": 1, "warmup_ratio": 0.03, "lora_r": 64, "lora_alpha": 16,
           "save_total_limit": 2}


def load_config(**user):
    """config.yaml with the tiny recipe (plus the user's `user` sections), as the rules see it."""
    config = yaml.safe_load((REPO / "config.yaml").read_text("utf-8"))
    return settings.resolve_config({**config, "recipe": "tiny-internlm2/lora_cpu", **user}, REPO)


def make_plan(config, device, model_path=MODEL, world_size=1):
    plan = dataclasses.asdict(settings.patch_settings(config, device, model_path, TOKENIZED,
                                                      world_size=world_size))
    plan["samples"] = SAMPLES
    return plan


def data_config(tmp_path, original, config, data_format="conversation"):
    """The config the tokenized_data rule builds its set from, loaded."""
    plan = dataclasses.asdict(settings.tokenize_settings(config, MODEL))
    out = tmp_path / "source_config.py"
    out.write_text(xtuner_config.data_source(Path(original).read_text(encoding="utf-8"), plan,
                                             DATA, data_format), encoding="utf-8")
    return out.read_text(encoding="utf-8"), Config.fromfile(str(out))


@pytest.fixture(scope="module")
def original():
    return check_base_config(BASE)


@pytest.fixture(scope="module")
def original_text(original):
    with open(original, encoding="utf-8") as f:
        return f.read()


def write(tmp_path, original, plan, name="xtuner_config.py"):
    out = tmp_path / name
    xtuner_config.write_patched_config(original, out, tmp_path / "diff.txt",
                                       tmp_path / "effective.json", plan)
    return out, Config.fromfile(str(out))


@pytest.fixture(scope="module")
def cpu_default(original, tmp_path_factory):
    """The default config.yaml (the tiny recipe) patched for cpu."""
    config = load_config()
    config["model"]["path"] = None
    config["train"]["device"] = "cpu"
    plan = make_plan(config, "cpu")
    tmp = tmp_path_factory.mktemp("cpu_default")
    out, cfg = write(tmp, original, plan)
    return {"config": config, "plan": plan, "dir": tmp, "text": out.read_text(encoding="utf-8"),
            "cfg": cfg, "values": {**BUILTIN, **{k: v for k, v in config["train"].items()
                                                 if v is not None}}}


@pytest.fixture(scope="module")
def cuda_real(original, tmp_path_factory):
    """A real model on cuda with every train key null: the base config's own values."""
    config = load_config()
    config["model"]["path"] = MODEL
    for key in TRAIN_KEYS:
        config["train"][key] = None
    config["xtuner"]["system"] = None
    plan = make_plan(config, "cuda")
    assert plan["train"]["method"] == "qlora"
    assert all(plan["train"][k] is None for k in TRAIN_KEYS if k != "method")
    tmp = tmp_path_factory.mktemp("cuda_real")
    out, cfg = write(tmp, original, plan)
    return {"config": config, "plan": plan, "dir": tmp, "text": out.read_text(encoding="utf-8"),
            "cfg": cfg}


# ---------------------------------------------------------------------------------------------
# default config, cpu


def test_cpu_patch_sets_model_and_the_tokenised_data(cpu_default):
    """Training loads the tokenized_data rule's set as it is (xtuner's own pre-tokenised way)."""
    cfg, plan = cpu_default["cfg"], cpu_default["plan"]
    assert cfg.pretrained_model_name_or_path == MODEL
    assert cfg.model.llm.pretrained_model_name_or_path == MODEL
    assert cfg.tokenizer.pretrained_model_name_or_path == MODEL
    dataset = cfg.train_dataloader.dataset
    assert str(raw(dataset.dataset, "type")) == "load_from_disk"
    assert dataset.dataset.dataset_path == f"{TOKENIZED}/dataset"
    assert dataset.do_dataset_tokenization is False and dataset.pack_to_max_length is False
    assert raw(dataset, "dataset_map_fn") is None and raw(dataset, "template_map_fn") is None
    assert cfg.randomness.seed == plan["seed"] == cpu_default["config"]["train"]["seed"]
    assert cfg.evaluation_inputs == cpu_default["config"]["train"]["evaluation_inputs"]


def test_cpu_patch_uses_plain_float32_training_on_gloo(cpu_default):
    cfg, text = cpu_default["cfg"], cpu_default["text"]
    assert str(raw(cfg.optim_wrapper, "type")) == "OptimWrapper"
    assert "from mmengine.optim import OptimWrapper\n" in text
    assert "loss_scale" not in cfg.optim_wrapper
    assert "dtype" not in cfg.optim_wrapper
    assert str(raw(cfg.model.llm, "torch_dtype")) == "float32"
    assert "torch_dtype=torch.float32," in text
    assert "quantization_config" not in cfg.model.llm
    assert "BitsAndBytesConfig," not in text.split("PART 2")[1]
    assert cfg.env_cfg.dist_cfg == {"backend": "gloo"}
    assert cfg.model_wrapper_cfg == {"type": "MMDistributedDataParallel", "device_ids": None,
                                     "broadcast_buffers": False,
                                     "find_unused_parameters": False}
    # lora stays, with the recipe's rank
    preset = cpu_default["values"]
    assert cfg.model.lora.r == preset["lora_r"]
    assert cfg.model.lora.lora_alpha == preset["lora_alpha"]


def test_cpu_patch_trains_by_iterations(cpu_default):
    cfg = cpu_default["cfg"]
    preset = cpu_default["values"]
    max_iters = preset["max_iters"]
    assert cfg.train_cfg.max_iters == max_iters
    assert "max_epochs" not in cfg.train_cfg
    warmup, cosine = cfg.param_scheduler
    assert str(raw(warmup, "type")) == "LinearLR"
    assert str(raw(cosine, "type")) == "CosineAnnealingLR"
    warmup_iters = int(preset["warmup_ratio"] * max_iters)
    assert warmup_iters >= 2 and cfg.warmup_iters == warmup_iters
    assert (warmup.by_epoch, warmup.begin, warmup.end) == (False, 0, warmup_iters)
    assert warmup.start_factor == 1e-5
    assert (cosine.by_epoch, cosine.begin, cosine.end) == (False, warmup_iters, max_iters)
    assert "convert_to_iter_based" not in warmup
    # the other recipe values
    assert cfg.optim_wrapper.optimizer.lr == preset["lr"]
    assert cfg.train_dataloader.batch_size == preset["batch_size"]
    assert cfg.optim_wrapper.accumulative_counts == preset["accumulative_counts"]
    assert cfg.max_length == preset["max_length"]
    assert cfg.default_hooks.logger.interval == preset["log_interval"]
    # each logged figure averages the iterations since the last line, not the last 10
    assert cfg.log_processor.window_size == preset["log_interval"]
    assert cfg.log_processor.by_epoch is False
    assert cfg.default_hooks.checkpoint.interval == preset["save_steps"]
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == preset["save_total_limit"]


def test_cpu_patch_keeps_comments_and_untouched_lines(cpu_default, original_text):
    text = cpu_default["text"]
    assert "#                          PART 1  Settings                           #\n" in text
    assert text.startswith("# Copyright (c) OpenMMLab. All rights reserved.\n")
    assert "# save checkpoint per `save_steps`.\n" in text
    original_lines = original_text.splitlines(keepends=True)
    patched = set(text.splitlines(keepends=True))
    for line in original_lines:
        if line.lstrip().startswith("#"):
            assert line in patched, f"comment line lost: {line!r}"
    # Every original line outside the edited values survives byte for byte.
    edited = re.compile(
        r"pretrained_model_name_or_path = |alpaca_en_path = |^max_length = |^batch_size = |"
        r"^accumulative_counts = |^lr = |^warmup_ratio = |^save_steps = |^save_total_limit = |"
        r"^evaluation_freq = |^evaluation_inputs = |dataset=dict\(type=load_dataset|"
        r"dataset_map_fn=|torch_dtype=|quantization_config=|load_in_|llm_int8_|bnb_4bit_|"
        r"type=BitsAndBytesConfig|type=AmpOptimWrapper|loss_scale=|dtype=\"float16\"|"
        r"param_scheduler = |by_epoch=True|begin=|end=|convert_to_iter_based|start_factor=|"
        r"eta_min=|type=LinearLR|type=CosineAnnealingLR|^train_cfg = |interval=10\)|"
        r"^log_processor = |type=EvaluateChatHook,|"
        r"^randomness = |backend=\"nccl\"|^\s*[\)\]],?\s*$|^\s*dict\($|"
        # the dataset dict, replaced by the tokenised set's
        r"^alpaca_en = |^    (tokenizer|max_length|remove_unused_columns|shuffle_before_pack|"
        r"pack_to_max_length|use_varlen_attn|template_map_fn)=")
    untouched = [line for line in original_lines if not edited.search(line)]
    assert len(untouched) > 150
    missing = [line for line in untouched if line not in patched]
    assert missing == []
    # ... and the edited ones really changed
    removed = set(original_lines) - patched
    assert 'pretrained_model_name_or_path = "internlm/internlm2-chat-1_8b"\n' in removed
    assert "        torch_dtype=torch.float16,\n" in removed
    assert "    type=AmpOptimWrapper,\n" in removed


def test_write_patched_config_writes_diff_and_plan_with_effective_values(cpu_default):
    folder, cfg = cpu_default["dir"], cpu_default["cfg"]
    diff = (folder / "diff.txt").read_text(encoding="utf-8")
    lines = diff.splitlines()
    assert lines[0] == f"--- {BASE}.py (xtuner built-in)"
    assert lines[1] == "+++ xtuner_config.py"
    assert lines[2].startswith("@@ -")
    assert f"+pretrained_model_name_or_path = {MODEL!r}" in lines
    assert '-pretrained_model_name_or_path = "internlm/internlm2-chat-1_8b"' in lines
    assert "+    do_dataset_tokenization=False," in lines
    plan = cpu_default["plan"]
    assert plan["base_config"] == BASE and plan["device"] == "cpu"
    assert plan["model_path"] == MODEL and plan["data_path"] == TOKENIZED
    effective = json.loads((folder / "effective.json").read_text(encoding="utf-8"))
    assert effective == {
        "max_length": cfg.max_length,
        "pack_to_max_length": cfg.pack_to_max_length,
        "batch_size": cfg.train_dataloader.batch_size,
        "accumulative_counts": cfg.optim_wrapper.accumulative_counts,
        "lr": cfg.optim_wrapper.optimizer.lr,
        "max_iters": cfg.train_cfg.max_iters,
        "max_epochs": None,
        "samples": SAMPLES,
    }
    preset = cpu_default["values"]
    assert effective["max_iters"] == preset["max_iters"]
    assert effective["lr"] == preset["lr"]
    assert effective["max_length"] == preset["max_length"]


def test_patched_diff_reproduces_the_patched_file(cpu_default, original_text):
    """The written diff is a real unified diff of original -> patched (restore the new side)."""
    diff = (cpu_default["dir"] / "diff.txt").read_text(encoding="utf-8")
    expected = "".join(difflib.unified_diff(
        original_text.splitlines(keepends=True), cpu_default["text"].splitlines(keepends=True),
        fromfile=f"{BASE}.py (xtuner built-in)", tofile="xtuner_config.py"))
    assert diff == expected
    assert diff.count("\n@@ ") >= 5


# ---------------------------------------------------------------------------------------------
# real model, cuda, base values


def test_cuda_qlora_keeps_quantization_and_amp(cuda_real):
    cfg = cuda_real["cfg"]
    assert "quantization_config" in cfg.model.llm
    assert cfg.model.llm.quantization_config.load_in_4bit is True
    assert str(raw(cfg.optim_wrapper, "type")) == "AmpOptimWrapper"
    assert cfg.optim_wrapper.loss_scale == "dynamic"
    assert str(raw(cfg.model.llm, "torch_dtype")) == "float16"
    assert cfg.env_cfg.dist_cfg == {"backend": "nccl"}
    assert "model_wrapper_cfg" not in cfg
    assert cfg.train_cfg.max_epochs == 3 and "max_iters" not in cfg.train_cfg
    assert cfg.train_dataloader.dataset.dataset.dataset_path == f"{TOKENIZED}/dataset"
    assert cfg.randomness.seed == cuda_real["config"]["train"]["seed"]


def test_cuda_base_values_diff_touches_only_the_tutorial_edits(cuda_real, original_text):
    """With every train key null only the model, the data (the tokenised set), the sample-chat
    prompts and the seed change, plus the recipe's save-on-signal and sample-chat hooks."""
    original_lines = original_text.splitlines(keepends=True)
    patched_lines = cuda_real["text"].splitlines(keepends=True)
    removed, added = [], []
    for op, a1, a2, b1, b2 in difflib.SequenceMatcher(None, original_lines, patched_lines,
                                                      autojunk=False).get_opcodes():
        if op != "equal":
            removed += original_lines[a1:a2]
            added += patched_lines[b1:b2]
    dataset_block = {line + "\n" for line in
                     original_text.split("alpaca_en = dict(\n")[1].split("\n)\n")[0].split("\n")}
    assert [line for line in removed if line not in dataset_block] == [
        'pretrained_model_name_or_path = "internlm/internlm2-chat-1_8b"\n',
        'evaluation_inputs = ["请给我介绍五个上海的景点", "Please tell me five scenic spots in Shanghai"]\n',
        "        type=EvaluateChatHook,\n",
        "randomness = dict(seed=None, deterministic=False)\n",
    ]
    assert "    dataset_map_fn=alpaca_map_fn,\n" in removed
    assert "        type=SampleChat,\n" in added
    inputs = cuda_real["config"]["train"]["evaluation_inputs"]
    seed = cuda_real["config"]["train"]["seed"]
    assert sorted(added[:3]) == ["from datasets import load_from_disk\n",
                                 "from xtuner_recipe.preemption import SaveCheckpointOnSignal\n",
                                 "from xtuner_recipe.sample_chat import SampleChat\n"]
    assert added[3:5] == [f"pretrained_model_name_or_path = {MODEL!r}\n",
                          f"evaluation_inputs = {inputs!r}\n"]
    assert f"    dataset=dict(type=load_from_disk, dataset_path='{TOKENIZED}/dataset'),\n" in added
    assert added[-4:] == [
        f"randomness = dict(seed={seed}, deterministic=False)\n", "\n",
        "# xtuner-recipe: on SIGTERM or SIGUSR1 save a checkpoint and stop; a rerun resumes there\n",
        "custom_hooks.append(dict(type=SaveCheckpointOnSignal))\n"]


def test_cuda_effective_block_holds_the_base_config_values(cuda_real):
    effective = json.loads((cuda_real["dir"] / "effective.json").read_text(encoding="utf-8"))
    assert effective == {"max_length": 2048, "pack_to_max_length": True, "batch_size": 1,
                                 "accumulative_counts": 16, "lr": 2e-4, "max_iters": None,
                                 "max_epochs": 3, "samples": SAMPLES}


# ---------------------------------------------------------------------------------------------
# variants


def test_full_method_drops_lora_and_quantization(original, original_text, tmp_path):
    config = load_config()
    config["train"]["method"] = "full"
    plan = make_plan(config, "cpu")
    _, cfg = write(tmp_path, original, plan)
    assert "lora" not in cfg.model
    assert "quantization_config" not in cfg.model.llm
    text = (tmp_path / "xtuner_config.py").read_text(encoding="utf-8")
    assert "lora=dict(" not in text and "quantization_config" not in text
    # the model dict is still well formed around the removed block
    model = next(n for n in ast.parse(text).body
                 if isinstance(n, ast.Assign) and n.targets[0].id == "model")
    assert [kw.arg for kw in model.value.keywords] == ["type", "use_varlen_attn", "llm"]


def test_full_method_on_cuda_keeps_amp_but_drops_quantization(original, tmp_path):
    config = load_config()
    config["model"]["path"] = MODEL
    config["train"]["method"] = "full"
    _, cfg = write(tmp_path, original, make_plan(config, "cuda"))
    assert "quantization_config" not in cfg.model.llm and "lora" not in cfg.model
    assert str(raw(cfg.optim_wrapper, "type")) == "AmpOptimWrapper"


def test_the_tokenised_set_is_built_from_the_records_in_the_template(original, tmp_path):
    config = load_config(train={"max_length": 256}, xtuner={"system": "你是门客er的小助手"})
    text, cfg = data_config(tmp_path, original, config)
    hf = cfg.train_dataloader.dataset.dataset
    assert str(raw(hf, "type")) == "load_dataset"
    assert hf.path == "json" and hf.data_files == {"train": DATA}
    assert raw(cfg.train_dataloader.dataset, "dataset_map_fn") is None
    assert cfg.max_length == 256 and cfg.SYSTEM == "你是门客er的小助手"
    assert cfg.pretrained_model_name_or_path == MODEL
    assert "prompt_template = PROMPT_TEMPLATE.internlm2_chat" in text


def test_messages_format_uses_openai_map_fn_and_imports_it(original, tmp_path):
    text, cfg = data_config(tmp_path, original, load_config(), data_format="messages")
    assert "from xtuner.dataset.map_fns import openai_map_fn\n" in text
    assert "    dataset_map_fn=openai_map_fn,\n" in text
    fn = raw(cfg.train_dataloader.dataset, "dataset_map_fn")
    assert str(fn) == "openai_map_fn"
    # the import lands among the imports, before the settings
    assert text.index("import openai_map_fn") < text.index("PART 1  Settings")


def test_text_format_is_incremental_pretraining_without_a_template(original, tmp_path):
    """As xtuner's *_custom_pretrain_* configs: pretrain_map_fn, template_map_fn None."""
    text, cfg = data_config(tmp_path, original, load_config(), data_format="text")
    assert "from xtuner.dataset.map_fns import pretrain_map_fn\n" in text
    assert str(raw(cfg.train_dataloader.dataset, "dataset_map_fn")) == "pretrain_map_fn"
    assert raw(cfg.train_dataloader.dataset, "template_map_fn") is None


def test_seed_003_shape_qlora_zero2_on_internlm_chat_7b(tmp_path):
    """recipes/internlm-chat-7b/qa_qlora_zero2: the medication Q&A exercise's built-in config with its own values,
    4-bit kept, ZeRO-2's JSON, 2 GB shards; the data is a qa split."""
    config = settings.resolve_config({"recipe": "internlm-chat-7b/qa_qlora_zero2",
                                      "model": {"path": MODEL}}, REPO)
    assert (config["task"], config["convert"]["max_shard_size"]) == ("qa", "2GB")
    assert Path(config["dataset"]["path"]).is_file()  # the recipe's sample, from the workflow
    assert deepspeed_source(config["train"]["deepspeed"]).name == \
        "deepspeed_zero2.json"
    base = check_base_config(config["xtuner"]["base_config"])
    _, cfg = write(tmp_path, base, make_plan(config, "cuda"))
    assert "quantization_config" in cfg.model.llm and cfg.model.lora.r == 64
    assert cfg.lr == 2e-4 and cfg.max_length == 2048 and cfg.max_epochs == 3


def test_sample_chat_is_bounded_by_evaluation_max_new_tokens(cpu_default, cuda_real):
    hook = next(h for h in cpu_default["cfg"].custom_hooks
                if str(raw(h, "type")) == "SampleChat")
    assert hook.max_new_tokens == cpu_default["values"]["evaluation_max_new_tokens"] == 48
    assert hook.evaluation_inputs == cpu_default["cfg"].evaluation_inputs  # the rest kept
    stock = next(h for h in cuda_real["cfg"].custom_hooks
                 if str(raw(h, "type")) == "SampleChat")
    assert "max_new_tokens" not in stock  # null: xtuner's own default


@pytest.mark.parametrize("max_iters, warmup_iters", [(60, 0), (66, 0), (67, 2), (160, 4)])
def test_short_runs_have_no_warm_up_that_never_ends(original, tmp_path, max_iters, warmup_iters):
    """A one-iteration LinearLR warm-up never leaves its start factor (lr ~0 all run)."""
    config = load_config(train={"max_iters": max_iters})
    _, cfg = write(tmp_path, original, make_plan(config, "cpu"))
    warmup, cosine = cfg.param_scheduler
    assert cfg.warmup_iters == warmup_iters
    assert warmup.start_factor == (1e-5 if warmup_iters else 1.0)
    assert (warmup.begin, warmup.end) == (0, max(warmup_iters, 1))
    assert (cosine.begin, cosine.end) == (warmup_iters, max_iters)


def test_max_epochs_mode_keeps_the_stock_epoch_scheduler(original, original_text, tmp_path):
    config = load_config(train={"max_epochs": 2})
    plan = make_plan(config, "cpu")
    assert plan["train"]["max_iters"] is None
    out, cfg = write(tmp_path, original, plan)
    assert cfg.max_epochs == 2
    assert cfg.train_cfg.max_epochs == 2 and "max_iters" not in cfg.train_cfg
    assert "max_iters" not in cfg and "warmup_iters" not in cfg
    warmup, cosine = cfg.param_scheduler
    assert warmup.by_epoch is True and warmup.convert_to_iter_based is True
    assert cosine.end == 2
    stock = original_text.split("param_scheduler = ")[1].split("\n]\n")[0]
    assert stock in out.read_text(encoding="utf-8")
    saved = json.loads((tmp_path / "effective.json").read_text(encoding="utf-8"))
    assert saved["max_epochs"] == 2 and saved["max_iters"] is None


def test_system_prompt_is_written_when_set(original, tmp_path):
    config = load_config()
    config["xtuner"]["system"] = "你是门客er的小助手"
    _, cfg = write(tmp_path, original, make_plan(config, "cpu"))
    assert cfg.SYSTEM == "你是门客er的小助手"


def test_non_sft_base_config_is_refused_naming_the_field(tmp_path):
    name = "internlm2_chat_1_8b_dpo_full"
    configs = builtin_configs()
    assert name in configs
    config = load_config()
    config["xtuner"]["base_config"] = name
    plan = make_plan(config, "cpu")
    with pytest.raises(ConfigError, match=r"xtuner\.base_config = 'internlm2_chat_1_8b_dpo_full'"):
        xtuner_config.patch_source(open(configs[name], encoding="utf-8").read(), plan)
    with pytest.raises(ConfigError, match="xtuner.base_config"):
        xtuner_config.write_patched_config(configs[name], tmp_path / "c.py", tmp_path / "d",
                                           tmp_path / "p.json", plan)
    assert not (tmp_path / "c.py").exists()


def test_reward_base_config_is_refused():
    name = "internlm2_chat_1_8b_reward_full_ultrafeedback"
    config = load_config()
    config["xtuner"]["base_config"] = name
    with pytest.raises(ConfigError, match="xtuner.base_config.*process_hf_dataset"):
        xtuner_config.patch_source(
            open(builtin_configs()[name], encoding="utf-8").read(),
            make_plan(config, "cpu"))


def test_check_patched_refuses_a_config_that_does_not_read_back(cpu_default, tmp_path):
    path = tmp_path / "cfg.py"
    path.write_text(cpu_default["text"], encoding="utf-8")
    plan = copy.deepcopy(cpu_default["plan"])
    xtuner_config.check_patched(path, plan)
    plan["seed"] = 7
    with pytest.raises(RuntimeError, match="seed"):
        xtuner_config.check_patched(path, plan)


# ---------------------------------------------------------------------------------------------
# DeepSpeed JSON


def deepspeed(value):
    return deepspeed_source(value)


@pytest.mark.parametrize("preset", ["zero1", "zero2", "zero3"])
def test_deepspeed_on_cpu_turns_fp16_and_bf16_off(preset, tmp_path):
    out = tmp_path / "ds.json"
    xtuner_config.write_deepspeed_config(deepspeed(preset), out, "cpu")
    ds = json.loads(out.read_text())
    source = json.loads(deepspeed(preset).read_text())
    assert ds["fp16"]["enabled"] is False and ds["bf16"]["enabled"] is False
    assert ds["fp16"]["initial_scale_power"] == source["fp16"]["initial_scale_power"]
    assert ds["zero_optimization"] == source["zero_optimization"]


@pytest.mark.parametrize("preset", ["zero2_offload", "zero3_offload"])
def test_deepspeed_offload_is_refused_on_cpu(preset, tmp_path):
    out = tmp_path / "ds.json"
    with pytest.raises(ConfigError, match="train.deepspeed: offload_"):
        xtuner_config.write_deepspeed_config(deepspeed(preset), out, "cpu")
    assert not out.exists()


@pytest.mark.parametrize("preset", ["zero2", "zero3_offload"])
def test_deepspeed_on_cuda_is_copied_unchanged(preset, tmp_path):
    out = tmp_path / "ds.json"
    xtuner_config.write_deepspeed_config(deepspeed(preset), out, "cuda")
    ds = json.loads(out.read_text())
    assert ds == json.loads(deepspeed(preset).read_text())
    assert ds["fp16"]["enabled"] == "auto" and ds["bf16"]["enabled"] == "auto"


@pytest.mark.parametrize("precision, enabled", [("bf16", "bf16"), ("fp16", "fp16")])
def test_deepspeed_on_cuda_follows_train_precision(precision, enabled, tmp_path):
    out = tmp_path / "ds.json"
    xtuner_config.write_deepspeed_config(deepspeed("zero2"), out, "cuda", precision)
    ds = json.loads(out.read_text())
    assert {k: ds[k]["enabled"] for k in ("fp16", "bf16")} == {
        k: k == enabled for k in ("fp16", "bf16")}


def test_deepspeed_on_cpu_adds_missing_precision_sections(tmp_path):
    source = tmp_path / "mine.json"
    source.write_text(json.dumps({"zero_optimization": {"stage": 1}}))
    xtuner_config.write_deepspeed_config(source, tmp_path / "out.json", "cpu")
    ds = json.loads((tmp_path / "out.json").read_text())
    assert ds == {"zero_optimization": {"stage": 1}, "fp16": {"enabled": False},
                  "bf16": {"enabled": False}}


# ---------------------------------------------------------------------------------------------
# SourceEdits on synthetic sources


def drop(text, path):
    src = SourceEdits(text, "synthetic")
    src.drop_kwarg(path)
    result = src.result()
    ast.parse(result)
    return result


def kwargs_of(text, name):
    node = next(n for n in ast.parse(text).body
                if isinstance(n, ast.Assign) and n.targets[0].id == name)
    return [(kw.arg, ast.literal_eval(kw.value)) for kw in node.value.keywords]


def test_drop_kwarg_on_its_own_line_removes_the_whole_line():
    text = "x = dict(\n    a=1,\n    b='two',\n    c=3,\n)\ny = 1\n"
    assert drop(text, ("x", "b")) == "x = dict(\n    a=1,\n    c=3,\n)\ny = 1\n"


def test_drop_kwarg_spanning_several_lines_removes_all_of_them():
    text = ("x = dict(\n    a=1,\n    b=dict(\n        k=1,\n        m=[1,\n           2],\n"
            "    ),\n    c=3,\n)\n")
    assert drop(text, ("x", "b")) == "x = dict(\n    a=1,\n    c=3,\n)\n"


def test_drop_kwarg_follows_a_nested_path():
    text = "inner = 1\nx = dict(\n    llm=dict(\n        q=dict(k=1),\n        d=2,\n    ),\n)\n"
    assert drop(text, ("x", "llm", "q")) == "inner = 1\nx = dict(\n    llm=dict(\n        d=2,\n    ),\n)\n"


@pytest.mark.parametrize("text, expected", [
    ("x = dict(a=1, b=2, c=3)\n", [("a", 1), ("c", 3)]),
    ("x = dict(b=2, a=1)\n", [("a", 1)]),
    ("x = dict(a=1, b=2)\n", [("a", 1)]),
    ("x = dict(a=1, b=2 , c=3)\n", [("a", 1), ("c", 3)]),
])
def test_drop_kwarg_inline_with_others(text, expected):
    result = drop(text, ("x", "b"))
    assert kwargs_of(result, "x") == expected
    assert result.count("\n") == 1 and "b=" not in result
    assert result.startswith("x = dict(") and result.endswith(")\n")


def test_drop_kwarg_after_chinese_text_on_the_same_line():
    # ast col offsets are UTF-8 byte offsets: 3 bytes per character here
    text = "x = dict(a='中文字符', b='三', c=3)\n"
    result = drop(text, ("x", "b"))
    assert kwargs_of(result, "x") == [("a", "中文字符"), ("c", 3)]
    assert "中文字符" in result and "三" not in result


def test_drop_kwarg_own_line_after_chinese_lines():
    text = "x = dict(\n    a='中文', b='三',\n    c=3,\n)\n"
    result = drop(text, ("x", "c"))
    assert kwargs_of(result, "x") == [("a", "中文"), ("b", "三")]
    assert result == "x = dict(\n    a='中文', b='三',\n)\n"


def test_set_kwarg_and_set_var_after_non_ascii_text():
    text = "s = '门客'; y = 1\nx = dict(a='中文字符', b='三', c=3)  # 注释\n"
    src = SourceEdits(text, "synthetic")
    src.set_kwarg(("x", "c"), "99")
    src.set_kwarg(("x", "b"), "'四'")
    src.set_var("y", "'二'")
    assert src.result() == "s = '门客'; y = '二'\nx = dict(a='中文字符', b='四', c=99)  # 注释\n"


def test_source_edits_replace_kwarg_insert_and_import():
    text = "import os\nfrom a import b\n\nn = 3\ncfg = dict(type=b, max_epochs=n)\n"
    src = SourceEdits(text, "synthetic")
    src.replace_kwarg(("cfg", "max_epochs"), "max_iters=m")
    src.insert_after_var("n", "m = 5\n")
    src.add_import("from c import d")
    src.add_import("import os")  # already there: no-op
    assert src.result() == ("import os\nfrom a import b\nfrom c import d\n\nn = 3\nm = 5\n"
                            "cfg = dict(type=b, max_iters=m)\n")


def test_source_edits_follow_names_and_report_missing_pieces():
    text = "inner = dict(k=1)\nouter = dict(child=inner, v=2)\nnot_call = 3\n"
    src = SourceEdits(text, "my_cfg")
    src.set_kwarg(("outer", "child", "k"), "7")
    assert "inner = dict(k=7)" in src.result()
    assert src.has_kwarg(("outer", "v")) and not src.has_kwarg(("outer", "w"))
    assert not src.has_kwarg(("missing", "w"))
    with pytest.raises(ConfigError, match=r"xtuner.base_config = 'my_cfg'.*has no `w=`"):
        src.set_kwarg(("outer", "w"), "1")
    with pytest.raises(ConfigError, match="no top-level `nope = ...`"):
        src.set_var("nope", "1")
    with pytest.raises(ConfigError, match="`not_call` is not a dict"):
        src.call_of(("not_call",))


def test_qlora_on_a_lora_only_base_config_is_a_config_error(tmp_path):
    name = "minicpm_1b_lora_alpaca_zh_e3"
    path = builtin_configs()[name]
    text = open(path, encoding="utf-8").read()
    assert "lora=dict(" in text and "quantization_config" not in text
    config = load_config()
    config["model"]["path"] = MODEL
    config["xtuner"]["base_config"] = name
    config["xtuner"]["prompt_template"] = "minicpm"
    assert make_plan(config, "cuda")["train"]["method"] == "lora"  # null: the base's method
    config["train"]["method"] = "qlora"
    plan = make_plan(config, "cuda")
    with pytest.raises(ConfigError, match="train.method = 'qlora'.*set train.method: lora"):
        xtuner_config.write_patched_config(path, tmp_path / "c.py", tmp_path / "d",
                                           tmp_path / "p.json", plan)


# ---------------------------------------------------------------------------------------------
# speed levers (the tuned GPU recipes)


def test_the_speed_levers_reach_the_config_and_read_back(original, tmp_path):
    config = load_config(recipe="internlm2-chat-1_8b/qlora_tuned", model={"path": MODEL},
                         train={"max_iters": 64})
    plan = make_plan(config, "cuda")
    assert {k: plan["train"][k] for k in ("attn_implementation", "activation_checkpointing",
                                          "fused_optimizer", "sampler", "precision")} == {
        "attn_implementation": "sdpa", "activation_checkpointing": False,
        "fused_optimizer": True, "sampler": "infinite", "precision": "bf16"}
    out, cfg = write(tmp_path, original, plan)
    text = out.read_text(encoding="utf-8")
    assert cfg.model.llm.attn_implementation == "sdpa"
    assert cfg.model.use_activation_checkpointing is False
    assert cfg.optim_wrapper.optimizer.fused is True
    assert str(raw(cfg.train_dataloader.sampler, "type")) == "InfiniteSampler"
    assert "from mmengine.dataset import InfiniteSampler\n" in text
    # bf16 throughout: weights, 4-bit compute and autocast; no float16 left
    assert "torch_dtype=torch.bfloat16" in text and "bnb_4bit_compute_dtype=torch.bfloat16" in text
    assert cfg.optim_wrapper.dtype == "bfloat16" and "float16" not in text.replace("bfloat16", "")
    assert (cfg.batch_size, cfg.accumulative_counts, cfg.train_cfg.max_iters) == (4, 4, 64)


def test_compiled_layers_and_the_chunked_loss_are_hooks_of_their_own(original, tmp_path):
    plan = make_plan(load_config(recipe="internlm2-chat-1_8b/qlora_tuned", model={"path": MODEL},
                                 train={"max_iters": 64}), "cuda")
    assert plan["train"]["compile"] is True and plan["train"]["chunked_loss"] is True

    def hooks_of(name):
        out, cfg = write(tmp_path, original, plan, name)
        return out.read_text(), {str(raw(h, "type")): h for h in cfg.custom_hooks}

    text, hooks = hooks_of("tuned.py")
    assert "from xtuner_recipe.compiled_layers import CompileDecoderLayers\n" in text
    assert "from xtuner_recipe.chunked_loss import ChunkedLoss\n" in text
    assert {"SaveCheckpointOnSignal", "CompileDecoderLayers", "ChunkedLoss"} <= hooks.keys()
    assert hooks["ChunkedLoss"]["compile"] is True  # its chunks compiled with the layers
    plan["train"]["compile"] = False
    text, hooks = hooks_of("eager.py")
    assert "compiled_layers" not in text and "CompileDecoderLayers" not in hooks
    assert hooks["ChunkedLoss"]["compile"] is False
    plan["train"]["chunked_loss"] = False
    text, hooks = hooks_of("stock_loss.py")
    assert "chunked_loss" not in text and "ChunkedLoss" not in hooks


def test_stock_values_leave_the_levers_as_xtuner_has_them(cuda_real, original_text):
    cfg = cuda_real["cfg"]
    assert "attn_implementation" not in cfg.model.llm
    assert "use_activation_checkpointing" not in cfg.model
    assert "fused" not in cfg.optim_wrapper.optimizer
    assert str(raw(cfg.train_dataloader.sampler, "type")) == "DefaultSampler"
    assert "CompileDecoderLayers" not in {str(raw(h, "type")) for h in cfg.custom_hooks}
    assert cfg.optim_wrapper.dtype == "float16"


@pytest.mark.parametrize("world_size, batch_size, expected", [(1, 4, 93), (4, 4, 24), (2, 1, 185)])
def test_the_infinite_sampler_trains_the_epochs_as_iterations(original, tmp_path, world_size,
                                                              batch_size, expected):
    """No epochs without epoch ends: max_epochs x samples / (batch x processes), rounded up."""
    config = load_config(train={"max_epochs": 3, "sampler": "infinite",
                                "batch_size": batch_size})
    plan = make_plan(config, "cpu", world_size=world_size)
    assert plan["train"]["max_iters"] is None
    out, cfg = write(tmp_path, original, plan)
    assert cfg.train_cfg.max_iters == expected == -(-3 * SAMPLES // (batch_size * world_size))
    assert "max_epochs" not in cfg.train_cfg
    warmup, cosine = cfg.param_scheduler
    assert warmup.by_epoch is False and cosine.end == expected
    assert json.loads((tmp_path / "effective.json").read_text())["max_iters"] == expected


def test_precision_on_cpu_is_refused_naming_the_field():
    config = load_config(train={"precision": "bf16"})
    with pytest.raises(ConfigError, match=r"train\.precision = 'bf16'.*float32"):
        settings.train_values(config, "cpu")
