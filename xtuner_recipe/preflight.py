"""Checks before any training: the results folder, the owner's name, the model folder's tokenizer
against the prompt template, and the records against max_length and the model's context (a cheap
bound from their bytes before any job, the exact count in the tokenising rule). Each mismatch
would otherwise show up as a failed job deep in a run, as a model that never stops talking, or as
a traceback in xtuner's encoder. The file checks run when Snakemake reads the config; the
tokenizer checks run in the config rule, the first step that has both the model and the data.
"""

import json
import os
import shlex
import types
import unicodedata
from pathlib import Path

from xtuner_recipe import xtuner_catalog
from xtuner_recipe.messages import ConfigError

# A model folder needs one of these to have a tokenizer.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def check_results_dir(path):
    """results_dir must be creatable and writable by this user, before any job runs."""
    folder = Path(path).absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"config field results_dir = {str(path)!r}: {existing} is a file, not "
                          "a folder; choose a folder (it is made if it does not exist)")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == folder else f"cannot be created ({existing} " \
                                                           "is not writable)"
        raise ConfigError(f"config field results_dir = {str(path)!r}: the folder {what} by this "
                          "user; choose a folder you can write to")


def check_tokenizer_files(model_path):
    folder = Path(model_path)
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"config field model.path = {str(model_path)!r}: the folder has no "
                          f"tokenizer ({', '.join(TOKENIZER_FILES)}); copy the model's tokenizer "
                          "files into it (AutoTokenizer.save_pretrained writes them)")


def template_warning(model_path, template_name):
    """A warning when the model's own chat template does not end turns the way the chosen xtuner
    template does (another model family); None when they agree or the model has none."""
    config = Path(model_path) / "tokenizer_config.json"
    if not config.is_file():
        return None
    own = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
    own = " ".join(t["template"] for t in own) if isinstance(own, list) else own
    missing = [m for m in template_markers(template_name) if own and m.strip() not in own]
    if not missing:
        return None
    return (f"xtuner.prompt_template = {template_name!r} ends turns with {missing[0]!r}, which "
            f"the chat template of {model_path} never uses: it may be another model family's "
            "template; choose the template that matches the model")


def check_config_args(config_args):
    """Snakemake hands `--config` values on to the jobs it spawns through a shell, quoted with
    Python's repr: a value with both quote characters (or a backslash) arrives broken. Refuse it
    here, naming the key."""
    for arg in config_args or ():
        quoted = repr(arg)  # what Snakemake writes into the job's shell command
        try:
            intact = shlex.split(quoted) == [arg]
        except ValueError:  # an unterminated quote
            intact = False
        if not intact or (quoted[0] == '"' and any(c in arg for c in "$`")):
            key = arg.split("=", 1)[0]
            raise ConfigError(f"--config {key}=...: the value mixes ' and \" (or has a "
                              "backslash, $ or `), which Snakemake cannot pass on to its jobs "
                              "through their shell; put it in a --configfile instead")


def template_markers(template_name):
    """The tokens the template ends a turn with (its stop words and suffix)."""
    template = xtuner_catalog.prompt_template(template_name)
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


