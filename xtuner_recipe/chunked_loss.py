"""train.chunked_loss: the output head and cross-entropy a chunk of tokens at a time.

The stock loss makes float32 logits for every token of the micro-batch (InternLM2's 92,544-token
vocabulary: 0.76 GB per 2,048-token pack, then as much again for their gradient) and walks them
with several memory-bound kernels (bench/results/throughput-h100.md: head and loss are 12 % of a
tuned step). Here each chunk's logits live only while its loss and their gradients (to the hidden
states and to the head's adapter) are computed, all in the forward pass; the backward pass only
scales the saved gradients. The matmuls are the stock loss's, so nothing is computed twice.
Compiled, 4 packs take 12.6 ms and 1.8 GB instead of 26.2 ms and 8.6 GB on an H100
(bench/results/head-loss-varlen-h100.md).

The patched xtuner config adds the hook below to `custom_hooks` (xtuner_recipe.xtuner_config).
Generation (no labels, or gradients off) keeps the model's own forward.
"""

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

# Tokens per chunk: its float32 logits are 0.76 GB with InternLM2's vocabulary, one pack's worth.
CHUNK_TOKENS = 2048
IGNORE_INDEX = -100


def loss_and_logit_grad(logits, labels):
    """Summed float32 cross-entropy of a chunk's logits, and its gradient with respect to them
    (softmax - one_hot(label)) in the logits' dtype. Rows labelled IGNORE_INDEX count for nothing.
    What torch.compile fuses into a pass or two over the logits."""
    logits32 = logits.float()
    valid = labels != IGNORE_INDEX
    targets = labels.clamp(min=0).unsqueeze(1)
    log_norm = torch.logsumexp(logits32, dim=-1, keepdim=True)
    loss = ((log_norm - logits32.gather(1, targets)).squeeze(1) * valid).sum()
    grad = torch.exp(logits32 - log_norm)
    grad.scatter_add_(1, targets, torch.full_like(targets, -1, dtype=grad.dtype))
    return loss, (grad * valid.unsqueeze(1)).to(logits.dtype)


class ChunkedCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `head(hidden)` against `labels` (shifted already) over the labels
    that are not IGNORE_INDEX: the stock float32 loss's value and gradients. `head` is any module
    (a LoRA-adapted Linear as xtuner trains InternLM2's); `params` are its trainable parameters,
    passed in so that their gradients reach them (and DeepSpeed's hooks) in the backward pass."""

    @staticmethod
    def forward(ctx, hidden, labels, head, chunk_loss, *params):
        count = (labels != IGNORE_INDEX).sum().clamp(min=1)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.empty_like(hidden)
        grad_params = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        for start in range(0, hidden.shape[0], CHUNK_TOKENS):
            rows = slice(start, start + CHUNK_TOKENS)
            with torch.enable_grad():
                chunk = hidden[rows].detach().requires_grad_()
                logits = head(chunk)
            part, grad_logits = chunk_loss(logits.detach(), labels[rows])
            grads = torch.autograd.grad(logits, [chunk, *params], grad_logits)
            loss += part
            grad_hidden[rows] = grads[0]
            for total, grad in zip(grad_params, grads[1:]):
                total += grad
        ctx.save_for_backward(grad_hidden / count,
                              *((g / count).to(p.dtype) for g, p in zip(grad_params, params)))
        return loss / count

    @staticmethod
    def backward(ctx, grad_loss):
        grads = [g * grad_loss.to(g.dtype) for g in ctx.saved_tensors]
        return grads[0], None, None, None, *grads[1:]


def causal_lms(model):
    """The innermost *ForCausalLM modules inside `model` (whatever wraps them: DeepSpeed, DDP,
    xtuner's SupervisedFinetune, peft's PeftModelForCausalLM)."""
    def is_lm(m):
        return type(m).__name__.endswith("ForCausalLM")
    found = [m for m in model.modules()
             if is_lm(m) and not any(is_lm(inner) for inner in list(m.modules())[1:])]
    if not found:
        raise RuntimeError(f"train.chunked_loss: no causal language model (a module class named "
                           f"*ForCausalLM) in {type(model).__name__}; set train.chunked_loss: "
                           f"false for this model")
    return found


def chunk_loss_training(lm, chunk_loss=loss_and_logit_grad):
    """Route `lm`'s calls that have labels and gradients on through the chunked loss."""
    eager = lm.forward
    head, decoder = lm.get_output_embeddings(), lm.get_decoder()

    def forward(*args, labels=None, **kwargs):
        if labels is None or not torch.is_grad_enabled():
            return eager(*args, labels=labels, **kwargs)
        from transformers.modeling_outputs import CausalLMOutputWithPast

        kwargs["return_dict"] = True
        hidden = decoder(*args, **kwargs).last_hidden_state
        hidden = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        shifted = labels[:, 1:].reshape(-1).to(hidden.device)
        params = [p for p in head.parameters() if p.requires_grad]
        loss = ChunkedCrossEntropy.apply(hidden, shifted, head, chunk_loss, *params)
        return CausalLMOutputWithPast(loss=loss)

    lm.forward = forward


@HOOKS.register_module()
class ChunkedLoss(Hook):
    """Swaps the loss in before the first training iteration; with `compile`, each chunk's
    loss and logit gradient are fused by torch.compile (the chunks share one graph, a shorter
    last one a second)."""

    def __init__(self, compile=False):
        self.compile = compile

    def before_train(self, runner):
        chunk_loss = torch.compile(loss_and_logit_grad) if self.compile else loss_and_logit_grad
        lms = causal_lms(runner.model)
        for lm in lms:
            chunk_loss_training(lm, chunk_loss)
        runner.logger.info(f"train.chunked_loss: {type(lms[0]).__name__} computes its loss "
                           f"{CHUNK_TOKENS} tokens at a time"
                           + (" (compiled)" if self.compile else ""))
