"""xtuner_recipe.chat: the prompt template, greedy batched answers, cut at the stop words."""

from xtuner_recipe.chat import ChatModel, build_prompt


def test_prompt_is_xtuners_template():
    assert build_prompt("internlm2_chat", None, "Hi") == \
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert build_prompt("internlm2_chat", "Be brief.", "Hi").startswith(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi")


def test_answers_are_greedy_cut_at_turn_end_and_batching_changes_nothing(tiny_chat_model):
    chat = ChatModel(tiny_chat_model, "internlm2_chat", max_new_tokens=8, device="cpu")
    assert set(chat.stop_ids) == {2}  # eos is <|im_end|>, the template's stop word too
    prompts = ["What is the capital of France?", "你好", "Write a poem about the sea."]
    together = chat.answers(prompts, batch_size=3)
    assert together == [chat.answer(p) for p in prompts]  # left padding changes no answer
    assert together == chat.answers(prompts, batch_size=3)  # greedy
    assert all("<|im_end|>" not in a and "<|im_start|>" not in a for a in together)
