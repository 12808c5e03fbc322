"""Write the patched xtuner config: the built-in config that `xtuner copy-cfg` copies, with the
tutorial's edits made programmatically.

The edits are made on the source text at the positions Python's own parser reports, so the result
is the original file, comments and layout included, with only the edited values changed: a config a
user can read, diff against the original, and pass to `xtuner train` by hand. mmengine's Config then
loads the result and every edit is checked against what it reads back.
"""

import ast
import difflib
import json
from pathlib import Path

from xtuner_recipe.messages import ConfigError, fail, log


class SourceEdits:
    """Replace or delete pieces of a Python source file, addressed through its syntax tree."""

    def __init__(self, text, label):
        self.text = text
        self.label = label
        self.tree = ast.parse(text)
        self.lines = text.splitlines(keepends=True)
        self.line_starts = [0]
        for line in self.lines:
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.edits = []  # (start offset, end offset, replacement)

    def offset(self, lineno, col):
        # ast columns are UTF-8 byte offsets; convert to a character offset in the line.
        line = self.lines[lineno - 1]
        return self.line_starts[lineno - 1] + len(line.encode("utf-8")[:col].decode("utf-8"))

    def span(self, node):
        return self.offset(node.lineno, node.col_offset), self.offset(node.end_lineno,
                                                                        node.end_col_offset)

    def assignment(self, name):
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node
        return None

    def unsupported(self, what):
        return ConfigError(f"config field xtuner.base_config = {self.label!r}: {what}; the recipe "
                           "patches supervised fine-tuning configs laid out like "
                           "internlm2_chat_1_8b_qlora_alpaca_e3")

    def has_var(self, name):
        return self.assignment(name) is not None

    def set_var(self, name, expr):
        node = self.assignment(name)
        if node is None:
            raise self.unsupported(f"it has no top-level `{name} = ...`")
        self.edits.append((*self.span(node.value), expr))

    def insert_after_var(self, name, text):
        node = self.assignment(name)
        if node is None:
            raise self.unsupported(f"it has no top-level `{name} = ...`")
        end = self.line_starts[node.end_lineno]
        self.edits.append((end, end, text))

    def call_of(self, path):
        """The dict(...) call at a dotted path like ('model', 'llm'), following top-level names."""
        node = self.assignment(path[0])
        value = node.value if node is not None else None
        for key in path[1:]:
            value = self.keyword(value, key, path).value
        if isinstance(value, ast.Name):
            return self.call_of((value.id,))
        if not isinstance(value, ast.Call):
            raise self.unsupported(f"`{'.'.join(path)}` is not a dict(...) call")
        return value

    def keyword(self, call, key, path):
        if isinstance(call, ast.Name):
            call = self.call_of((call.id,))
        if isinstance(call, ast.Call):
            for kw in call.keywords:
                if kw.arg == key:
                    return kw
        raise self.unsupported(f"`{'.'.join(path)}` has no `{key}=`")

    def set_kwarg(self, path, expr):
        call = self.call_of(path[:-1])
        self.edits.append((*self.span(self.keyword(call, path[-1], path).value), expr))

    def replace_kwarg(self, path, text):
        """Replace a whole `key=value` (e.g. max_epochs=... by max_iters=...)."""
        kw = self.keyword(self.call_of(path[:-1]), path[-1], path)
        self.edits.append((self.offset(kw.lineno, kw.col_offset), self.span(kw.value)[1], text))

    def has_kwarg(self, path):
        try:
            call = self.call_of(path[:-1])
            self.keyword(call, path[-1], path)
            return True
        except ConfigError:
            return False

    def drop_kwarg(self, path):
        kw = self.keyword(self.call_of(path[:-1]), path[-1], path)
        start = self.offset(kw.lineno, kw.col_offset)
        end = self.span(kw.value)[1]
        line_start = self.line_starts[kw.lineno - 1]
        rest = self.text[end:]
        stripped = rest.lstrip(" ")
        if stripped.startswith(","):
            end += len(rest) - len(stripped) + 1
        if not self.text[line_start:start].strip():
            newline = self.text.find("\n", end)
            if newline != -1 and not self.text[end:newline].strip():
                start, end = line_start, newline + 1
        self.edits.append((start, end, ""))

    def list_item(self, name, item_type):
        """The dict(type=item_type, ...) call inside the top-level list `name`."""
        node = self.assignment(name)
        for call in getattr(node.value, "elts", []) if node is not None else []:
            if isinstance(call, ast.Call) and any(
                    kw.arg == "type" and isinstance(kw.value, ast.Name)
                    and kw.value.id == item_type for kw in call.keywords):
                return call
        raise self.unsupported(f"`{name}` has no dict(type={item_type}, ...)")

    def set_item_kwarg(self, name, item_type, key, expr):
        """Set `key=expr` in a list item's dict(...): replace it, or add it at the end."""
        call = self.list_item(name, item_type)
        for kw in call.keywords:
            if kw.arg == key:
                self.edits.append((*self.span(kw.value), expr))
                return
        last = call.keywords[-1]
        end = self.span(last.value)[1]
        indent = " " * last.col_offset if last.lineno != call.lineno else ""
        text = f",\n{indent}{key}={expr}" if indent else f", {key}={expr}"
        self.edits.append((end, end, text))

    def add_import(self, line):
        if line in self.text:
            return
        last = max(n.end_lineno for n in self.tree.body
                   if isinstance(n, (ast.Import, ast.ImportFrom)))
        pos = self.line_starts[last]
        self.edits.append((pos, pos, line + "\n"))

    def append(self, text):
        self.edits.append((len(self.text), len(self.text), text))

    def result(self):
        text = self.text
        for start, end, new in sorted(self.edits, key=lambda e: (e[0], e[1]), reverse=True):
            text = text[:start] + new + text[end:]
        return text


