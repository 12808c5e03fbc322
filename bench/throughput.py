"""Stock against tuned xtuner settings, for QLoRA and LoRA, then the tuned settings on 1, 2 and 4 GPUs.

Called by bench/throughput.sh on the GPU machine (after bench/gpu_setup.sh); the tuned settings are
the train values of the tuned recipes, recipes/internlm2-chat-1_8b/{qlora,lora}_tuned.yaml. Every
run trains the same packs of the tutorial's data (the recipe's own data, tokenised set and patched
config, made by `snakemake <run>/config/xtuner_config.py`), started directly with
`python -m xtuner_recipe.xtuner_entry train CFG --work-dir W --cfg-options ...`.

Figures per run, from mmengine's scalars.json (log_interval 1):
  tokens per iteration  the report's own token count (xtuner_recipe.report: iterations x
                        batch_size x max_length x world_size for packed data) / iterations
  s/iter                mean of `time` without the first WARMUP iterations and the last one
  tokens/s              tokens per iteration / s/iter
  s per optimizer step  s/iter x accumulative_counts
  peak GPU memory       max of mmengine's `memory` (torch.cuda.max_memory_allocated, MB, rank 0)
  1st iter s            the first iteration's `time` (with train.compile: the compiling)
  MFU                   4 * N * tokens/s / (GPUs * peak): LoRA and QLoRA freeze the base, so a token
                        costs a forward (2N) and a backward to the activations (2N), no weight
                        gradients; N counts the matrix-multiply parameters (every linear layer and
                        the output head, not the embedding lookup); attention scores, the adapters
                        and recomputation under activation checkpointing are not counted.
xtuner's EvaluateChatHook is bounded the same way in every run: evaluation_freq is past the last
iteration and max_new_tokens is 8 (its before_train pass is fixed at 50 tokens by xtuner); none of it
falls inside the timed iterations.
"""

import argparse
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import yaml

# Not resolve(): a copied tree whose files are links must still run its own Snakefile and package.
REPO = Path(os.path.abspath(__file__)).parents[1]
sys.path.insert(0, str(REPO))

# The report's own token counting (one function for both).
from xtuner_recipe.report import tokens_seen  # noqa: E402
from xtuner_recipe.train import read_scalars  # noqa: E402

TUNED_RECIPES = "internlm2-chat-1_8b"  # <method>_tuned.yaml: the tuned GPU recipes
WARMUP = 3                    # timed iterations dropped at the start (the last one is dropped too)
PACKS_PER_STEP = 16           # stock: batch 1 x accumulation 16
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}  # dense bf16 tensor-core peak, SXM parts
# Every run, stock and tuned alike: the chat hook bounded; mmengine's log smoothing off (its
# LogProcessor averages loss and time over the last 10 iterations by default, which at log_interval
# 1 would smear warm-up into the timed iterations and lag the loss of larger micro-batches).
COMMON_CFG = {"custom_hooks.1.max_new_tokens": 8, "log_processor.window_size": 1}


