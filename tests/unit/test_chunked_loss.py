"""train.chunked_loss: the head and cross-entropy a chunk at a time, the stock loss's gradients."""

import types

import pytest
import torch
from harness.small_models import small_llama

from xtuner_recipe import chunked_loss
from xtuner_recipe.chunked_loss import IGNORE_INDEX


def batch():
    """Two packs of 24 tokens; the prompts' labels are IGNORE_INDEX, as xtuner's data has them."""
    tokens = torch.randint(0, 256, (2, 24), generator=torch.Generator().manual_seed(1))
    labels = tokens.clone()
    labels[0, :5] = IGNORE_INDEX
    labels[1, 10:14] = IGNORE_INDEX
    return tokens, labels


def loss_and_grads(model):
    tokens, labels = batch()
    model.zero_grad()
    loss = model(input_ids=tokens, labels=labels).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def small_chunks(monkeypatch):
    """46 shifted tokens in chunks of 8: five full chunks and a ragged last one."""
    monkeypatch.setattr(chunked_loss, "CHUNK_TOKENS", 8)


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), ("q_proj", "lm_head"), ()],
                         ids=["lora-frozen-head", "lora-adapted-head", "full-trainable-head"])
def test_the_chunked_loss_has_the_stock_loss_and_gradients(small_chunks, targets):
    """xtuner's LoRA adapts every Linear but one named lm_head: InternLM2's head (`output`) too."""
    model = small_llama(lora_targets=targets)
    stock_loss, stock_grads = loss_and_grads(model)
    for lm in chunked_loss.causal_lms(model):
        chunked_loss.chunk_loss_training(lm)
    loss, grads = loss_and_grads(model)
    assert loss == pytest.approx(stock_loss, rel=1e-6)
    assert grads.keys() == stock_grads.keys()
    # the head's gradients are checked wherever it trains: fully, or through its adapter
    assert (not targets or "lm_head" in targets) == any("lm_head" in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_compiled_chunks_give_the_same_loss(small_chunks, inductor_cache):
    from torch._dynamo.testing import CompileCounterWithBackend

    model = small_llama()
    stock_loss, stock_grads = loss_and_grads(model)
    counter = CompileCounterWithBackend("aot_eager")
    for lm in chunked_loss.causal_lms(model):
        chunked_loss.chunk_loss_training(
            lm, torch.compile(chunked_loss.loss_and_logit_grad, backend=counter))
    loss, grads = loss_and_grads(model)
    assert loss == pytest.approx(stock_loss, rel=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=1e-5, atol=1e-6, msg=name)
    # the full chunks share one graph, the ragged last one has its own
    assert counter.frame_count == 2


def test_generation_keeps_the_models_own_forward(small_chunks):
    model = small_llama()
    tokens, labels = batch()
    with torch.no_grad():
        stock_logits = model(input_ids=tokens).logits
    for lm in chunked_loss.causal_lms(model):
        chunked_loss.chunk_loss_training(lm)
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=tokens).logits, stock_logits)
        # labels without gradients (an evaluation pass): the model's own loss, with its logits
        assert model(input_ids=tokens, labels=labels).logits is not None
    assert model(input_ids=tokens, labels=labels).logits is None


def test_the_hook_finds_the_model_through_the_wrappers():
    wrapped = torch.nn.Sequential(small_llama())  # as DeepSpeed or DDP hold the model
    logged = []
    runner = types.SimpleNamespace(model=wrapped, logger=types.SimpleNamespace(info=logged.append))
    chunked_loss.ChunkedLoss().before_train(runner)
    assert logged == [f"train.chunked_loss: LlamaForCausalLM computes its loss "
                      f"{chunked_loss.CHUNK_TOKENS} tokens at a time"]
    tokens, labels = batch()
    assert wrapped[0](input_ids=tokens, labels=labels).logits is None


def test_a_model_it_cannot_chunk_is_named():
    with pytest.raises(RuntimeError, match=r"no causal language model .* in Linear; set "
                                           r"train.chunked_loss: false"):
        chunked_loss.causal_lms(torch.nn.Linear(2, 2))


def test_only_the_innermost_language_model_is_patched():
    """peft's PeftModelForCausalLM wraps the model's own *ForCausalLM: the loss belongs to the
    inner one."""
    lms = chunked_loss.causal_lms(small_llama())
    assert [type(m).__name__ for m in lms] == ["LlamaForCausalLM"]