# Train keys written as the built-in config's top-level variable of the same name.
CONFIG_VARIABLES = ("max_length", "pack_to_max_length", "batch_size", "accumulative_counts", "lr",
                    "warmup_ratio", "save_steps", "save_total_limit", "evaluation_freq")
# Every train hyperparameter the recipe can set (schema: train.*); None keeps the built-in value.
TRAIN_KEYS = ("method", *CONFIG_VARIABLES, "max_epochs", "max_iters", "lora_r", "lora_alpha",
              "log_interval", "evaluation_max_new_tokens")


def _literal(value):
    return repr(value)


def set_model_and_data(src, plan):
    """Point the config at the local model and the run's JSON dataset (instead of the hub)."""
    src.set_var("pretrained_model_name_or_path", _literal(plan["model_path"]))
    dataset_name = src.keyword(src.call_of(("train_dataloader",)), "dataset",
                               ("train_dataloader", "dataset")).value
    if not isinstance(dataset_name, ast.Name):
        raise src.unsupported("train_dataloader.dataset is not a top-level name")
    dataset = dataset_name.id
    if src.keyword(src.call_of((dataset,)), "type", (dataset, "type")).value.id != \
            "process_hf_dataset":
        raise src.unsupported(f"`{dataset}` is not built by process_hf_dataset")
    hf_path = src.keyword(src.call_of((dataset, "dataset")), "path", (dataset, "dataset", "path"))
    if isinstance(hf_path.value, ast.Name) and src.has_var(hf_path.value.id):
        data_var = hf_path.value.id
        src.set_var(data_var, _literal(plan["data_path"]))
    else:
        data_var = "data_path"
        src.insert_after_var("pretrained_model_name_or_path",
                             f"data_path = {_literal(plan['data_path'])}\n")
    src.add_import("from datasets import load_dataset")
    src.set_kwarg((dataset, "dataset"),
                  f"dict(type=load_dataset, path='json', data_files=dict(train={data_var}))")
    if plan["data_format"] == "messages":
        src.add_import("from xtuner.dataset.map_fns import openai_map_fn")
        src.set_kwarg((dataset, "dataset_map_fn"), "openai_map_fn")
    elif plan["data_format"] == "text":
        # incremental pre-training, as xtuner's *_custom_pretrain_* configs: plain text, no
        # prompt template, no end-of-turn token
        src.add_import("from xtuner.dataset.map_fns import pretrain_map_fn")
        src.set_kwarg((dataset, "dataset_map_fn"), "pretrain_map_fn")
        src.set_kwarg((dataset, "template_map_fn"), "None")
    else:
        src.set_kwarg((dataset, "dataset_map_fn"), "None")


def set_prompting(src, plan):
    src.set_var("prompt_template", f"PROMPT_TEMPLATE.{plan['prompt_template']}")
    src.set_var("evaluation_inputs", _literal(list(plan["evaluation_inputs"])))
    if plan.get("system") is not None:
        src.set_var("SYSTEM", _literal(plan["system"]))


