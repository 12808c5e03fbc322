"""The tokenizer checks made before training."""

import pytest
from transformers import AutoTokenizer

from xtuner_recipe.messages import ConfigError
from xtuner_recipe.preflight import check_tokenizer, template_markers


def test_markers_are_the_templates_turn_ends():
    assert template_markers("internlm2_chat") == ["<|im_end|>"]
    assert template_markers("llama3_chat") == ["<|eot_id|>"]
    assert template_markers("default") == []


def test_a_chatml_tokenizer_serves_chatml_templates_only(tiny_chat_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    check_tokenizer(tokenizer, "internlm2_chat", "m")
    with pytest.raises(ConfigError, match=r"'<\|endoftext\|>'.*the unknown token"):
        check_tokenizer(tokenizer, "qwen_chat", "m")  # <|endoftext|> is this vocabulary's unk
    with pytest.raises(ConfigError, match=r"xtuner.prompt_template = 'llama3_chat'.*<\|eot_id\|>"):
        check_tokenizer(tokenizer, "llama3_chat", "m")


def test_a_tokenizer_without_bos_is_refused_naming_the_fix(tiny_chat_model):
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    tokenizer.bos_token = None
    with pytest.raises(ConfigError, match="model.path 'm'.*no bos_token.*tokenizer_config.json"):
        check_tokenizer(tokenizer, "internlm2_chat", "m")
