"""Fixtures of the unit tests."""

import pytest

CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
          "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


@pytest.fixture
def inductor_cache(monkeypatch, tmp_path):
    """Importing inductor sets TORCHINDUCTOR_CACHE_DIR in this process when it is unset: keep the
    test's caches in its tmp folder, and the variable unset for the rest of the session."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))


@pytest.fixture(scope="session")
def tiny_chat_model(tmp_path_factory):
    """A random two-layer Llama with a ChatML byte-level tokenizer: seconds to build."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.train_from_iterator(
        ["What is the capital of France? Paris.", "Write a poem about the sea.", "你好，世界"],
        trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>",
                                                            "<|im_end|>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<|im_start|>",
                                        eos_token="<|im_end|>", pad_token="<|im_end|>",
                                        unk_token="<|endoftext|>", chat_template=CHATML)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
        bos_token_id=1, eos_token_id=2, pad_token_id=2))
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=[2, 0],
                                               pad_token_id=2)
    folder = tmp_path_factory.mktemp("tiny-chatml")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
