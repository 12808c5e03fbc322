"""Checkpoint -> Hugging Face adapter -> merged model, through xtuner's own converters.

    python -m xtuner_recipe.convert adapter --settings settings/convert.json --config CFG
        --final FINAL.json --out DIR
    python -m xtuner_recipe.convert merge --settings settings/convert.json --adapter DIR --out DIR

Each step runs xtuner's tool module (real exit status) and then checks the folder it wrote. Two
fixes on top: the adapter's config lists its modules in a stable order (peft writes a set), and
the merged model's generation config also stops at the prompt template's turn-end token, so a
plain `generate()` with the chat template ends its answer.
"""

import argparse
import collections
import json
import shutil
import subprocess
import sys
from pathlib import Path

from xtuner_recipe.messages import fail, log
from xtuner_recipe.settings import read_stage
from xtuner_recipe.train import checkpoint_iteration


def choose_checkpoint(final_record, choice):
    """The checkpoint to convert: the recorded final one, or iteration N if it is still there."""
    final = Path(final_record["checkpoint"])
    if choice == "last":
        return final
    work_dir = final.parent
    wanted = work_dir / f"iter_{int(choice)}.pth"
    if not wanted.exists():
        kept = sorted((p.name for p in work_dir.glob("iter_*.pth")), key=checkpoint_iteration)
        fail(f"config field convert.checkpoint = {choice}: {wanted} is not in the work "
                         f"dir (kept: {', '.join(kept) or 'none'}; train.save_total_limit "
                         "decides how many are kept)")
    return wanted


# How a full disk shows in the tools' errors (safetensors' Rust writer, Python's OSError).
NO_SPACE = ("No space left on device", "os error 28", "[Errno 28]")


def run_tool(args, out, needed=None):
    """Run one xtuner tool writing `out`; a full disk is said as such, with the space `needed`
    (bytes) where it is known. The tool's own error stays in the log above the recipe's line."""
    command = [sys.executable, "-m", "xtuner_recipe.xtuner_entry", *args]
    log(" ".join(command))
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace") as tool:
        tail = collections.deque(maxlen=40)
        for line in tool.stderr:  # into the log as it comes
            sys.stderr.write(line)
            tail.append(line)
    if tool.returncode == 0:
        return
    if any(sign in "".join(tail) for sign in NO_SPACE):
        shutil.rmtree(out, ignore_errors=True)  # the half-written folder only takes space
        free = shutil.disk_usage(Path(out).parent).free
        fail(f"xtuner {args[0]} ran out of disk space writing {out} ({megabytes(free)} free "
             f"there now" + (f"; it needs about {megabytes(needed)}" if needed else "") +
             "): free space on that disk or set results_dir to a larger one, then run again; "
             "the published result is untouched")
    fail(f"xtuner {args[0]} failed (its error is above)")


def megabytes(size):
    return f"{size / 1e6:,.1f} MB"


def weights_size(model_dir):
    """Bytes of a model folder's weight files: about what a merged copy of it takes."""
    return sum(p.stat().st_size for pattern in ("*.safetensors", "*.bin")
               for p in Path(model_dir).glob(pattern))


def require(folder, names, step):
    missing = [n for n in names if not any(Path(folder).glob(n))]
    if missing:
        fail(f"{step} exited 0 but {folder} lacks {', '.join(missing)}")


def sort_target_modules(adapter_dir):
    """peft saves target_modules from a set: a different order on every run. Sort it."""
    path = Path(adapter_dir) / "adapter_config.json"
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def token_ids_from_files(model_dir, tokens):
    """token -> id from the tokenizer's JSON files (added tokens, then the vocabulary), without
    loading transformers (seconds of every merge); None for a token not found there."""
    folder, found = Path(model_dir), {}
    config = folder / "tokenizer_config.json"
    if config.is_file():
        decoder = json.loads(config.read_text(encoding="utf-8")).get("added_tokens_decoder", {})
        found.update({t["content"]: int(i) for i, t in decoder.items()})
    fast = folder / "tokenizer.json"
    if fast.is_file():
        data = json.loads(fast.read_text(encoding="utf-8"))
        found.update({t["content"]: t["id"] for t in data.get("added_tokens", [])})
        vocab = (data.get("model") or {}).get("vocab")
        if isinstance(vocab, dict):
            found.update({t: i for t, i in vocab.items() if t in tokens and t not in found})
    return {t: found.get(t) for t in tokens}


def stop_at_turn_end(model_dir, template_name):
    """Add the template's turn-end tokens to the merged model's eos list (generation_config)."""
    from xtuner_recipe.preflight import template_markers

    markers = template_markers(template_name)
    ids = token_ids_from_files(model_dir, markers)
    path = Path(model_dir) / "generation_config.json"
    if path.is_file() and all(i is not None for i in ids.values()):
        generation = json.loads(path.read_text(encoding="utf-8"))
    else:  # a tokenizer without JSON files, or no generation config yet: ask transformers
        generation, ids = generation_and_ids(model_dir, markers)
    eos = generation.get("eos_token_id")
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    eos += [i for i in dict.fromkeys(ids.values()) if i is not None and i not in eos]
    generation["eos_token_id"] = eos
    path.write_text(json.dumps(generation, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log(f"generation_config.json: eos_token_id {eos}")


def generation_and_ids(model_dir, markers):
    """The generation config (made from the model config if the folder has none) and the
    markers' ids, through transformers."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    from xtuner_recipe import use_runtime_env

    use_runtime_env()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=True)
    try:
        generation = GenerationConfig.from_pretrained(model_dir)
    except OSError:  # the model has none yet
        generation = GenerationConfig.from_model_config(
            AutoConfig.from_pretrained(model_dir, trust_remote_code=True))
    ids = {m: tokenizer.convert_tokens_to_ids(m) for m in markers}
    return generation.to_dict(), {m: None if i == tokenizer.unk_token_id else i
                                  for m, i in ids.items()}


def adapter(config, final_path, checkpoint, out, method):
    record = json.loads(Path(final_path).read_text())
    source = choose_checkpoint(record, checkpoint)
    run_tool(["pth_to_hf", config, str(source), out, "--safe-serialization"], out)
    if method == "full":
        require(out, ["config.json", "*.safetensors"], "pth_to_hf")
    else:
        require(out, ["adapter_config.json", "adapter_model.*"], "pth_to_hf")
        sort_target_modules(out)


def merge(base, adapter_dir, out, max_shard_size, device, method, template_name):
    if method == "full":
        # Full fine-tuning changes the model itself: there is no adapter to merge.
        shutil.copytree(adapter_dir, out)
    else:
        run_tool(["merge", base, adapter_dir, out, "--max-shard-size", max_shard_size,
                  "--device", device, "--safe-serialization"], out, weights_size(base))
    require(out, ["config.json", "*.safetensors", "tokenizer_config.json"], "merge")
    stop_at_turn_end(out, template_name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    a = sub.add_parser("adapter")
    a.add_argument("--settings", required=True)
    a.add_argument("--config", required=True)
    a.add_argument("--final", required=True)
    a.add_argument("--out", required=True)
    m = sub.add_parser("merge")
    m.add_argument("--settings", required=True)
    m.add_argument("--adapter", required=True)
    m.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    run = read_stage(args.settings, "convert")
    if args.step == "adapter":
        adapter(args.config, args.final, run.checkpoint, args.out, run.method)
    else:
        merge(run.base_model, args.adapter, args.out, run.max_shard_size, run.merge_device,
              run.method, run.prompt_template)


if __name__ == "__main__":
    main()
