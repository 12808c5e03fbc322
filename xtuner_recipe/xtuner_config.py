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

from xtuner_recipe import tokenized_data
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
        self._put(self.list_item(name, item_type), key, expr)

    def put_kwarg(self, path, expr):
        """Set `key=expr` in the dict(...) at a dotted path: replace it, or add it at the end."""
        self._put(self.call_of(path[:-1]), path[-1], expr)

    def _put(self, call, key, expr):
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
# Speed levers (bench/results/throughput-h100.md measures each): their paths in the config.
LEVERS = {"attn_implementation": ("model", "llm", "attn_implementation"),
          "activation_checkpointing": ("model", "use_activation_checkpointing"),
          "fused_optimizer": ("optim_wrapper", "optimizer", "fused")}
# Every train hyperparameter the recipe can set (schema: train.*); None keeps the built-in value.
TRAIN_KEYS = ("method", *CONFIG_VARIABLES, "max_epochs", "max_iters", "lora_r", "lora_alpha",
              "log_interval", "evaluation_max_new_tokens", *LEVERS, "sampler", "precision",
              "compile", "chunked_loss")
# train.precision -> (torch dtype, AmpOptimWrapper dtype, DeepSpeed section that is enabled)
PRECISIONS = {"bf16": ("torch.bfloat16", "bfloat16", "bf16"),
              "fp16": ("torch.float16", "float16", "fp16")}


def _literal(value):
    return repr(value)


def dataset_var(src):
    """The top-level name of the training set's dict(type=process_hf_dataset, ...)."""
    dataset_name = src.keyword(src.call_of(("train_dataloader",)), "dataset",
                               ("train_dataloader", "dataset")).value
    if not isinstance(dataset_name, ast.Name):
        raise src.unsupported("train_dataloader.dataset is not a top-level name")
    dataset = dataset_name.id
    if src.keyword(src.call_of((dataset,)), "type", (dataset, "type")).value.id != \
            "process_hf_dataset":
        raise src.unsupported(f"`{dataset}` is not built by process_hf_dataset")
    return dataset


def set_model(src, model_path):
    """Point the config at the local model (instead of the hub)."""
    src.set_var("pretrained_model_name_or_path", _literal(model_path))


def set_raw_data(src, data_path, data_format):
    """The run's JSON records through xtuner's own map function and prompt template (what the
    tokenized_data rule runs; training then loads its result)."""
    dataset = dataset_var(src)
    hf_path = src.keyword(src.call_of((dataset, "dataset")), "path", (dataset, "dataset", "path"))
    if isinstance(hf_path.value, ast.Name) and src.has_var(hf_path.value.id):
        data_var = hf_path.value.id
        src.set_var(data_var, _literal(data_path))
    else:
        data_var = "data_path"
        src.insert_after_var("pretrained_model_name_or_path",
                             f"data_path = {_literal(data_path)}\n")
    src.add_import("from datasets import load_dataset")
    src.set_kwarg((dataset, "dataset"),
                  f"dict(type=load_dataset, path='json', data_files=dict(train={data_var}))")
    if data_format == "messages":
        src.add_import("from xtuner.dataset.map_fns import openai_map_fn")
        src.set_kwarg((dataset, "dataset_map_fn"), "openai_map_fn")
    elif data_format == "text":
        # incremental pre-training, as xtuner's *_custom_pretrain_* configs: plain text, no
        # prompt template, no end-of-turn token
        src.add_import("from xtuner.dataset.map_fns import pretrain_map_fn")
        src.set_kwarg((dataset, "dataset_map_fn"), "pretrain_map_fn")
        src.set_kwarg((dataset, "template_map_fn"), "None")
    else:
        src.set_kwarg((dataset, "dataset_map_fn"), "None")


def set_tokenized_data(src, tokenized_path):
    """Train on the tokenised, packed set the tokenized_data rule saved, loaded as it is (the way
    xtuner's own process_untokenized_datasets tool rewrites a config)."""
    src.add_import("from datasets import load_from_disk")
    src.set_var(dataset_var(src), (
        "dict(\n"
        "    type=process_hf_dataset,\n"
        f"    dataset=dict(type=load_from_disk, dataset_path={_literal(tokenized_path)}),\n"
        "    do_dataset_tokenization=False,\n"
        "    dataset_map_fn=None,\n"
        "    template_map_fn=None,\n"
        "    split=None,\n"
        "    pack_to_max_length=False,\n"
        "    input_ids_with_output=False,\n"
        "    # what is left is adding each pack's length: worker processes cost more than that\n"
        "    map_num_proc=1,\n"
        ")"))


def set_data_shape(src, values):
    """max_length and pack_to_max_length from `values` (None keeps the built-in's)."""
    for key in ("max_length", "pack_to_max_length"):
        if values[key] is not None:
            src.set_var(key, _literal(values[key]))


