"""Checks of the base model's tokenizer against the prompt template, before any training: a
mismatch otherwise shows up as a model that never stops talking, or as a traceback deep in
xtuner's encoder."""

from xtuner_recipe.messages import ConfigError


def template_markers(template_name):
    """The tokens the template ends a turn with (its stop words and suffix)."""
    from xtuner.utils import PROMPT_TEMPLATE

    template = PROMPT_TEMPLATE[template_name]
    return list(dict.fromkeys([*template.get("STOP_WORDS", []),
                               *([template["SUFFIX"]] if template.get("SUFFIX") else [])]))


def check_tokenizer(tokenizer, template_name, model_path):
    """Raise ConfigError (field and fix) when the tokenizer cannot serve the template."""
    if tokenizer.bos_token_id is None:
        raise ConfigError(f"model.path {model_path!r}: its tokenizer has no bos_token, which "
                          "xtuner's data encoder needs; set bos_token in its "
                          "tokenizer_config.json")
    unknown = tokenizer.unk_token_id
    for marker in template_markers(template_name):
        ids = tokenizer.encode(marker, add_special_tokens=False)
        if len(ids) != 1 or ids[0] == unknown:
            found = "the unknown token" if ids == [unknown] else f"{len(ids)} tokens"
            raise ConfigError(
                f"config field xtuner.prompt_template = {template_name!r}: the model's tokenizer "
                f"({model_path}) has no single token {marker!r} that ends a turn in that "
                f"template (it encodes as {found}), so the tuned model would not know when to "
                "stop; choose the template the model was trained with")


def check_model(model_path, template_name):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
    check_tokenizer(tokenizer, template_name, model_path)
