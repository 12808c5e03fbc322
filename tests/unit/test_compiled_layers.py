"""train.compile: decoder layers through torch.compile for the training steps only."""

import inspect
import types

import pytest
import torch
from harness.small_models import small_llama

from xtuner_recipe import compiled_layers


def lora_llama(layers=4):
    return small_llama(layers, lora_targets=("q_proj", "v_proj", "down_proj"))


def loss_and_grads(model, tokens):
    model.zero_grad()
    loss = model(input_ids=tokens, labels=tokens).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


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