def data_source(original, plan, data_path, data_format):
    """The built-in config with the edits that decide the tokenised training set (model,
    records, template, system, max_length, packing): what the tokenized_data rule builds."""
    src = SourceEdits(original, plan["base_config"])
    set_model(src, plan["model_path"])
    set_raw_data(src, data_path, data_format)
    set_template(src, plan)
    set_data_shape(src, plan)
    return src.result()


def set_template(src, plan):
    """The prompt template and system line (the tokenised set and the sample chat use them)."""
    src.set_var("prompt_template", f"PROMPT_TEMPLATE.{plan['prompt_template']}")
    if plan.get("system") is not None:
        src.set_var("SYSTEM", _literal(plan["system"]))


def set_prompting(src, plan):
    set_template(src, plan)
    src.set_var("evaluation_inputs", _literal(list(plan["evaluation_inputs"])))
    # xtuner's sample chat, less its repeat of the last iteration's answers after training
    src.add_import("from xtuner_recipe.sample_chat import SampleChat")
    src.set_item_kwarg("custom_hooks", "EvaluateChatHook", "type", "SampleChat")


def set_hyperparameters(src, train, samples, world_size):
    """The train values; `samples`: packs (or records) in the tokenised training set."""
    for key in CONFIG_VARIABLES:
        if train[key] is not None:
            src.set_var(key, _literal(train[key]))
    if train["log_interval"] is not None:
        src.set_kwarg(("default_hooks", "logger", "interval"), _literal(train["log_interval"]))
        # each logged loss and time is the mean of the iterations since the previous line; with
        # mmengine's window of 10 over a shorter interval the first iteration (warm-up,
        # compiling) weighs on the next 10 lines and on the report's steady-state speed
        src.put_kwarg(("log_processor", "window_size"), _literal(train["log_interval"]))
    if train["evaluation_max_new_tokens"] is not None:
        # xtuner's sample chat generates up to 600 tokens per prompt: minutes on a CPU
        src.set_item_kwarg("custom_hooks", "EvaluateChatHook", "max_new_tokens",
                           _literal(train["evaluation_max_new_tokens"]))
    if train["max_epochs"] is not None:
        src.set_var("max_epochs", _literal(train["max_epochs"]))
    if train["max_iters"] is not None:
        iterations = f"max_iters = {train['max_iters']}\n"
    elif train["sampler"] == "infinite":
        # the infinite sampler has no epochs: the epochs become iterations over the tokenised set
        iterations = (f"samples = {samples}  # in the tokenised training set\n"
                      f"world_size = {world_size}\n"
                      "max_iters = -(-max_epochs * samples // (batch_size * world_size))\n")
    else:
        iterations = None
    if iterations:
        # Iteration-based training needs an iteration-based schedule: the stock one is derived
        # from epochs and would end its warm-up at iteration 0 or 1. mmengine's LinearLR steps
        # end - begin - 1 times, so a one-iteration warm-up never leaves its start factor (the
        # rate stays ~0 for the whole run): below two iterations there is no warm-up.
        src.insert_after_var("warmup_ratio", iterations +
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


def set_speed_levers(src, train):
    """Attention kernel, activation checkpointing, fused AdamW, the sampler, the GPU precision,
    compiled decoder layers and the chunked loss (bench/results/ measures each)."""
    for key, path in LEVERS.items():
        if train[key] is not None:
            src.put_kwarg(path, _literal(train[key]))
    if train["sampler"] == "infinite":
        # mmengine's default sampler ends an epoch with time.sleep(2) (every 8 iterations of
        # the tutorial's data on 4 GPUs); the infinite one reshuffles without stopping
        src.add_import("from mmengine.dataset import InfiniteSampler")
        src.set_kwarg(("train_dataloader", "sampler", "type"), "InfiniteSampler")
    if train["precision"] is not None:
        torch_dtype, amp_dtype, _ = PRECISIONS[train["precision"]]
        src.set_kwarg(("model", "llm", "torch_dtype"), torch_dtype)
        if src.has_kwarg(("model", "llm", "quantization_config", "bnb_4bit_compute_dtype")):
            src.set_kwarg(("model", "llm", "quantization_config", "bnb_4bit_compute_dtype"),
                          torch_dtype)
        if src.has_kwarg(("optim_wrapper", "dtype")):
            src.set_kwarg(("optim_wrapper", "dtype"), _literal(amp_dtype))
    if train["compile"]:
        add_hook(src, "xtuner_recipe.compiled_layers", "CompileDecoderLayers", "train.compile")
    if train["chunked_loss"]:
        add_hook(src, "xtuner_recipe.chunked_loss", "ChunkedLoss", "train.chunked_loss",
                 compile=bool(train["compile"]))


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


def add_hook(src, module, name, why, **kwargs):
    """One of the recipe's mmengine hooks after the base config's own `custom_hooks`."""
    src.add_import(f"from {module} import {name}")
    args = "".join(f", {key}={_literal(value)}" for key, value in kwargs.items())
    src.append(f"\n# xtuner-recipe: {why}\ncustom_hooks.append(dict(type={name}{args}))\n")


def save_on_signal(src):
    """A preempted or signalled run saves the iteration it reached (xtuner_recipe.preemption)."""
    add_hook(src, "xtuner_recipe.preemption", "SaveCheckpointOnSignal",
             "on SIGTERM or SIGUSR1 save a checkpoint and stop; a rerun resumes there")


def patch_source(original, plan):
    """Apply a patch plan (PatchSettings plus the tokenised set's `samples`) to the text of a
    built-in config; return the new text."""
    src = SourceEdits(original, plan["base_config"])
    set_model(src, plan["model_path"])
    set_tokenized_data(src, tokenized_data.saved_set(plan["data_path"]))
    set_prompting(src, plan)
    set_hyperparameters(src, plan["train"], plan["samples"], plan["world_size"])
    set_method(src, plan)
    set_speed_levers(src, plan["train"])
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
    # the hooks' types are lazy imports: compare their names, do not import them here
    hook_names = {str(dict.__getitem__(h, "type")) for h in cfg.custom_hooks}
    found = {
        "pretrained_model_name_or_path": cfg.pretrained_model_name_or_path,
        "data": cfg.train_dataloader.dataset.dataset.dataset_path,
        "quantized": "quantization_config" in cfg.model.llm,
        "lora": "lora" in cfg.model,
        "seed": cfg.randomness.seed,
        "save_on_signal": "SaveCheckpointOnSignal" in hook_names,
        "compile": "CompileDecoderLayers" in hook_names,
        "chunked_loss": "ChunkedLoss" in hook_names,
    }
    expected = {
        "pretrained_model_name_or_path": plan["model_path"],
        "data": tokenized_data.saved_set(plan["data_path"]),
        "quantized": train["method"] == "qlora",
        "lora": train["method"] != "full",
        "seed": plan["seed"],
        "save_on_signal": True,
        "compile": bool(train["compile"]),
        "chunked_loss": bool(train["chunked_loss"]),
    }
    if train["max_iters"] is not None:
        found["max_iters"], expected["max_iters"] = cfg.train_cfg.max_iters, train["max_iters"]
    for key in ("lr", "batch_size", "max_length"):
        if train[key] is not None:
            found[key], expected[key] = cfg[key], train[key]
    for key, path in LEVERS.items():
        if train[key] is not None:
            value = cfg
            for part in path:
                value = value[part]
            found[key], expected[key] = value, train[key]
    if train["sampler"] is not None:
        found["sampler"] = str(dict.__getitem__(cfg.train_dataloader.sampler, "type"))
        expected["sampler"] = ("InfiniteSampler" if train["sampler"] == "infinite"
                               else found["sampler"])
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
        "samples": plan["samples"],
    }
    diff = difflib.unified_diff(
        original.splitlines(keepends=True), patched.splitlines(keepends=True),
        fromfile=f"{plan['base_config']}.py (xtuner built-in)", tofile=out_path.name)
    Path(diff_path).write_text("".join(diff), encoding="utf-8")
    Path(effective_path).write_text(json.dumps(effective, indent=2, sort_keys=True) + "\n")
    return effective


