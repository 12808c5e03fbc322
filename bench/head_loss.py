"""The output head and loss of a tuned micro-batch: the stock float32 cross-entropy against
train.chunked_loss (xtuner_recipe/chunked_loss.py), eager and compiled, on the GPU.

One InternLM2-1.8B micro-batch as the tuned QLoRA recipe trains it: 4 packs of 2048 tokens, hidden
2048, a frozen bf16 head of the 92,544-token vocabulary, labels with xtuner's ignored prompt
tokens (a quarter here); the head is frozen (the LoRA adapter xtuner puts on it is not
modelled). Each way runs forward + backward to the hidden states; the time is the
mean of 20 after 3 warm-ups, the memory what the step allocates above its inputs.

  python bench/head_loss.py [--out DIR]    # writes head-loss.json
"""

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from xtuner_recipe import chunked_loss

PACKS, PACK, HIDDEN, VOCAB = 4, 2048, 2048, 92544


def stock(hidden, weight, labels):
    """What InternLM2's forward does: float32 logits of every token, shifted, mean cross-entropy."""
    logits = (hidden @ weight.t()).float()
    return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1),
                           ignore_index=chunked_loss.IGNORE_INDEX)


def chunked(chunk_fn):
    def loss(hidden, weight, labels):
        head = torch.nn.Linear(HIDDEN, VOCAB, bias=False, device=weight.device, dtype=weight.dtype)
        head.weight = torch.nn.Parameter(weight, requires_grad=False)
        flat = hidden[:, :-1].reshape(-1, HIDDEN)
        return chunked_loss.ChunkedCrossEntropy.apply(flat, labels[:, 1:].reshape(-1), head,
                                                      chunk_fn)
    return loss


def measure(fn, hidden, weight, labels, repeat=20):
    def step():
        hidden.grad = None
        fn(hidden, weight, labels).backward()
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    start = time.perf_counter()
    for _ in range(repeat):
        step()
    torch.cuda.synchronize()
    ms = (time.perf_counter() - start) / repeat * 1e3
    peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    loss = fn(hidden, weight, labels)
    hidden.grad = None
    loss.backward()
    return {"ms": ms, "peak_mb_above_inputs": peak_mb, "loss": loss.item(),
            "grad": hidden.grad.float().clone()}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=".")
    args = p.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    hidden = (torch.randn(PACKS, PACK, HIDDEN, device=dev) * 2).bfloat16().requires_grad_()
    weight = (torch.randn(VOCAB, HIDDEN, device=dev) * 0.02).bfloat16()
    labels = torch.randint(0, VOCAB, (PACKS, PACK), device=dev)
    labels[torch.rand(PACKS, PACK, device=dev) < 0.25] = chunked_loss.IGNORE_INDEX
    ways = {"stock": stock, "chunked": chunked(chunked_loss.loss_and_logit_grad),
            "chunked-compiled": chunked(torch.compile(chunked_loss.loss_and_logit_grad))}
    runs = {name: measure(fn, hidden, weight, labels) for name, fn in ways.items()}
    ref = runs["stock"]
    result = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
              "tokens": PACKS * PACK, "chunk_tokens": chunked_loss.CHUNK_TOKENS, "ways": {}}
    for name, run in runs.items():
        result["ways"][name] = {
            "ms_fwd_bwd": run["ms"], "peak_mb_above_inputs": run["peak_mb_above_inputs"],
            "loss": run["loss"], "loss_rel_diff_vs_stock": abs(run["loss"] / ref["loss"] - 1),
            "grad_max_abs_diff_vs_stock": (run["grad"] - ref["grad"]).abs().max().item(),
            "grad_max_abs_stock": ref["grad"].abs().max().item()}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "head-loss.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
