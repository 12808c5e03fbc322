"""The tokenised, packed training set, made once per data, tokenizer, template and max_length.

xtuner's own `process_hf_dataset` runs as the built-in config describes it (the run's records,
map function, prompt template, max_length, packing) and the result is saved with datasets'
`save_to_disk`. The patched training config loads it as it is (`load_from_disk`,
`do_dataset_tokenization=False`: the way xtuner's process_untokenized_datasets tool rewrites a
config), so a retrain with other hyperparameters does not tokenise again and the train step's time
goes to training.

    python -m xtuner_recipe.tokenized_data --settings settings/tokenized_data.json \
        --dataset data/assistant.json --dataset-info data/dataset_info.json --out data/tokenized

The folder holds `dataset/` (the saved set), `source_config.py` (the config it was built from)
and `summary.json` (records, samples, tokens, seconds). Pre-flight runs here, the first step that
has the tokenizer and the records: the tokenizer loads and has the template's tokens, and every
record fits max_length.
"""

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path
from unittest import mock

from xtuner_recipe import manifest
from xtuner_recipe.messages import ConfigError, fail, log

DATASET = "dataset"
SUMMARY = "summary.json"


def saved_set(folder):
    """The folder `load_from_disk` reads."""
    return str(Path(folder) / DATASET)


def read_summary(folder):
    return json.loads((Path(folder) / SUMMARY).read_text(encoding="utf-8"))


def digest(folder):
    """sha256 of the saved set's data shards (what training reads; not the state file, whose
    fingerprints need not repeat, nor any cache file a reader left)."""
    return {name: entry["sha256"] for name, entry in
            manifest.tree_hashes(saved_set(folder)).items()
            if name.startswith("data-") and name.endswith(".arrow")}


def encode_with_one_bos(example, tokenizer, **kwargs):
    """xtuner's encode_fn, less a prepended BOS that the template's own first token repeats.

    encode_fn puts the tokenizer's BOS before a conversation's first turn; where BOS is the very
    token the template opens with (SmolLM2's is <|im_start|>), training would see
    `<|im_start|><|im_start|>user` while chat and evaluation ask with one."""
    from xtuner.dataset.utils import encode_fn, get_bos_eos_token_ids
    from xtuner.utils import IGNORE_INDEX

    encoded = encode_fn(example, tokenizer=tokenizer, **kwargs)
    bos = get_bos_eos_token_ids(tokenizer)[0]
    ids, labels = encoded["input_ids"], encoded["labels"]
    doubled = {i for i in range(len(ids) - 1) if len(bos) == 1 and ids[i] == ids[i + 1] == bos[0]
               and labels[i] == IGNORE_INDEX}
    return {**encoded, "input_ids": [t for i, t in enumerate(ids) if i not in doubled],
            "labels": [t for i, t in enumerate(labels) if i not in doubled]}


def build(plan, dataset_path, data_format, out):
    """Tokenise and pack `dataset_path` as `plan` (TokenizeSettings) says, into `out`: written
    aside and renamed (manifest.write_folder), so a failed build leaves no half-written folder."""
    from mmengine.config import Config
    from mmengine.runner import set_random_seed

    from xtuner_recipe import cpu_compat, preflight, use_runtime_env, xtuner_catalog, xtuner_config

    use_runtime_env()
    cpu_compat.apply_if_no_cuda()  # xtuner.dataset imports torchvision
    original = Path(xtuner_catalog.check_base_config(plan["base_config"])).read_text("utf-8")
    source = xtuner_config.data_source(original, plan, dataset_path, data_format)

    def tokenise(folder):
        (folder / "source_config.py").write_text(source, encoding="utf-8")
        cfg = Config.fromfile(str(folder / "source_config.py"))
        records = json.loads(Path(dataset_path).read_text(encoding="utf-8"))
        tokenizer = preflight.load_tokenizer(plan["model_path"], plan["prompt_template"])
        longest = preflight.check_max_length(tokenizer, plan["prompt_template"], records,
                                             cfg.max_length)
        log(f"longest record: {longest} tokens (max_length {cfg.max_length})")

        from xtuner.registry import BUILDER

        started = time.time()
        # xtuner maps with 32 processes by default; more processes than cores only add start-up
        cfg.train_dataloader.dataset.map_num_proc = max(1, min(32, len(os.sched_getaffinity(0))))
        set_random_seed(plan["seed"])  # the shuffle before packing draws from numpy's generator
        with mock.patch("xtuner.dataset.huggingface.encode_fn", encode_with_one_bos):
            dataset = BUILDER.build(cfg.train_dataloader.dataset)
        dataset.save_to_disk(saved_set(folder))
        summary = {"records": len(records), "samples": len(dataset),
                   "tokens": int(sum(dataset["length"])), "max_length": cfg.max_length,
                   "packed": bool(cfg.get("pack_to_max_length")),
                   "seconds": round(time.time() - started, 2)}
        (folder / SUMMARY).write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary

    return manifest.write_folder(out, tokenise)


def main(argv=None):
    from xtuner_recipe import settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="settings/tokenized_data.json")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dataset-info", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    plan = dataclasses.asdict(settings.read_stage(args.settings, "tokenized_data"))
    data_format = json.loads(Path(args.dataset_info).read_text())["format"]
    try:
        summary = build(plan, args.dataset, data_format, args.out)
    except ConfigError as error:
        fail(error)
    log(f"{summary['records']} records -> {summary['samples']} training samples of at most "
        f"{summary['max_length']} tokens ({summary['tokens']} tokens) in {summary['seconds']} s")


if __name__ == "__main__":
    main()
