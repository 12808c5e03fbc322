"""Where a training step's time goes: torch.profiler over a few steps of a patched xtuner config.

    python bench/profile_step.py CFG --batch 4 [--bf16-weights] [--dtype bfloat16]
        [--cfg-options k=v ...] [--out prof.json]

Builds the model exactly as `xtuner train` does (the config's `model`, through xtuner's BUILDER, with
the same --cfg-options), then times forward + backward + AdamW on random 2048-token packs (the
content of a pack does not change its cost). --bf16-weights casts the whole model to bf16 the way
DeepSpeed's bf16 mode does (then no autocast); otherwise the step runs under autocast(--dtype), as
mmengine's AmpOptimWrapper does. Prints the step time, the GPU's busy share, kernel time by kind,
the time of the output head and cross-entropy (every op with a vocabulary-sized operand), and the
top kernels.
"""

import argparse
import json
import re
import time
from collections import defaultdict

import torch

KINDS = [
    ("nccl", r"nccl"),
    ("optimizer", r"adam|multi_tensor"),
    ("attention", r"flash|fmha|attention|sdpa|efficient"),
    ("nf4 dequantize", r"dequant|kDequantize"),
    ("softmax / cross-entropy", r"softmax|nll|cross_entropy"),
    ("matmul", r"gemm|cutlass|xmma|nvjet|cublas|matmul|wgmma"),
    ("copy / cast", r"copy|cast|convert|to_copy"),
    ("other elementwise / reduce", r"."),
]


def kind_of(name):
    for kind, pattern in KINDS:
        if re.search(pattern, name, re.IGNORECASE):
            return kind
    return "other"


def main(argv=None):
    from mmengine.config import Config, DictAction

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--dtype", default="float16", choices=["float16", "bfloat16"])
    p.add_argument("--bf16-weights", action="store_true")
    p.add_argument("--fused", action="store_true")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--timed", type=int, default=8)
    p.add_argument("--cfg-options", nargs="+", action=DictAction, default={})
    p.add_argument("--out")
    args = p.parse_args(argv)

    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    from xtuner.registry import BUILDER

    torch.manual_seed(0)
    model = BUILDER.build(cfg.model).cuda()
    if args.bf16_weights:
        model = model.bfloat16()
    model.train()
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5, fused=args.fused or None)
    vocab = model.llm.config.vocab_size
    gen = torch.Generator(device="cuda").manual_seed(0)

    def batch():
        ids = torch.randint(0, vocab, (args.batch, args.length), device="cuda", generator=gen)
        return {"input_ids": ids, "labels": ids.clone(),
                "attention_mask": torch.ones_like(ids, dtype=torch.bool),
                "position_ids": torch.arange(args.length, device="cuda").repeat(args.batch, 1)}

    autocast = torch.autocast("cuda", dtype=getattr(torch, args.dtype),
                              enabled=not args.bf16_weights)
    data = [batch() for _ in range(4)]

    def step(i):
        with autocast:
            loss = model(data[i % len(data)], mode="loss")["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for i in range(args.warmup):
        step(i)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(args.timed):
        loss = step(i)
    loss.item()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / args.timed

    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                 record_shapes=True) as prof:
        t1 = time.perf_counter()
        for i in range(args.steps):
            step(i)
        torch.cuda.synchronize()
        prof_wall = time.perf_counter() - t1

    by_kind, by_kernel = defaultdict(float), defaultdict(float)
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            us = e.time_range.elapsed_us()
            by_kind[kind_of(e.name)] += us
            by_kernel[e.name[:90]] += us
    gpu_us = sum(by_kind.values()) / args.steps
    # The output head and the loss: every op with an operand whose last dimension is the vocabulary.
    head_us = 0.0
    for avg in prof.key_averages(group_by_input_shape=True):
        shapes = avg.input_shapes or []
        if any(isinstance(s, list) and vocab in s for s in shapes):
            head_us += getattr(avg, "self_device_time_total", 0)
    head_us /= args.steps
    tokens = args.batch * args.length
    result = {
        "config": args.config, "batch": args.batch, "bf16_weights": args.bf16_weights,
        "cfg_options": dict(args.cfg_options),
        "step_s": round(step_s, 4), "tokens_per_s": round(tokens / step_s),
        "peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20),
        # kernel time per step over the unprofiled step time: the rest is the GPU waiting for the CPU
        "gpu_busy_share": round(gpu_us / 1e6 / step_s, 3),
        "profiled_step_s": round(prof_wall / args.steps, 4),
        "kernel_ms_per_step": {k: round(v / args.steps / 1e3, 2)
                               for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "output_head_and_loss_ms_per_step": round(head_us / 1e3, 2),
        "top_kernels_ms_per_step": {k: round(v / args.steps / 1e3, 2) for k, v in
                                    sorted(by_kernel.items(), key=lambda kv: -kv[1])[:15]},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