def write_deepspeed_config(source, out_path, device, precision=None):
    """Copy the chosen DeepSpeed JSON; on CPU turn fp16/bf16 off ('auto' turns fp16 on there); on
    a GPU train.precision picks the one enabled (else xtuner's 'auto': bf16 where supported)."""
    ds = json.loads(Path(source).read_text())
    if device != "cpu" and precision is not None:
        enabled = PRECISIONS[precision][2]
        for key in ("fp16", "bf16"):
            ds.setdefault(key, {})["enabled"] = key == enabled
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

    from xtuner_recipe import settings, xtuner_catalog

    parser = argparse.ArgumentParser(description="Write the patched xtuner config of a run.")
    parser.add_argument("--settings", required=True, help="settings/xtuner_config.json")
    parser.add_argument("--tokenized", required=True, help="the tokenized_data rule's folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--diff", required=True)
    parser.add_argument("--effective", required=True)
    parser.add_argument("--deepspeed-out")
    args = parser.parse_args(argv)
    plan = dataclasses.asdict(settings.read_stage(args.settings, "xtuner_config"))
    plan["samples"] = tokenized_data.read_summary(args.tokenized)["samples"]
    try:
        effective = write_patched_config(xtuner_catalog.check_base_config(plan["base_config"]),
                                         args.out, args.diff, args.effective, plan)
        log(f"{effective['max_iters'] or effective['max_epochs']} "
            f"{'iterations' if effective['max_iters'] else 'epochs'} over "
            f"{plan['samples']} training samples")
        if args.deepspeed_out:
            write_deepspeed_config(plan["deepspeed_source"], args.deepspeed_out, plan["device"],
                                   plan["train"]["precision"])
    except ConfigError as error:
        fail(error)


if __name__ == "__main__":
    main()
