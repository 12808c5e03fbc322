"""Packed attention against document-masked (varlen) attention, one layer of the 1.8B shape.

The recipe packs the tutorial's short records into 2048-token samples and attends causally across
the whole pack, so a record sees the records packed before it. torch's varlen_attn (flash
attention over cumulative sequence lengths) attends within each record only. This measures, on
the GPU, the forward + backward time of one InternLM2-1.8B attention call (16 query heads, 8 KV
heads, head size 128) for a micro-batch of 4 packs three ways, and checks that varlen gives what
per-record SDPA gives:

  packed   SDPA, causal over each 2048-token pack (what the tuned recipes run)
  varlen   torch.nn.attention.varlen.varlen_attn, causal within each record
  masked   SDPA with a block-diagonal causal mask (document masking without varlen)

Record lengths: the tutorial's data as the recipe packs it, 9,302 records in 128 packs (mean 28.2
tokens), drawn uniformly from 16-40 tokens; `--lengths FILE` takes real ones (one per line).

  python bench/attention_varlen.py [--out DIR]    # writes attention-varlen.json
"""

import argparse
import inspect
import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F

HEADS, KV_HEADS, HEAD_DIM, LAYERS = 16, 8, 128, 24
PACK, PACKS = 2048, 4


def record_lengths(path, seed=0):
    """Records packed pack by pack; a pack ends with the cut-off head of the next record, as
    xtuner's packer cuts its token stream (cumulative lengths restart in every pack)."""
    if path:
        pool = iter(int(x) for x in Path(path).read_text().split())
    else:
        rng = random.Random(seed)
        pool = iter(lambda: rng.randint(16, 40), None)
    lengths = []
    for _ in range(PACKS):
        used = 0
        while used < PACK:
            n = min(next(pool), PACK - used)
            lengths.append(n)
            used += n
    return lengths


def timed(fn, repeat=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat * 1e3


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths")
    p.add_argument("--out", default=".")
    args = p.parse_args()
    from torch.nn.attention import varlen

    dev, dtype = "cuda", torch.bfloat16
    total = PACK * PACKS
    lengths = record_lengths(args.lengths)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=dev)
    torch.manual_seed(0)
    q = torch.randn(total, HEADS, HEAD_DIM, device=dev, dtype=dtype, requires_grad=True)
    k = torch.randn(total, KV_HEADS, HEAD_DIM, device=dev, dtype=dtype, requires_grad=True)
    v = torch.randn(total, KV_HEADS, HEAD_DIM, device=dev, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(total, HEADS, HEAD_DIM, device=dev, dtype=dtype)

    params = inspect.signature(varlen.varlen_attn).parameters
    causal = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    gqa = {"enable_gqa": True} if "enable_gqa" in params else None

    def expand(t):  # the KV heads repeated per query head, as xtuner does before attention
        return t.repeat_interleave(HEADS // KV_HEADS, dim=1)

    def run_varlen():
        kk, vv = (k, v) if gqa else (expand(k), expand(v))
        return varlen.varlen_attn(q, kk, vv, cu, cu, max(lengths), max(lengths),
                                  **causal, **(gqa or {}))

    def bhsd(t, n):  # (total, h, d) -> (packs, h, 2048, d)
        return t.view(PACKS, PACK, n, HEAD_DIM).transpose(1, 2)

    def run_packed():
        out = F.scaled_dot_product_attention(bhsd(q, HEADS), bhsd(expand(k), HEADS),
                                             bhsd(expand(v), HEADS), is_causal=True)
        return out.transpose(1, 2).reshape(total, HEADS, HEAD_DIM)

    doc = torch.repeat_interleave(torch.arange(len(lengths), device=dev),
                                  torch.tensor(lengths, device=dev)).view(PACKS, PACK)
    pos = torch.arange(PACK, device=dev)
    mask = (doc[:, :, None] == doc[:, None, :]) & (pos[:, None] >= pos[None, :])
    mask = mask[:, None]

    def run_masked():
        out = F.scaled_dot_product_attention(bhsd(q, HEADS), bhsd(expand(k), HEADS),
                                             bhsd(expand(v), HEADS), attn_mask=mask)
        return out.transpose(1, 2).reshape(total, HEADS, HEAD_DIM)

    def fwd_bwd(fn):
        def step():
            q.grad = k.grad = v.grad = None
            fn().backward(grad_out)
        return step

    # per-record SDPA in float32 as the reference for both document-masked kernels
    ref = torch.cat([F.scaled_dot_product_attention(
        q[a:b].float().transpose(0, 1), expand(k[a:b]).float().transpose(0, 1),
        expand(v[a:b]).float().transpose(0, 1), is_causal=True).transpose(0, 1)
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist())])
    with torch.no_grad():
        error = {name: (fn().float() - ref).abs().max().item()
                 for name, fn in (("varlen", run_varlen), ("masked", run_masked),
                                  ("packed", run_packed))}
    ms = {name: timed(fwd_bwd(fn)) for name, fn in (("packed", run_packed),
                                                     ("varlen", run_varlen),
                                                     ("masked", run_masked))}
    result = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "records": len(lengths), "mean_record_tokens": total / len(lengths),
        "tokens": total, "varlen_kwargs": sorted({**causal, **(gqa or {})}),
        "ms_per_layer_fwd_bwd": ms, "ms_per_step_24_layers": {n: t * LAYERS for n, t in ms.items()},
        "max_abs_error_vs_per_record_fp32": error,
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "attention-varlen.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
