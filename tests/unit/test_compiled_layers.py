"""train.compile: decoder layers through torch.compile for the training steps only."""

import inspect
import types

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from xtuner_recipe import compiled_layers


def lora_llama(layers=4):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         attn_implementation="sdpa", use_cache=False)  # as xtuner trains
    model = get_peft_model(LlamaForCausalLM(config), LoraConfig(
        r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj", "down_proj"]))
    # LoRA's B starts at zero: give the adapters weights, so that they change the loss
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(std=0.1)
    return model


def loss_and_grads(model, tokens):
    model.zero_grad()
    loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.fixture
def inductor_cache(monkeypatch, tmp_path):
    """Importing inductor sets TORCHINDUCTOR_CACHE_DIR in this process when it is unset: keep this
    test's caches in its tmp folder, and the variable unset for the rest of the session."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


def test_compiled_layers_train_as_the_eager_ones_with_one_shared_graph(inductor_cache):
    from torch._dynamo.testing import CompileCounterWithBackend

    model = lora_llama()
    tokens = torch.randint(0, 256, (2, 24))
    eager_loss, eager_grads = loss_and_grads(model, tokens)
    counter = CompileCounterWithBackend("aot_eager")
    layers = compiled_layers.decoder_layers(model)
    assert len(layers) == 4
    for layer in layers:
        compiled_layers.compile_for_training(layer, backend=counter)
    loss, grads = loss_and_grads(model, tokens)
    assert loss == pytest.approx(eager_loss, rel=1e-6)
    for got, expected in zip(grads, eager_grads):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # the layers share their graphs: one for the first layer (its input needs no gradient), one
    # for the rest, not one per layer
    assert counter.frame_count == 2
    # generation (no gradients, another length at every token) stays eager: nothing recompiles
    with torch.no_grad():
        for length in (5, 6, 7):
            model(input_ids=tokens[:, :length])
    assert counter.frame_count == 2
    loss_and_grads(model, tokens)
    assert counter.frame_count == 2


def test_the_hook_finds_the_layers_through_the_wrappers():
    wrapped = torch.nn.Sequential(lora_llama(layers=2))  # as DeepSpeed or DDP hold the model
    logged = []
    runner = types.SimpleNamespace(model=wrapped,
                                   logger=types.SimpleNamespace(info=logged.append))
    compiled_layers.CompileDecoderLayers().before_train(runner)
    assert logged == ["train.compile: 2 LlamaDecoderLayer layers compiled for training "
                      "(the first iteration includes compiling)"]
    # every layer's forward is now the routing function, no longer the class's bound method
    assert not any(inspect.ismethod(layer.forward)
                   for layer in compiled_layers.decoder_layers(wrapped))


def test_a_model_without_decoder_layers_is_named():
    with pytest.raises(RuntimeError, match=r"no decoder layer .* in Linear; set train.compile: "
                                           r"false"):
        compiled_layers.decoder_layers(torch.nn.Linear(2, 2))