def log(msg):
    print(f"[throughput {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cfg_value(value):
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Variant:
    def __init__(self, name, method, recipe, cfg, gpus=1, launcher="none", lane=0, against=None):
        self.name, self.method, self.recipe, self.cfg = name, method, dict(recipe), dict(cfg)
        self.gpus, self.launcher, self.lane = gpus, launcher, lane
        self.against = against  # the run whose loss curve this one's is set against
        self.result = None

    @property
    def batch(self):
        return int(self.recipe.get("batch_size") or 1)

    @property
    def accumulation(self):
        return int(self.recipe.get("accumulative_counts") or 16)


def tuned_settings(method):
    """The train values of the tuned recipe recipes/internlm2-chat-1_8b/<method>_tuned.yaml."""
    recipe = yaml.safe_load((REPO / "recipes" / f"{TUNED_RECIPES}/{method}_tuned.yaml")
                            .read_text(encoding="utf-8"))
    return dict(recipe["train"]), {}


def build_variants(args):
    variants = []
    for method in args.methods:
        recipe, cfg = tuned_settings(method)
        variants.append(Variant(f"stock-{method}", method, {}, {}))
        variants.append(Variant(f"tuned-{method}", method, recipe, cfg, against=f"stock-{method}"))
    if args.extra:
        for spec in yaml.safe_load(Path(args.extra).read_text()):
            recipe, cfg = tuned_settings(spec["method"]) if spec.get("base") == "tuned" \
                else ({}, {})
            for key in spec.get("drop", []):
                recipe.pop(key, None)
                cfg.pop(key, None)
            recipe.update(spec.get("recipe") or {})
            cfg.update(spec.get("cfg") or {})
            variants.append(Variant(spec["name"], spec["method"], recipe, cfg,
                                    gpus=spec.get("gpus", 1),
                                    launcher=spec.get("launcher", "none"),
                                    lane=spec.get("lane", 0), against=spec.get("against")))
    if args.only:
        keep = set(args.only)
        variants = [v for v in variants if v.name in keep]
    for n in args.scaling:
        recipe, cfg = tuned_settings(args.scaling_method)
        variants.append(Variant(f"scale-{n}gpu", args.scaling_method, recipe, cfg, gpus=n,
                                launcher="pytorch", lane={1: 1, 2: 2}.get(n, 0)))
    return variants


class Bench:
    def __init__(self, args):
        self.args = args
        self.results = Path(args.results)
        self.out = Path(args.out)
        self.started = time.time()
        self.lock = threading.Lock()
        self.configs = {}
        self.meta = {}

    # ---- the recipe's patched config ------------------------------------------------------
    def config_for(self, variant, iters):
        recipe = {"device": self.args.device, "method": variant.method, "max_iters": iters,
                  "save_steps": iters, "log_interval": 1, "evaluation_freq": iters + 1,
                  "warmup_ratio": self.args.warmup_ratio}
        recipe.update(variant.recipe)
        if int(self.args.warmup_ratio * iters) < 2:
            raise SystemExit(f"{variant.name}: {iters} iterations give less than 2 warm-up "
                             "iterations, which the recipe drops (no warm-up, unlike the stock "
                             "schedule); raise --warmup-ratio or --packs")
        key = hashlib.sha1(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
        run = f"cfg-{variant.method}-{key}"
        run_dir = self.results / run / "build"  # the config rule's outputs (RunLayout.build_dir)
        configfile = self.results / "configfiles" / f"{run}.yaml"
        configfile.parent.mkdir(parents=True, exist_ok=True)
        configfile.write_text(yaml.safe_dump({
            "recipe": "internlm2-chat-1_8b/qlora", "run_name": run,
            "results_dir": str(self.results), "model": {"path": self.args.model},
            "train": recipe}, allow_unicode=True))
        return run_dir, configfile

    def make_configs(self, jobs):
        """One `snakemake <run>/config/xtuner_config.py` per distinct set of recipe keys, in parallel."""
        procs = {}
        for variant, iters in jobs:
            run_dir, configfile = self.config_for(variant, iters)
            variant.run_dir = run_dir
            if run_dir in procs or (run_dir / "config" / "effective.json").is_file():
                continue
            target = run_dir / "config" / "xtuner_config.py"
            cmd = [sys.executable, "-m", "snakemake", str(target), "--profile", "profiles/local",
                   "--nolock", "--configfile", str(configfile)]
            logf = open(self.results / "configfiles" / f"{run_dir.parent.name}.log", "w")
            procs[run_dir] = (subprocess.Popen(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT),
                              logf, cmd)
        for run_dir, (proc, logf, cmd) in procs.items():
            rc = proc.wait()
            logf.close()
            if rc != 0:
                tail = Path(logf.name).read_text()[-3000:]
                raise SystemExit(f"config generation failed ({shlex.join(cmd)}):\n{tail}")
        from xtuner_recipe import cpu_compat

        cpu_compat.apply_if_no_cuda()  # CPU test runs: xtuner imports torchvision
        from mmengine.config import Config

        for variant, _ in jobs:

            cfg = Config.fromfile(str(variant.run_dir / "config" / "xtuner_config.py"))
            hook = cfg.custom_hooks[1]["type"]
            assert "EvaluateChatHook" in getattr(hook, "__name__", str(hook)), hook

    # ---- one training run -----------------------------------------------------------------
    def command(self, variant, gpu_ids):
        cfg_path = variant.run_dir / "config" / "xtuner_config.py"
        work = self.results / "work" / variant.name
        if work.exists():
            subprocess.run(["rm", "-rf", str(work)], check=True)
        tool = ["-m", "xtuner_recipe.xtuner_entry", "train", str(cfg_path), "--work-dir", str(work),
                "--launcher", variant.launcher]
        ds = variant.run_dir / "config" / "deepspeed.json"
        if variant.recipe.get("deepspeed"):
            tool += ["--deepspeed", str(ds)]
        options = dict(COMMON_CFG)
        options.update(variant.cfg)
        tool += ["--cfg-options", *[f"{k}={cfg_value(v)}" for k, v in options.items()]]
        env = dict(os.environ)
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in gpu_ids)
        env.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
        if variant.launcher == "pytorch":
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={variant.gpus}",
                   f"--master_port={free_port()}", *tool]
        else:
            cmd = [sys.executable, *tool]
            if variant.recipe.get("deepspeed"):  # as xtuner_recipe.train does for one process
                env.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT=str(free_port()))
        if self.args.cores_per_gpu and shutil.which("taskset"):
            lo = gpu_ids[0] * self.args.cores_per_gpu
            hi = (gpu_ids[-1] + 1) * self.args.cores_per_gpu - 1
            if hi < (os.cpu_count() or 0):
                cmd = ["taskset", "-c", f"{lo}-{hi}", *cmd]
        return cmd, env, work

    def run(self, variant, gpu_ids, iters):
        remaining = self.args.deadline - (time.time() - self.started)
        if remaining < 60:
            log(f"{variant.name}: skipped, {remaining:.0f} s left before the deadline")
            variant.result = {"name": variant.name, "error": "skipped: deadline"}
            return
        cmd, env, work = self.command(variant, gpu_ids)
        logpath = self.results / "logs" / f"{variant.name}.log"
        logpath.parent.mkdir(parents=True, exist_ok=True)
        log(f"{variant.name}: GPUs {gpu_ids}, {iters} iterations: {shlex.join(cmd)}")
        t0 = time.time()
        with open(logpath, "w") as f:
            f.write(shlex.join(cmd) + "\n")
            f.flush()
            try:
                rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=f, stderr=subprocess.STDOUT,
                                    timeout=min(self.args.run_timeout, remaining)).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        wall = time.time() - t0
        variant.command = shlex.join(cmd)
        try:
            variant.result = self.summarise(variant, work, iters, wall, rc, logpath)
        except Exception as error:  # a broken run must not lose the others' figures
            variant.result = {"name": variant.name, "rc": rc, "wall_s": round(wall, 1),
                              "error": f"summary failed: {error!r}"}
        log(f"{variant.name}: rc={rc}, {wall:.0f} s, {json.dumps(self.short(variant.result))}")
        with self.lock:
            self.write()

    @staticmethod
    def short(result):
        keys = ("s_iter", "tokens_per_s", "peak_memory_mb", "mfu", "error")
        return {k: result.get(k) for k in keys if result.get(k) is not None}

    def summarise(self, variant, work, iters, wall, rc, logpath):
        result = {"name": variant.name, "method": variant.method, "gpus": variant.gpus,
                  "launcher": variant.launcher, "recipe": variant.recipe, "cfg_options": variant.cfg,
                  "rc": rc, "wall_s": round(wall, 1), "iterations_planned": iters}
        scalars = read_scalars(work) if work.exists() else []
        if rc != 0 or not scalars:
            text = logpath.read_text(errors="replace")
            oom = "OutOfMemoryError" in text or "CUDA out of memory" in text
            result["error"] = "CUDA out of memory" if oom else f"rc={rc}"
            result["log_tail"] = text[-2500:]
            if not scalars:
                return result
        effective = json.loads((variant.run_dir / "config" / "effective.json").read_text())
        iterations = max(s["step"] for s in scalars)
        final = {"iteration": iterations, "wall_time_s": round(wall, 1), "resumed_from": None,
                 "world_size": variant.gpus, "launcher": variant.launcher,
                 "deepspeed": bool(variant.recipe.get("deepspeed")), "peak_host_rss_mb": None}
        tokens = tokens_seen(final["iteration"], effective, final["world_size"])
        tokens_per_iter = tokens / iterations
        timed = [s for s in scalars if WARMUP < s["step"] < iterations] or scalars[1:] or scalars
        s_iter = sum(s["time"] for s in timed) / len(timed)
        data_time = sum(s.get("data_time", 0) for s in timed) / len(timed)
        accumulation = effective["accumulative_counts"]
        tokens_per_s = tokens_per_iter / s_iter
        peak = self.meta.get("peak_flops")
        result.update({
            "iterations": iterations, "timed_iterations": len(timed),
            "tokens_per_iter": tokens_per_iter, "tokens_seen": tokens,
            "batch_size": effective["batch_size"], "accumulative_counts": accumulation,
            "s_iter": round(s_iter, 4), "data_time": round(data_time, 4),
            "first_iter_s": round(scalars[0]["time"], 2),
            "s_per_optimizer_step": round(s_iter * accumulation, 3),
            "tokens_per_s": round(tokens_per_s),
            "peak_memory_mb": max((s["memory"] for s in scalars if "memory" in s), default=None),
            "mfu": round(4 * self.meta["n_matmul"] * tokens_per_s / (variant.gpus * peak), 4)
            if peak else None,
            "loss": [s["loss"] for s in scalars],
            "time": [s["time"] for s in scalars],
        })
        return result

    # ---- schedule -------------------------------------------------------------------------
    def iterations(self, variant):
        """As many iterations as --packs 2048-token packs take (a longer pack length counts as
        several)."""
        pack_tokens = int(variant.recipe.get("max_length") or 2048)
        return max(1, self.args.packs * 2048 // (variant.batch * pack_tokens))

    def go(self, variants):
        jobs = [(v, self.iterations(v)) for v in variants]
        log(f"making {len({json.dumps([v.method, v.recipe, i]) for v, i in jobs})} patched configs")
        self.make_configs(jobs)
        log(f"configs ready after {time.time() - self.started:.0f} s")
        ngpu = self.meta["gpu_count"]
        for v in variants:
            if v.gpus > ngpu:
                v.result = {"name": v.name, "error": f"needs {v.gpus} GPUs, {ngpu} visible"}
        runnable = [v for v in variants if v.gpus <= ngpu]
        if self.args.parallel and ngpu >= 4:
            # Three lanes side by side, each pinned to its GPUs and their share of the cores:
            # GPU 0 the stock and tuned runs in sequence (the comparison: one GPU, one run);
            # GPU 1 the 1-GPU scaling run, then extras marked lane 1; GPUs 2-3 the 2-GPU scaling
            # run, then extras marked lane 2 (on GPU 2); then the 4-GPU runs alone.
            lanes = {0: [], 1: [], 2: []}
            later = []
            for v in runnable:
                if v.gpus > 2:
                    later.append(v)
                else:
                    lanes[v.lane if v.lane in lanes else 0].append(v)
            for n in (1, 2):  # the scaling runs first in their lanes
                lanes[n].sort(key=lambda v: not v.name.startswith("scale-"))
            later.sort(key=lambda v: not v.name.startswith("scale-"))
            gpus = {0: [0], 1: [1], 2: [2, 3]}
            threads = [threading.Thread(target=self.lane, args=(vs, gpus[k]))
                       for k, vs in lanes.items() if vs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.lane(later, None)
        else:
            single = [v for v in runnable if v.gpus == 1 and v.launcher == "none"]
            multi = sorted((v for v in runnable if v not in single),
                           key=lambda v: (not v.name.startswith("scale-"), v.gpus))
            self.lane(single + multi, None)
        self.write()

    def lane(self, variants, ids):
        for v in variants:
            self.run(v, (ids or list(range(v.gpus)))[:v.gpus], self.iterations(v))

    # ---- output -----------------------------------------------------------------------------
    def write(self):
        variants = self.variants
        (self.out / "runs.json").write_text(json.dumps(
            {"meta": self.meta, "runs": [v.result for v in variants if v.result]}, indent=1) + "\n")
        (self.out / "throughput.md").write_text(markdown(self.meta, variants) + "\n")
        with tarfile.open(self.out / "logs.tar.gz", "w:gz") as tar:
            for d in ("logs", "configfiles"):
                if (self.results / d).exists():
                    tar.add(self.results / d, arcname=d)


def fmt(value, spec=",.0f"):
    return "" if value is None else format(value, spec)


def markdown(meta, variants):
    lines = [f"GPU: {meta.get('gpu')} x{meta.get('gpu_count')}, driver {meta.get('driver')}; "
             f"{meta.get('versions')}; {meta.get('date')}",
             f"N (matmul parameters) = {meta.get('n_matmul', 0) / 1e9:.3f} B; "
             f"peak {fmt(meta.get('peak_flops'), '.3g')} FLOP/s per GPU; "
             f"{meta.get('packs')} packs of 2048 tokens per single-GPU run", "",
             "| run | method | GPUs | batch x accum | iters (timed) | s/iter | s/opt step | tokens/s "
             "| peak MB/GPU | MFU | data_time s | 1st iter s | wall s | note |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    base = {}
    for v in variants:
        r = v.result
        if not r:
            continue
        if r.get("s_iter") is None:
            lines.append(f"| {v.name} | {v.method} | {v.gpus} | {v.batch} x {v.accumulation} | "
                         f"| | | | | | | | {r.get('wall_s', '')} | {r.get('error')} |")
            continue
        note = r.get("error") or ""
        if v.name == f"stock-{v.method}":
            base[v.method] = r["tokens_per_s"]
        elif v.method in base and v.gpus == 1:
            note = f"{r['tokens_per_s'] / base[v.method]:.2f}x stock " + note
        lines.append(
            f"| {v.name} | {v.method} | {v.gpus} | {r['batch_size']} x {r['accumulative_counts']} | "
            f"{r['iterations']} ({r['timed_iterations']}) | {r['s_iter']:.3f} | "
            f"{r['s_per_optimizer_step']:.2f} | {fmt(r['tokens_per_s'])} | "
            f"{fmt(r['peak_memory_mb'])} | {fmt(r['mfu'], '.1%')} | {r['data_time']:.3f} | "
            f"{r['first_iter_s']:.1f} | {r['wall_s']:.0f} | {note} |")
    scale = {v.gpus: v.result for v in variants if v.name.startswith("scale-") and v.result
             and v.result.get("tokens_per_s")}
    if 1 in scale:
        lines += ["", "| GPUs | tokens/s | efficiency vs 1 GPU |", "|---|---|---|"]
        for n in sorted(scale):
            eff = scale[n]["tokens_per_s"] / (n * scale[1]["tokens_per_s"])
            lines.append(f"| {n} | {fmt(scale[n]['tokens_per_s'])} | {eff:.3f} |")
    done = {v.name: v.result for v in variants if v.result and v.result.get("loss")}
    for v in variants:
        if v.name in done and v.against in done:
            lines += ["", loss_table(v.against, done[v.against], v.name, done[v.name])]
    return "\n".join(lines)


def per_step(result):
    """Mean training loss per optimizer step, from per-iteration losses."""
    per_iter = result["accumulative_counts"]
    losses = result["loss"]
    return [sum(losses[i:i + per_iter]) / per_iter
            for i in range(0, len(losses) - per_iter + 1, per_iter)], per_iter


def loss_table(a_name, a, b_name, b):
    import statistics

    a_steps, a_n = per_step(a)
    b_steps, _ = per_step(b)
    # Before the first update both runs see the same packs with the same weights: the losses of
    # the same group of packs then differ by precision alone.
    g = max(a["batch_size"], b["batch_size"])

    def group(r, j):
        k = g // r["batch_size"]
        return sum(r["loss"][j * k:(j + 1) * k]) / k

    if a["recipe"].get("max_length") == b["recipe"].get("max_length"):
        pre = [(group(a, j), group(b, j)) for j in range(PACKS_PER_STEP // g)]
        pre_rel = max(abs(x - y) / abs(x) for x, y in pre)
        packs = (f"16 packs, the same packs in the same order); before the first update the "
                 f"largest relative difference of the losses of the same {g}-pack groups is "
                 f"{pre_rel:.2e}.")
    else:
        packs = "the same tokens per step, packed to other lengths)."
    lines = [f"Loss, {a_name} (a) against {b_name} (b): mean per optimizer step ({packs}", "",
             "| optimizer step | a | b | b - a | relative | s.e. of a's step mean over its packs |",
             "|---|---|---|---|---|---|"]
    for k, (x, y) in enumerate(zip(a_steps, b_steps)):
        packs = a["loss"][k * a_n:(k + 1) * a_n]
        se = statistics.stdev(packs) / len(packs) ** 0.5 if len(packs) > 1 else float("nan")
        lines.append(f"| {k + 1} | {x:.4f} | {y:.4f} | {y - x:+.4f} | {(y - x) / x:+.2%} | "
                     f"{se:.4f} |")
    return "\n".join(lines)


def from_runs(args):
    """The tables of a runs.json written by an earlier run, from its raw results."""
    data = json.loads(Path(args.from_runs).read_text())
    against = {v.name: v.against for v in build_variants(args)}
    variants = []
    for r in data["runs"]:
        v = Variant(r["name"], r["method"], r["recipe"], r["cfg_options"], gpus=r["gpus"],
                    launcher=r["launcher"], against=against.get(r["name"]))
        v.result = r
        variants.append(v)
    return markdown(data["meta"], variants)


def gpu_meta(args):
    meta = {"date": time.strftime("%Y-%m-%d"), "packs": args.packs}
    try:
        rows = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                               "--format=csv,noheader"], capture_output=True, text=True,
                              check=True).stdout.strip().splitlines()
        name, driver, mem = [x.strip() for x in rows[0].split(",")]
        meta.update(gpu=name, driver=driver, gpu_memory=mem, gpu_count=len(rows))
    except (OSError, subprocess.CalledProcessError):
        meta.update(gpu="cpu", driver=None, gpu_count=1)
    meta["peak_flops"] = next((v for k, v in PEAK_BF16.items() if k in meta["gpu"]), None)
    versions = {}
    for mod in ("torch", "xtuner", "transformers", "peft", "mmengine", "bitsandbytes", "deepspeed"):
        try:
            out = subprocess.run([sys.executable, "-c", f"import {mod}; print({mod}.__version__)"],
                                 capture_output=True, text=True, timeout=120).stdout.strip()
            versions[mod] = out.splitlines()[-1] if out else "?"
        except subprocess.TimeoutExpired:
            versions[mod] = "?"
    meta["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    shape = json.loads((Path(args.model) / "config.json").read_text())
    h, inter, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    kv = shape["num_key_value_heads"] * h // shape["num_attention_heads"]
    meta["n_matmul"] = layers * (h * (h + 2 * kv) + h * h + 3 * h * inter) + shape["vocab_size"] * h
    return meta


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model")
    p.add_argument("--results", help="scratch folder for configs, work dirs, logs")
    p.add_argument("--out")
    p.add_argument("--from-runs", metavar="RUNS_JSON",
                   help="only print the tables of an earlier run's runs.json (with the --extra it "
                        "ran with, for the loss comparisons)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--packs", type=int, default=128, help="2048-token packs per single-GPU run")
    p.add_argument("--warmup-ratio", type=float, default=0.125,
                   help="the recipe writes max(1, int(ratio x iters)) warm-up iterations, and mmengine's "
                        "LinearLR with 1 iteration never leaves lr x 1e-5: keep >= 2 for every run")
    p.add_argument("--methods", nargs="*", default=["qlora", "lora"])
    p.add_argument("--scaling", nargs="*", type=int, default=[1, 2, 4])
    p.add_argument("--scaling-method", default="qlora")
    p.add_argument("--extra",
                   help="YAML list of extra variants (name, method, base, drop, recipe, cfg, against)")
    p.add_argument("--only", nargs="*", help="keep only these single-GPU variants")
    p.add_argument("--parallel", action="store_true",
                   help="with 4+ GPUs: scaling runs on 1 and 2 GPUs beside the single-GPU runs")
    p.add_argument("--cores-per-gpu", type=int, default=0, help="taskset each run to its share")
    p.add_argument("--deadline", type=float, default=540, help="seconds for the whole bench")
    p.add_argument("--run-timeout", type=float, default=300)
    args = p.parse_args(argv)
    if args.from_runs:
        print(from_runs(args))
        return
    if not (args.model and args.results and args.out):
        p.error("--model, --results and --out are required to run the bench")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.results).mkdir(parents=True, exist_ok=True)
    bench = Bench(args)
    bench.meta = gpu_meta(args)
    log(f"meta: {json.dumps(bench.meta)}")
    bench.variants = build_variants(args)
    bench.go(bench.variants)
    print(markdown(bench.meta, bench.variants))


if __name__ == "__main__":
    main()