def set_hyperparameters(src, train):
    for key in CONFIG_VARIABLES:
        if train[key] is not None:
            src.set_var(key, _literal(train[key]))
    if train["log_interval"] is not None:
        src.set_kwarg(("default_hooks", "logger", "interval"), _literal(train["log_interval"]))
    if train["evaluation_max_new_tokens"] is not None:
        # xtuner's sample chat generates up to 600 tokens per prompt: minutes on a CPU
        src.set_item_kwarg("custom_hooks", "EvaluateChatHook", "max_new_tokens",
                           _literal(train["evaluation_max_new_tokens"]))
    if train["max_epochs"] is not None:
        src.set_var("max_epochs", _literal(train["max_epochs"]))
    if train["max_iters"] is not None:
        # Iteration-based training needs an iteration-based schedule: the stock one is derived
        # from epochs and would end its warm-up at iteration 0 or 1. mmengine's LinearLR steps
        # end - begin - 1 times, so a one-iteration warm-up never leaves its start factor (the
        # rate stays ~0 for the whole run): below two iterations there is no warm-up.
        src.insert_after_var("warmup_ratio", f"max_iters = {train['max_iters']}\n"
                             "warmup_iters = int(warmup_ratio * max_iters)\n"
                             "warmup_iters = warmup_iters if warmup_iters >= 2 else 0\n")
        src.replace_kwarg(("train_cfg", "max_epochs"), "max_iters=max_iters")
        src.set_var("param_scheduler", (
            "[\n"
            "    dict(type=LinearLR, start_factor=1e-5 if warmup_iters else 1.0, by_epoch=False,\n"
            "         begin=0, end=max(warmup_iters, 1)),\n"
            "    dict(type=CosineAnnealingLR, eta_min=0.0, by_epoch=False, begin=warmup_iters,\n"
            "         end=max_iters),\n"
            "]"))


def set_method(src, plan):
    """qlora keeps the 4-bit base; lora drops it; full drops the adapter too."""
    train, method = plan["train"], plan["train"]["method"]
    quantized = src.has_kwarg(("model", "llm", "quantization_config"))
    if method == "qlora" and not quantized:
        raise ConfigError(f"config field train.method = 'qlora': the base config "
                          f"{plan['base_config']!r} has no 4-bit quantization_config to keep; "
                          "set train.method: lora, or pick a *_qlora_* base config")
    if method in ("lora", "full") and quantized:
        src.drop_kwarg(("model", "llm", "quantization_config"))
    if method == "full":
        if src.has_kwarg(("model", "lora")):
            src.drop_kwarg(("model", "lora"))
        return
    if not src.has_kwarg(("model", "lora")):
        raise src.unsupported(f"it has no model.lora, which train.method = {method!r} needs")
    if train["lora_r"] is not None:
        src.set_kwarg(("model", "lora", "r"), _literal(train["lora_r"]))
    if train["lora_alpha"] is not None:
        src.set_kwarg(("model", "lora", "lora_alpha"), _literal(train["lora_alpha"]))


def set_cpu_training(src):
    """CPU: no AMP (mmengine refuses it off GPU), float32 weights, gloo instead of nccl, and a
    DDP wrapper without device_ids for multi-process runs."""
    src.set_kwarg(("model", "llm", "torch_dtype"), "torch.float32")
    src.add_import("from mmengine.optim import OptimWrapper")
    src.set_kwarg(("optim_wrapper", "type"), "OptimWrapper")
    for key in ("loss_scale", "dtype"):
        if src.has_kwarg(("optim_wrapper", key)):
            src.drop_kwarg(("optim_wrapper", key))
    src.set_kwarg(("env_cfg", "dist_cfg"), "dict(backend='gloo')")
    src.append(
        "\n# xtuner-recipe, CPU: DDP without device_ids (they only apply to CUDA modules)\n"
        "model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None,\n"
        "                         broadcast_buffers=False, find_unused_parameters=False)\n")


def save_on_signal(src):
    """A preempted or signalled run saves the iteration it reached (xtuner_recipe.preemption)."""
    src.add_import("from xtuner_recipe.preemption import SaveCheckpointOnSignal")
    src.append("\n# xtuner-recipe: on SIGTERM or SIGUSR1 save a checkpoint and stop; a rerun "
               "resumes there\ncustom_hooks.append(dict(type=SaveCheckpointOnSignal))\n")


def patch_source(original, plan):
    """Apply a patch plan (PatchSettings plus the data format) to the text of a built-in config;
    return the new text."""
    src = SourceEdits(original, plan["base_config"])
    set_model_and_data(src, plan)
    set_prompting(src, plan)
    set_hyperparameters(src, plan["train"])
    set_method(src, plan)
    src.set_kwarg(("randomness", "seed"), _literal(plan["seed"]))
    save_on_signal(src)
    if plan["device"] == "cpu":
        set_cpu_training(src)
    return src.result()


