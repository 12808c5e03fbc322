"""train.chunked_loss: the head and cross-entropy a chunk at a time, the stock loss's gradients."""

import types

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from xtuner_recipe import chunked_loss
from xtuner_recipe.chunked_loss import IGNORE_INDEX


def llama(lora=True, lora_targets=("q_proj", "v_proj")):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa",
                         use_cache=False)
    model = LlamaForCausalLM(config)
    if lora:
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                 target_modules=list(lora_targets)))
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.data.normal_(std=0.1)
    return model


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


@pytest.mark.parametrize("lora, targets", [
    (True, ("q_proj", "v_proj")), (True, ("q_proj", "lm_head")), (False, ())],
    ids=["lora-frozen-head", "lora-adapted-head", "full-trainable-head"])
def test_the_chunked_loss_has_the_stock_loss_and_gradients(small_chunks, lora, targets):
    """xtuner's LoRA adapts every Linear but one named lm_head: InternLM2's head (`output`) too."""
    model = llama(lora=lora, lora_targets=targets)
    stock_loss, stock_grads = loss_and_grads(model)
    for lm in chunked_loss.causal_lms(model):
        chunked_loss.chunk_loss_training(lm)
    loss, grads = loss_and_grads(model)
    assert loss == pytest.approx(stock_loss, rel=1e-6)
    assert grads.keys() == stock_grads.keys()
    assert (not lora or "lm_head" in targets) == any("lm_head" in name for name in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, stock_grads[name], rtol=1e-5, atol=1e-6, msg=name)


def test_compiled_chunks_give_the_same_loss(small_chunks, monkeypatch, tmp_path):
    from torch._dynamo.testing import CompileCounterWithBackend

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model = llama()
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
    model = llama()
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
    wrapped = torch.nn.Sequential(llama())  # as DeepSpeed or DDP hold the model
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
    assert [type(m).__name__ for m in chunked_loss.causal_lms(llama())] == ["LlamaForCausalLM"]
