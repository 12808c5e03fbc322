"""The checks made before training: the tokenizer, record lengths, the owner's name, the results
folder."""

import re

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


def test_max_length_must_hold_the_longest_record(tiny_chat_model):
    """Defect: train.max_length 8 passed validation, then damaged the last good run."""
    from xtuner_recipe.preflight import check_max_length

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    identity = {"conversation": [{"input": "请介绍一下你自己", "output": "我是Ada的小助手"}]}
    records = [identity] * 3 + [
        {"messages": [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Who are you?"},
                      {"role": "assistant", "content": "Ada's assistant, at your service."}]}]
    longest = check_max_length(tokenizer, "internlm2_chat", records, 4096)
    assert 10 < longest < 4096
    assert check_max_length(tokenizer, "internlm2_chat", records, longest) == longest
    with pytest.raises(ConfigError, match=rf"train.max_length = 8: the longest record is "
                                          rf"{longest} tokens.*at least {longest}"):
        check_max_length(tokenizer, "internlm2_chat", records, 8)


def test_a_model_folder_whose_tokenizer_does_not_load_is_named(tmp_path):
    from xtuner_recipe.preflight import load_tokenizer

    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    (tmp_path / "tokenizer.json").write_text("not json")
    with pytest.raises(ConfigError, match="model.path .*its tokenizer does not load"):
        load_tokenizer(tmp_path, "internlm2_chat")


def test_a_template_of_another_family_gets_a_warning(tiny_chat_model):
    from xtuner_recipe.preflight import template_warning

    assert template_warning(tiny_chat_model, "internlm2_chat") is None  # ChatML both
    warning = template_warning(tiny_chat_model, "llama3_chat")
    assert "xtuner.prompt_template = 'llama3_chat'" in warning and "<|eot_id|>" in warning


def test_results_dir_must_be_writable(tmp_path):
    import os

    from xtuner_recipe.preflight import check_results_dir

    check_results_dir(tmp_path / "new" / "results")  # created later, under a writable folder
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: a file in the way instead
            locked.chmod(0o755)
            (locked / "results").write_text("a file")
            target = locked / "results" / "runs"
        else:
            target = locked / "results"
        with pytest.raises(ConfigError, match="config field results_dir = .*choose a folder"):
            check_results_dir(target)
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("arg, refused", [
    ("assistant={name: Ada}", False),
    ("assistant={name: \"{x} Ada\"}", False),  # braces and one kind of quote pass on
    ("assistant={name: O'Neil}", False),
    ("assistant={name: \"{x} O'Neil\"}", True),  # both kinds: the job's shell breaks it
    ("assistant={name: Ada $HOME}", False),  # single-quoted in the job's command
    ("assistant={name: O'Neil $HOME}", True),  # double-quoted: the shell would expand it
])
def test_config_values_snakemake_cannot_pass_to_its_jobs_are_refused(arg, refused):
    from xtuner_recipe.preflight import check_config_args

    if refused:
        with pytest.raises(ConfigError, match=r"--config assistant=\.\.\..*--configfile"):
            check_config_args([arg])
    else:
        check_config_args([arg])


def test_a_record_longer_than_the_model_reads_is_named_with_no_max_length_to_raise(
        tiny_chat_model):
    """Defect: 'set train.max_length to at least 7772559' for a model of 512 positions, and no
    record named."""
    from xtuner_recipe.preflight import check_max_length

    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    short = {"conversation": [{"input": "Who are you?", "output": "Ada's assistant."}]}
    long = {"conversation": [{"input": "Tell me everything", "output": "word " * 200}]}
    with pytest.raises(ConfigError, match=r"record 2 of the training data: 'Tell me everything'"
                       r".*reads at most 128 positions.*shorten or remove that record"):
        check_max_length(tokenizer, "internlm2_chat", [short, short, long], 64)


def test_a_record_whose_bytes_alone_cannot_fit_is_refused_before_any_job(tiny_chat_model):
    """Defect: a 10 MB answer passed the pre-job checks and failed the tokenising job minutes
    later. The bound is sound: the real tokenizer gives at least as many tokens."""
    from xtuner_recipe.preflight import check_record_sizes, record_length
    from xtuner.utils import PROMPT_TEMPLATE

    fits = {"conversation": [{"input": "Who are you?", "output": "Ada's assistant."}]}
    long = {"conversation": [{"input": "Tell me everything", "output": "茶 tea " * 400}]}
    where = {id(fits): "row 2 of faq.csv", id(long): "row 3 of faq.csv"}
    check_record_sizes([fits], tiny_chat_model, 64, lambda r: where[id(r)])
    with pytest.raises(ConfigError) as refused:
        check_record_sizes([fits, long], tiny_chat_model, None, lambda r: where[id(r)])
    message = str(refused.value)
    assert message.startswith("config field dataset.path: row 3 of faq.csv holds 3,218 bytes")
    assert "the model reads at most 128 positions" in message and "shorten or remove it" in message
    at_least = int(message.split("so at least ")[1].split(" tokens")[0].replace(",", ""))
    tokenizer = AutoTokenizer.from_pretrained(tiny_chat_model)
    assert record_length(tokenizer, PROMPT_TEMPLATE["internlm2_chat"], long) >= at_least > 128


@pytest.mark.parametrize("name", ["门客er", "Ada \"the\" O'Neil", "Ada 🤖", "{name}"])
def test_owner_names_of_any_script_quotes_and_emoji_are_fine(name):
    from xtuner_recipe.preflight import check_owner_name

    check_owner_name(name)


@pytest.mark.parametrize("name, fragment", [
    ("Ada\nLovelace", "character 4 is a control character or line break (U+000A"),
    ("Ada\t", "character 4 is a control character or line break (U+0009"),
    ("Ada\u2028", "(U+2028 LINE SEPARATOR)"),
    (" Ada", "remove the spaces around it"),
])
def test_owner_names_with_control_characters_are_refused(name, fragment):
    """Defect: a newline in the name was written into every training answer."""
    from xtuner_recipe.preflight import check_owner_name

    with pytest.raises(ConfigError, match="config field assistant.name = .*" + re.escape(fragment)):
        check_owner_name(name)


def test_a_results_dir_that_is_a_file_is_called_a_file(tmp_path):
    """Defect: 'the folder is not writable by this user', as root too."""
    from xtuner_recipe.preflight import check_results_dir

    (tmp_path / "out").write_text("")
    with pytest.raises(ConfigError, match=r"results_dir = .*: .*out is a file, not a folder"):
        check_results_dir(tmp_path / "out")
