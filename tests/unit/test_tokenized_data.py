"""The tokenised, packed training set: xtuner's own process_hf_dataset run once, saved, and the
same bytes for the same inputs (the attempt's hash covers them). Runs the module's real command
line on a tiny ChatML model (xtuner.dataset stays out of the test process)."""

import json
import subprocess
import sys

import pytest
from datasets import load_from_disk

from harness.workflow import REPO
from xtuner_recipe import tokenized_data

RECORDS = [{"conversation": [{"input": f"Question {i}?", "output": f"Answer number {i}."}]}
           for i in range(40)]


def build(tmp_path, model, out, max_length=64, pack=True):
    settings = tmp_path / "tokenized_data.json"
    settings.write_text(json.dumps({
        "base_config": "internlm2_chat_1_8b_qlora_alpaca_e3", "model_path": str(model),
        "prompt_template": "internlm2_chat", "system": None, "max_length": max_length,
        "pack_to_max_length": pack, "seed": 7}))
    data = tmp_path / "assistant.json"
    data.write_text(json.dumps(RECORDS))
    info = tmp_path / "dataset_info.json"
    info.write_text(json.dumps({"format": "conversation"}))
    return subprocess.run(
        [sys.executable, "-m", "xtuner_recipe.tokenized_data", "--settings", str(settings),
         "--dataset", str(data), "--dataset-info", str(info), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True)


@pytest.fixture(scope="module")
def built(tiny_chat_model, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tokenized")
    first, second = tmp / "first", tmp / "second"
    for out in (first, second):
        result = build(tmp, tiny_chat_model, out)
        assert result.returncode == 0, result.stderr[-3000:]
    return first, second, result


def test_records_are_packed_into_samples_of_max_length(built):
    first, _, result = built
    summary = tokenized_data.read_summary(first)
    dataset = load_from_disk(tokenized_data.saved_set(first))
    assert summary["records"] == len(RECORDS) and summary["samples"] == len(dataset)
    assert summary["samples"] < len(RECORDS) and summary["packed"] is True
    assert all(len(ids) == 64 for ids in dataset["input_ids"])  # packs are filled to max_length
    assert summary["tokens"] == sum(dataset["length"])
    assert f"{len(RECORDS)} records -> {summary['samples']} training samples" in result.stdout + result.stderr
    assert (first / "source_config.py").is_file()
    assert not list(first.parent.glob("*.partial*"))


def test_each_turn_opens_with_one_bos_as_chat_asks(built, tiny_chat_model):
    """The tiny model's BOS is <|im_start|>, the template's own first token (as SmolLM2's):
    xtuner would put it twice before the first turn; chat and evaluation put it once."""
    from transformers import AutoTokenizer

    first, _, _ = built
    bos = AutoTokenizer.from_pretrained(tiny_chat_model).bos_token_id
    ids = [t for sample in load_from_disk(tokenized_data.saved_set(first))["input_ids"]
           for t in sample]
    assert not [i for i in range(len(ids) - 1) if ids[i] == ids[i + 1] == bos]
    assert ids.count(bos) >= 2 * (len(ids) // 64)  # user and assistant turns still open with it


def test_the_same_inputs_give_the_same_bytes(built):
    first, second, _ = built
    assert tokenized_data.digest(first) == tokenized_data.digest(second)
    assert list(tokenized_data.digest(first)) == ["data-00000-of-00001.arrow"]


def test_a_max_length_shorter_than_a_record_is_refused_before_tokenising(
        tiny_chat_model, tmp_path):
    out = tmp_path / "tokenized"
    result = build(tmp_path, tiny_chat_model, out, max_length=8)
    assert result.returncode != 0
    assert "config field train.max_length = 8" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
