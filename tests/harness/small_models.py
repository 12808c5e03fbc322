"""A small random Llama for the unit tests of the training hooks: seconds to build and run."""

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def small_llama(layers=2, lora_targets=("q_proj", "v_proj")):
    """A Llama of `layers` layers (sdpa, no cache, as xtuner trains it), with LoRA on
    `lora_targets` (none: the plain model, every weight trainable)."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         attn_implementation="sdpa", use_cache=False)
    model = LlamaForCausalLM(config)
    if not lora_targets:
        return model
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                             target_modules=list(lora_targets)))
    # LoRA's B starts at zero: give the adapters weights, so that they change the loss
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(std=0.1)
    return model