def load_tokenizer(model_path, template_name):
    """The model's tokenizer, checked against the template."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=True)
    except (OSError, ValueError) as error:
        raise ConfigError(f"model.path {str(model_path)!r}: its tokenizer does not load "
                          f"({str(error).splitlines()[0]}); the folder needs the model's "
                          "tokenizer files") from None
    check_tokenizer(tokenizer, template_name, model_path)
    return tokenizer


def record_turns(record):
    """(system, input, output) of each turn of a conversation or messages record."""
    if "conversation" in record:
        return [(t.get("system") or "", t["input"], t["output"]) for t in record["conversation"]]
    turns, system, question = [], "", ""
    for message in record["messages"]:
        if message["role"] == "system":
            system = message["content"]
        elif message["role"] == "user":
            question = message["content"]
        else:
            turns.append((system, question, message["content"]))
            system = question = ""
    return turns


def record_length(tokenizer, template, record):
    """Tokens of one record in the prompt template, as xtuner's encoder builds it: bos, then per
    turn the system and instruction text, the answer and the template's suffix (pre-training
    text: bos and the text)."""
    if "text" in record:
        return 1 + len(tokenizer.encode(record["text"], add_special_tokens=False))
    length = 1
    for round_no, (system, question, answer) in enumerate(record_turns(record), start=1):
        prompt = (template.get("SYSTEM", "").format(system=system) if system else "") + \
            template["INSTRUCTION"].format(input=question, round=round_no)
        length += len(tokenizer.encode(prompt, add_special_tokens=False))
        length += len(tokenizer.encode(answer + template.get("SUFFIX", ""),
                                       add_special_tokens=False))
    return length


def check_max_length(tokenizer, template_name, records, max_length):
    """Every record must fit max_length: xtuner cuts longer ones, the answer's end (and its turn
    end token) first, so the model would learn answers that never stop."""
    from xtuner.utils import PROMPT_TEMPLATE

    template = PROMPT_TEMPLATE[template_name]
    distinct = {}  # each distinct record once, by its first index
    for i, record in enumerate(records):
        distinct.setdefault(json.dumps(record, sort_keys=True, ensure_ascii=False), i)
    longest, index = max((record_length(tokenizer, template, records[i]), i)
                         for i in distinct.values())
    if longest > max_length:
        context = context_length(tokenizer.name_or_path)
        fix = (f"the model reads at most {context} positions (max_position_embeddings), so no "
               "max_length fits it: shorten or remove that record" if context and
               longest > context else f"set train.max_length to at least {longest}")
        raise ConfigError(f"config field train.max_length = {max_length}: the longest record is "
                          f"{longest} tokens in the {template_name} template (record {index} of "
                          f"the training data: {opening(records[index])}), and xtuner would cut "
                          f"its end (an answer's stop, or a document's tail); {fix}")
    return longest


def opening(record, chars=40):
    """The first words of a record, to recognise it by."""
    text = record["text"] if "text" in record else record_turns(record)[0][1]
    return repr(text[:chars] + ("..." if len(text) > chars else ""))


def context_length(model_path):
    """The positions the model reads (max_position_embeddings in its config.json), or None."""
    config = Path(model_path) / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")


def longest_token_bytes(model_path):
    """The most bytes of text one token of the model's tokenizer.json stands for (its vocabulary
    and added tokens, as UTF-8; never fewer than the token really covers), or None."""
    path = Path(model_path) / "tokenizer.json"
    if not path.is_file():
        return None
    tokenizer = json.loads(path.read_text(encoding="utf-8"))
    vocab = tokenizer.get("model", {}).get("vocab") or {}
    pieces = [p[0] if isinstance(p, list) else p for p in vocab]  # Unigram: [piece, score]
    pieces += [t["content"] for t in tokenizer.get("added_tokens", [])]
    return max((len(p.encode("utf-8")) for p in pieces), default=None)


def record_bytes(record):
    """Bytes of a record's text (every turn's system, input and output; or its text)."""
    texts = [record["text"]] if "text" in record else \
        [t for turn in record_turns(record) for t in turn]
    return sum(len(t.encode("utf-8")) for t in texts)


def check_record_sizes(records, model_path, max_length, locate):
    """Before any job: refuse a record whose bytes alone show it cannot fit (the tokenising rule
    would spend minutes and gigabytes to find it). A token stands for at most
    longest_token_bytes(model_path) bytes, so a record of B bytes is at least B / that many
    tokens. Needs the model's tokenizer.json and config.json on disk (a model built by the recipe
    has them from its first run on); otherwise the tokenising rule's exact check is the first.
    `locate(record)` says where the record is (its row, line or index)."""
    per_token, context = longest_token_bytes(model_path), context_length(model_path)
    limits = [(n, what) for n, what in [
        (context, f"the model reads at most {context} positions (max_position_embeddings in "
                  f"{Path(model_path) / 'config.json'})"),
        (max_length, f"train.max_length is {max_length}")] if n]
    if not per_token or not limits:
        return
    limit, why = min(limits)
    for record in records:
        at_least = -(-record_bytes(record) // per_token)
        if at_least > limit:
            fix = ("shorten or remove it" if limit == context else
                   f"shorten or remove it, or raise train.max_length (at most {context})"
                   if context else "shorten or remove it, or raise train.max_length")
            raise ConfigError(
                f"config field dataset.path: {locate(record)} holds {record_bytes(record):,} "
                f"bytes of text, so at least {at_least:,} tokens (a token of this model stands "
                f"for at most {per_token} bytes), and {why}; {fix}")


def locate_record(record, dataset):
    """Where the user's data holds `record` ('row 3 of faq.csv'): read again, only to name it."""
    from xtuner_recipe import user_data

    spec = types.SimpleNamespace(**dataset)
    for key in ("path", "test_path"):
        if dataset[key]:
            found = user_data.read_source(dataset[key], spec, key)[2]
            where = next((w for w, r in found if r == record), None)
            if where:
                return f"{where} of {dataset[key]}"
    return "a record"


def check_owner_name(name):
    """The owner's name is written into every training answer and searched for in every
    evaluated one: it is one line of printable text. Any script, punctuation, quotes and emoji
    are fine; control characters (a line break, a tab, an escape) and line separators are not,
    nor spaces around it (the evaluation would look for them too)."""
    field = f"config field assistant.name = {name!r}"
    bad = next(((i, c) for i, c in enumerate(name)
                if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad:
        at, char = bad
        raise ConfigError(f"{field}: character {at + 1} is a control character or line break "
                          f"(U+{ord(char):04X} {unicodedata.name(char, 'control')}), which would "
                          "be written into every training answer; a name is one line of "
                          "printable text (any script, quotes and emoji are fine)")
    if name != name.strip():
        raise ConfigError(f"{field}: remove the spaces around it")