def check_patched(path, plan):
    """Load the patched file with mmengine, as `xtuner train` will, and check every edit."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(path))
    train = plan["train"]
    found = {
        "pretrained_model_name_or_path": cfg.pretrained_model_name_or_path,
        "data_files": cfg.train_dataloader.dataset.dataset.data_files["train"],
        "quantized": "quantization_config" in cfg.model.llm,
        "lora": "lora" in cfg.model,
        "seed": cfg.randomness.seed,
        # the hooks' types are lazy imports: compare their names, do not import them here
        "save_on_signal": any(str(dict.__getitem__(h, "type")) == "SaveCheckpointOnSignal"
                              for h in cfg.custom_hooks),
    }
    expected = {
        "pretrained_model_name_or_path": plan["model_path"],
        "data_files": plan["data_path"],
        "quantized": train["method"] == "qlora",
        "lora": train["method"] != "full",
        "seed": plan["seed"],
        "save_on_signal": True,
    }
    if train["max_iters"] is not None:
        found["max_iters"], expected["max_iters"] = cfg.train_cfg.max_iters, train["max_iters"]
    for key in ("lr", "batch_size", "max_length"):
        if train[key] is not None:
            found[key], expected[key] = cfg[key], train[key]
    wrong = {k: (found[k], expected[k]) for k in expected if found[k] != expected[k]}
    if wrong:
        raise RuntimeError(f"patched config {path} does not read back as planned: {wrong}")
    return cfg


def write_patched_config(original_path, out_path, diff_path, effective_path, plan):
    """The patched config, its diff against the built-in, and what training will really use
    (base config values included: the report reads these)."""
    original = Path(original_path).read_text(encoding="utf-8")
    patched = patch_source(original, plan)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(patched, encoding="utf-8")
    cfg = check_patched(out_path, plan)
    effective = {
        "max_length": cfg.get("max_length"),
        "pack_to_max_length": cfg.get("pack_to_max_length"),
        "batch_size": cfg.train_dataloader.batch_size,
        "accumulative_counts": cfg.optim_wrapper.get("accumulative_counts", 1),
        "lr": cfg.optim_wrapper.optimizer.lr,
        "max_iters": cfg.train_cfg.get("max_iters"),
        "max_epochs": cfg.train_cfg.get("max_epochs"),
    }
    diff = difflib.unified_diff(
        original.splitlines(keepends=True), patched.splitlines(keepends=True),
        fromfile=f"{plan['base_config']}.py (xtuner built-in)", tofile=out_path.name)
    Path(diff_path).write_text("".join(diff), encoding="utf-8")
    Path(effective_path).write_text(json.dumps(effective, indent=2, sort_keys=True) + "\n")
    return effective


def write_deepspeed_config(source, out_path, device):
    """Copy the chosen DeepSpeed JSON; on CPU turn fp16/bf16 off ('auto' turns fp16 on there)."""
    ds = json.loads(Path(source).read_text())
    if device == "cpu":
        for key in ("fp16", "bf16"):
            ds.setdefault(key, {})["enabled"] = False
        zero = ds.get("zero_optimization", {})
        for part in ("offload_optimizer", "offload_param"):
            if part in zero:
                raise ConfigError(
                    f"config field train.deepspeed: {part} needs DeepSpeed's compiled CPU Adam "
                    "and a GPU to offload from; on CPU use zero1, zero2 or zero3")
    Path(out_path).write_text(json.dumps(ds, indent=2) + "\n")


def main(argv=None):
    import argparse
    import dataclasses

    from xtuner_recipe import preflight, settings, use_runtime_env, xtuner_catalog

    parser = argparse.ArgumentParser(description="Write the patched xtuner config of a run.")
    parser.add_argument("--settings", required=True, help="settings/xtuner_config.json")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--dataset-info", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--diff", required=True)
    parser.add_argument("--effective", required=True)
    parser.add_argument("--deepspeed-out")
    args = parser.parse_args(argv)
    plan = dataclasses.asdict(settings.read_stage(args.settings, "xtuner_config"))
    plan["data_format"] = json.loads(Path(args.dataset_info).read_text())["format"]
    use_runtime_env()
    try:
        tokenizer = preflight.load_tokenizer(plan["model_path"], plan["prompt_template"])
        effective = write_patched_config(xtuner_catalog.check_base_config(plan["base_config"]),
                                         args.out, args.diff, args.effective, plan)
        records = json.loads(Path(args.dataset).read_text(encoding="utf-8"))
        longest = preflight.check_max_length(tokenizer, plan["prompt_template"], records,
                                             effective["max_length"])
        log(f"longest record: {longest} tokens (max_length {effective['max_length']})")
        if args.deepspeed_out:
            write_deepspeed_config(plan["deepspeed_source"], args.deepspeed_out, plan["device"])
    except ConfigError as error:
        fail(error)


if __name__ == "__main__":
    main()
