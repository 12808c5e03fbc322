"""xtuner_recipe.replay: the base model's own answers as training pairs."""

import dataclasses
import json

from xtuner_recipe.replay import main, replay_pairs
from xtuner_recipe.settings import ReplaySettings


def test_pairs_skip_empty_answers():
    assert replay_pairs(["What is 2 + 2?", "Say nothing.", "你好"], ["4 ", "  ", "你好！"]) == [
        {"input": "What is 2 + 2?", "output": "4"}, {"input": "你好", "output": "你好！"}]


def test_cli_answers_every_prompt_from_its_settings(tiny_chat_model, tmp_path):
    settings = tmp_path / "replay.json"
    run = ReplaySettings(model_path=str(tiny_chat_model), prompts=["Write a poem.", "你好"],
                         prompt_template="internlm2_chat", system=None, max_new_tokens=6)
    settings.write_text(json.dumps(dataclasses.asdict(run)), encoding="utf-8")
    out = tmp_path / "out" / "pairs.json"
    main(["--settings", str(settings), "--out", str(out)])
    pairs = json.loads(out.read_text(encoding="utf-8"))
    assert [p["input"] for p in pairs] == [p for p in run.prompts][:len(pairs)]
    assert all(p["output"] == p["output"].strip() and p["output"] for p in pairs)
