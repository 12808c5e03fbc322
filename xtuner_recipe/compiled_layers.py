"""train.compile: torch.compile the LLM's decoder layers for the training steps.

A tuned GPU step spends about half its time in small memory-bound kernels around every adapted
linear layer (LoRA's adds, dropout and scaling, RMSNorm, SiLU, dtype copies:
bench/results/throughput-h100.md); inductor fuses them (1.46x: compile-h100.md). Why each
layer and not the whole model: identical layers reuse one compiled graph (two: the first layer's
input needs no gradient; tests/unit/test_compiled_layers.py counts them), so compiling costs
about one layer's time instead of the whole stack's. Why only with gradients on:
xtuner's sample chat generates under no_grad with a new length at every token, which would
recompile again and again; it keeps the eager layers.

The patched xtuner config adds the hook below to `custom_hooks` (xtuner_recipe.xtuner_config).
"""

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def decoder_layers(model):
    """The transformer blocks of the LLM inside `model` (whatever wraps it: DeepSpeed, DDP,
    xtuner's SupervisedFinetune, peft): every module whose class is named *DecoderLayer."""
    layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
    if not layers:
        raise RuntimeError(f"train.compile: no decoder layer (a module class named *DecoderLayer)"
                           f" in {type(model).__name__}; set train.compile: false for this model")
    return layers


def compile_for_training(layer, **options):
    """Route the layer's calls with gradients on through torch.compile, the rest eagerly."""
    eager = layer.forward
    compiled = torch.compile(eager, **options)

    def forward(*args, **kwargs):
        return (compiled if torch.is_grad_enabled() else eager)(*args, **kwargs)

    layer.forward = forward


@HOOKS.register_module()
class CompileDecoderLayers(Hook):
    """Compiles before the first training iteration; that iteration carries the compile time."""

    def before_train(self, runner):
        layers = decoder_layers(runner.model)
        for layer in layers:
            compile_for_training(layer)
        runner.logger.info(f"train.compile: {len(layers)} {type(layers[0]).__name__} layers "
                           f"compiled for training (the first iteration includes compiling)")
