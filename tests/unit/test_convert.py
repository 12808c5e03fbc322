"""Choosing the checkpoint to convert, and the checks on what xtuner's converters wrote."""

import pytest

from xtuner_recipe.convert import choose_checkpoint, require


@pytest.fixture
def work_dir(tmp_path):
    work = tmp_path / "work_dir"
    work.mkdir()
    for n in (160, 80, 1000):
        (work / f"iter_{n}.pth").write_bytes(b"x")
    (work / "last_checkpoint").write_text(str(work / "iter_1000.pth"))
    return work


def record(work_dir, n=1000):
    return {"checkpoint": str(work_dir / f"iter_{n}.pth"), "iteration": n}


def test_last_is_the_recorded_checkpoint(work_dir):
    assert choose_checkpoint(record(work_dir), "last") == work_dir / "iter_1000.pth"
    # the record wins, not the newest file
    assert choose_checkpoint(record(work_dir, 80), "last") == work_dir / "iter_80.pth"


@pytest.mark.parametrize("choice", [80, "80"])
def test_a_kept_iteration_is_found(work_dir, choice):
    assert choose_checkpoint(record(work_dir), choice) == work_dir / "iter_80.pth"


def test_a_deepspeed_checkpoint_folder_is_found(work_dir):
    (work_dir / "iter_40.pth").mkdir()
    assert choose_checkpoint(record(work_dir), 40) == work_dir / "iter_40.pth"


def test_an_iteration_not_kept_lists_the_kept_ones_numerically(work_dir):
    with pytest.raises(SystemExit) as exit_info:
        choose_checkpoint(record(work_dir), 120)
    message = str(exit_info.value)
    assert "convert.checkpoint = 120" in message
    assert str(work_dir / "iter_120.pth") in message
    assert "kept: iter_80.pth, iter_160.pth, iter_1000.pth;" in message
    assert "save_total_limit" in message


def test_an_iteration_in_an_empty_work_dir_says_none_kept(tmp_path):
    with pytest.raises(SystemExit, match=r"kept: none;"):
        choose_checkpoint({"checkpoint": str(tmp_path / "iter_5.pth")}, 5)


def test_require_passes_when_every_glob_matches(tmp_path):
    for name in ("config.json", "model-00001-of-00002.safetensors", "tokenizer_config.json"):
        (tmp_path / name).write_text("{}")
    assert require(tmp_path, ["config.json", "*.safetensors", "tokenizer_config.json"],
                   "merge") is None


def test_require_names_every_missing_piece(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin.tmp").write_text("")  # matches adapter_model.*
    require(tmp_path, ["adapter_config.json", "adapter_model.*"], "pth_to_hf")
    with pytest.raises(SystemExit) as exit_info:
        require(tmp_path, ["config.json", "adapter_config.json", "*.safetensors"], "merge")
    message = str(exit_info.value)
    assert message == (f"[xtuner-recipe] merge exited 0 but {tmp_path} lacks "
                       "config.json, *.safetensors")


def test_require_on_a_missing_folder_raises(tmp_path):
    with pytest.raises(SystemExit, match="lacks config.json"):
        require(tmp_path / "nope", ["config.json"], "merge")


def test_the_adapters_module_list_is_sorted(tmp_path):
    """Defect: peft writes target_modules from a set, in another order on each run."""
    import json

    from xtuner_recipe.convert import sort_target_modules

    (tmp_path / "adapter_config.json").write_text(json.dumps(
        {"target_modules": ["wqkv", "w2", "output", "w1"], "r": 8}))
    sort_target_modules(tmp_path)
    first = (tmp_path / "adapter_config.json").read_bytes()
    assert json.loads(first)["target_modules"] == ["output", "w1", "w2", "wqkv"]
    sort_target_modules(tmp_path)
    assert (tmp_path / "adapter_config.json").read_bytes() == first


def test_the_merged_model_also_stops_at_the_templates_turn_end(tiny_chat_model, tmp_path):
    """Defect: the merged model's generation config stopped only at </s>, so a plain generate()
    with the chat template ran past <|im_end|>."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    from xtuner_recipe.convert import stop_at_turn_end

    model = shutil.copytree(tiny_chat_model, tmp_path / "merged")
    end = AutoTokenizer.from_pretrained(model).convert_tokens_to_ids("<|im_end|>")
    GenerationConfig(bos_token_id=1, eos_token_id=0).save_pretrained(model)  # "</s>" only
    stop_at_turn_end(model, "internlm2_chat")
    eos = GenerationConfig.from_pretrained(model).eos_token_id
    assert eos == [0, end]
    stop_at_turn_end(model, "internlm2_chat")  # idempotent
    assert GenerationConfig.from_pretrained(model).eos_token_id == eos


def test_turn_end_ids_come_from_the_tokenizer_files_or_else_from_transformers(tiny_chat_model,
                                                                               tmp_path):
    """The merge step reads the ids from the tokenizer's JSON files (no transformers import);
    a folder without a generation config still gets one, through transformers."""
    import shutil

    from transformers import AutoTokenizer, GenerationConfig

    from xtuner_recipe.convert import stop_at_turn_end, token_ids_from_files

    model = shutil.copytree(tiny_chat_model, tmp_path / "merged")
    tokenizer = AutoTokenizer.from_pretrained(model)
    markers = ["<|im_end|>", "<|im_start|>", "not-a-token"]
    assert token_ids_from_files(model, markers) == {
        "<|im_end|>": tokenizer.convert_tokens_to_ids("<|im_end|>"),
        "<|im_start|>": tokenizer.convert_tokens_to_ids("<|im_start|>"), "not-a-token": None}
    (model / "generation_config.json").unlink(missing_ok=True)
    stop_at_turn_end(model, "internlm2_chat")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in \
        GenerationConfig.from_pretrained(model).eos_token_id


def test_a_full_disk_during_merge_is_said_with_the_space_needed(tiny_chat_model, tmp_path):
    """Defect: a full disk surfaced as 'SafetensorError ... os error 28' and 'xtuner merge
    failed'. The real merge writes onto a 64 kB tmpfs in a private mount namespace."""
    import subprocess
    import sys

    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode != 0:
        pytest.skip("no private mount namespace here (unshare -rm)")
    adapter = tmp_path / "adapter"
    get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_chat_model),
                   LoraConfig(r=2, target_modules=["q_proj", "v_proj"])).save_pretrained(adapter)
    small = tmp_path / "small"
    small.mkdir()
    merge = ("from xtuner_recipe.convert import merge\n"
             f"merge({str(tiny_chat_model)!r}, {str(adapter)!r}, {str(small / 'merged')!r}, "
             "'2GB', 'cpu', 'lora', 'internlm2_chat')")
    result = subprocess.run(
        ["unshare", "-rm", "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$1" && exec "$2" -c "$3"',
         "sh", str(small), sys.executable, merge], capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    needed = sum(p.stat().st_size for p in tiny_chat_model.glob("*.safetensors")) / 1e6
    assert last.startswith(f"[xtuner-recipe] xtuner merge ran out of disk space writing "
                           f"{small / 'merged'} ("), result.stderr[-3000:]
    assert f"it needs about {needed:,.1f} MB" in last
    assert "the published result is untouched" in last
    assert "os error 28" in result.stderr or "No space left" in result.stderr  # the tool's own
    print(last)
