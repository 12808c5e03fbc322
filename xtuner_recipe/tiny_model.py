"""Build the embedded default model: a tiny, randomly initialised InternLM2 with a local tokenizer.

The architecture is the real one: the modeling code is the copy that the installed xtuner package
ships, saved beside config.json with an `auto_map`, exactly as the hub's InternLM2 folders are laid
out, so every xtuner command loads it with `trust_remote_code=True`. The tokenizer is a byte-level
BPE trained on a fixed corpus that does not depend on the run's data, so changing the assistant's
owner never rebuilds the model. Nothing is downloaded.
"""

import json
import shutil
from pathlib import Path

from xtuner_recipe.manifest import follow_umask

CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
MODELING_FILES = ("configuration_internlm2.py", "modeling_internlm2.py")


def corpus_lines():
    """Fixed tokenizer training text: the tutorial's prompts and answers, and the eval prompts."""
    text = (Path(__file__).parent / "tiny_corpus.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def train_tokenizer(vocab_size):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(corpus_lines(), trainer=trainer)
    # Like InternLM2's own tokenizer: encode() starts every text with <s>.
    bos_id = core.token_to_id("<s>")
    core.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="</s>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        chat_template=CHAT_TEMPLATE,
        # generate() would otherwise be handed token_type_ids, which InternLM2 rejects.
        model_input_names=["input_ids", "attention_mask"],
    )
    return tokenizer


def internlm2_modeling_dir():
    import xtuner

    return Path(xtuner.__file__).parent / "_lite" / "modelings" / "internlm2"


def build_tiny_internlm2(out_dir, shape, seed=0, device="cpu", dtype="float32"):
    """Write a loadable model folder to out_dir. shape: the config.yaml `model.tiny` mapping.

    The model's vocabulary is shape["vocab_size"] (like InternLM2's, padded past the tokenizer's);
    the tokenizer learns at most that many tokens from the corpus. device/dtype only matter for
    building large shapes quickly (bench/ builds the 1.8B shape on a GPU).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(shape["vocab_size"])
    tokenizer.save_pretrained(out_dir)

    for name in MODELING_FILES:
        shutil.copy(internlm2_modeling_dir() / name, out_dir / name)
    config = {
        "architectures": ["InternLM2ForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_internlm2.InternLM2Config",
            "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
            "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
        },
        "model_type": "internlm2",
        "vocab_size": shape["vocab_size"],
        "hidden_size": shape["hidden_size"],
        "intermediate_size": shape["intermediate_size"],
        "num_hidden_layers": shape["num_hidden_layers"],
        "num_attention_heads": shape["num_attention_heads"],
        "num_key_value_heads": shape["num_key_value_heads"],
        "max_position_embeddings": shape["max_position_embeddings"],
        "hidden_act": "silu",
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000,
        "bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "torch_dtype": dtype,
        "attn_implementation": "eager",
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    torch.manual_seed(seed)
    model_config = AutoConfig.from_pretrained(out_dir, trust_remote_code=True)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=True,
                                                 torch_dtype=getattr(torch, dtype))
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="2GB")
    # save_pretrained rewrites config.json; keep the modeling files next to it either way.
    for name in MODELING_FILES:
        if not (out_dir / name).exists():
            shutil.copy(internlm2_modeling_dir() / name, out_dir / name)
    follow_umask(out_dir)
    return out_dir


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description="Build the tiny offline InternLM2 model.")
    parser.add_argument("--out", required=True)
    parser.add_argument("--shape", required=True, help="a JSON file with the model.tiny mapping")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    shape = json.loads(Path(args.shape).read_text())
    build_tiny_internlm2(args.out, shape, seed=shape.get("seed", 0), device=args.device,
                         dtype=args.dtype)


if __name__ == "__main__":
    main()
