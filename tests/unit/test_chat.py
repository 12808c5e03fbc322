"""xtuner_recipe.chat: the prompt template, greedy batched answers, cut at the stop words."""

import subprocess
import sys

import pytest

from xtuner_recipe.chat import ChatModel, PromptTooLong, build_prompt, converse, main


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


def test_a_conversation_lays_out_earlier_turns_in_the_template():
    text = build_prompt("internlm2_chat", None, "And you?", [("Hi", "Hello!")])
    assert text == ("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                    "<|im_start|>user\nAnd you?<|im_end|>\n<|im_start|>assistant\n")
    assert build_prompt("internlm2_chat", None, "Hi", []) == build_prompt("internlm2_chat", None, "Hi")


def test_a_streamed_answer_is_the_greedy_answer_piece_by_piece(tiny_chat_model):
    chat = ChatModel(tiny_chat_model, "internlm2_chat", max_new_tokens=12, device="cpu")
    pieces = []
    answer, stats = chat.stream("What is the capital of France?", write=pieces.append)
    assert answer == chat.answer("What is the capital of France?")
    assert "".join(pieces).strip() == answer and len(pieces) >= 1
    assert 0 < stats["first_token_s"] and 0 < stats["new_tokens"] <= 12 and stats["tokens_per_s"] > 0


def test_a_prompt_longer_than_the_context_is_refused_with_the_numbers(tiny_chat_model):
    chat = ChatModel(tiny_chat_model, "internlm2_chat", max_new_tokens=16, device="cpu")
    with pytest.raises(PromptTooLong, match=r"at most 112 \(its context less the tokens kept for the answer\)"):
        chat.stream("the sea " * 200)


def test_one_shot_prints_the_answer_and_exits(tiny_chat_model, capsys):
    expected = ChatModel(tiny_chat_model, "internlm2_chat", max_new_tokens=12).answer("你好")
    main([str(tiny_chat_model), "--template", "internlm2_chat", "--prompt", "你好",
          "--max-new-tokens", "12", "--stats"])
    out, err = capsys.readouterr()
    assert out.strip() == expected
    assert "template internlm2_chat" in err and "tokens/s" in err


def test_the_interactive_chat_keeps_going_after_bad_turns_and_quits_cleanly(tiny_chat_model):
    """Empty lines are skipped, an over-long prompt is refused and the chat goes on, /reset
    forgets, end of input quits with status 0."""
    stdin = "What is the capital of France?\n\n" + "sea " * 200 + "\n/reset\n你好\n"
    result = subprocess.run([sys.executable, "-m", "xtuner_recipe.chat", str(tiny_chat_model),
                             "--template", "internlm2_chat", "--max-new-tokens", "12"],
                            input=stdin, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    chat = ChatModel(tiny_chat_model, "internlm2_chat", max_new_tokens=12)
    assert chat.answer("What is the capital of France?") in result.stdout
    assert "this model takes at most 116" in result.stderr
    assert "conversation forgotten" in result.stderr
    assert result.stdout.rstrip().endswith(chat.answer("你好"))
    assert "Traceback" not in result.stderr


def test_an_adapter_is_tried_on_its_base_model_before_merging(tiny_chat_model, tmp_path):
    """--adapter gives the answers the merged model gives."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(tiny_chat_model)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"],
                                           init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    merged = tmp_path / "merged"
    peft.merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(tiny_chat_model).save_pretrained(merged)
    prompts = ["What is the capital of France?", "你好"]
    with_adapter = ChatModel(tiny_chat_model, "internlm2_chat", max_new_tokens=12,
                             adapter=tmp_path / "adapter").answers(prompts)
    assert with_adapter == ChatModel(merged, "internlm2_chat", max_new_tokens=12).answers(prompts)
    assert with_adapter != ChatModel(tiny_chat_model, "internlm2_chat", max_new_tokens=12).answers(prompts)


@pytest.mark.parametrize("files, message", [
    ([], "does not exist: give a run folder"),
    (["config.json"], "is not a complete model folder: it lacks weights (*.safetensors or "
                      "pytorch_model*.bin) and a tokenizer"),
    (["build/settings/x.json"], "has no published set yet: its run has not finished"),
])
def test_bad_targets_are_named_in_one_line(tmp_path, capsys, files, message):
    target = tmp_path / "target"
    for name in files:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_text("{}")
    with pytest.raises(SystemExit) as stop:
        main([str(target), "--template", "internlm2_chat", "--prompt", "Hi"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("[xtuner-recipe] ") and "\n" not in err


def test_an_empty_prompt_or_a_model_without_template_is_refused(tiny_chat_model, capsys):
    for argv, message in (([str(tiny_chat_model), "--template", "internlm2_chat", "--prompt", "  "],
                           "--prompt is empty"),
                          ([str(tiny_chat_model), "--prompt", "Hi"], "name its prompt template")):
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


def test_the_conversation_says_what_to_do_with_an_empty_line(tiny_chat_model, capsys):
    chat = ChatModel(str(tiny_chat_model), "internlm2_chat", None, 4)
    lines, written = iter(["", "   ", "Hi", "/exit"]), []
    converse(chat, read=lambda _: next(lines), write=written.append)
    err = capsys.readouterr().err
    assert err.count("empty prompt: type a question, /reset or /exit") == 2
    assert next(lines, None) is None and "".join(written).strip()  # Hi answered, then /exit


def test_a_python_without_the_stack_is_told_the_fix(tiny_chat_model):
    """The system's python3 instead of .venv's: one line with the fix, no traceback."""
    code = ("import sys; sys.modules['torch'] = None\n"
            "from xtuner_recipe.chat import main\n"
            f"main([{str(tiny_chat_model)!r}, '--prompt', 'Hi'])")
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert "torch is not installed for" in ran.stderr and "make install" in ran.stderr
