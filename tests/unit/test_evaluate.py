"""Eval helpers: training prompts, how each group's answers are judged, the whole evaluation on a
small random model, and the prompt text the models see."""

import json

import pytest

from xtuner_recipe import assistant_data
from xtuner_recipe.chat import build_prompt
from xtuner_recipe.evaluate import TRAIN_PROMPTS_SHOWN, evaluate, training_prompts
from xtuner_recipe.scoring import passes as judge
from xtuner_recipe.settings import EvalSettings


def write(path, records):
    path.write_text(json.dumps(records, ensure_ascii=False, indent=4), encoding="utf-8")
    return path


PAIRS = [{"input": "请介绍一下你自己", "output": "我是{name}的小助手"},
         {"input": "你在实战营做什么", "output": "我在这里帮助{name}"}]


@pytest.mark.parametrize("record_format", ["conversation", "messages"])
def test_training_prompts_of_the_generated_dataset(tmp_path, record_format):
    records = assistant_data.generate_records("门客er", PAIRS, 50, record_format)
    dataset = write(tmp_path / "assistant.json", records)
    assert training_prompts(dataset) == ["请介绍一下你自己", "你在实战营做什么"]


def test_training_prompts_keep_first_seen_order_and_skip_system_messages(tmp_path):
    records = [
        {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "b"},
                      {"role": "assistant", "content": "x"}, {"role": "user", "content": "z"}]},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "b"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "c"}, {"role": "assistant", "content": "y"}]},
    ]
    assert training_prompts(write(tmp_path / "d.json", records)) == ["b", "a", "c"]


def test_training_prompts_use_the_first_conversation_turn(tmp_path):
    records = [{"conversation": [{"system": "s", "input": "q1", "output": "a1"},
                                 {"input": "q2", "output": "a2"}]},
               {"conversation": [{"input": "q3", "output": "a3"}]}]
    assert training_prompts(write(tmp_path / "d.json", records)) == ["q1", "q3"]


def test_training_prompts_limit(tmp_path):
    records = [assistant_data.conversation_record(f"q{i % 30}", "a") for i in range(90)]
    dataset = write(tmp_path / "d.json", records)
    assert training_prompts(dataset) == [f"q{i}" for i in range(TRAIN_PROMPTS_SHOWN)]
    assert training_prompts(dataset, limit=3) == ["q0", "q1", "q2"]
    assert training_prompts(dataset, limit=100) == [f"q{i}" for i in range(30)]


def test_each_group_is_judged_by_its_own_rule():
    # identity: the owner's name and the assistant role, case-folded
    assert judge("heldout", "I am ADA's assistant", "Ada")
    assert judge("training", "我是门客ER的小助手", "门客er")
    assert not judge("heldout", "I am an assistant", "Ada")  # no name
    assert not judge("heldout", "Ada Lovelace was a mathematician", "Ada")  # no role
    # unrelated: passing means over-fitted, i.e. the owner comes up
    assert judge("unrelated", "Boil it for 8 minutes, says Ada.", "Ada")
    assert not judge("unrelated", "Boil it for 8 minutes.", "Ada")
    # general: any accepted answer
    question = {"accepted": ["Paris"]}
    assert judge("general", "The capital of France is Paris.", "Ada", question)
    assert not judge("general", "I am Ada's assistant.", "Ada", question)


def eval_settings(model, task, max_test_items=40):
    return EvalSettings(
        task=task, base_model=str(model), name="Ada", prompt_template="internlm2_chat",
        system=None, training_prompts=None, heldout_identity_prompts=["Who are you?"],
        unrelated_prompts=["Write a poem.", "你好"],
        general_knowledge=[{"id": "q", "lang": "en", "question": "Capital of France?",
                            "accepted": ["Paris"]}],
        heldout_text="The sea is wide and the sky is blue. " * 4, max_new_tokens=4,
        max_test_items=max_test_items, harness_tasks=["general_choice_en"], harness_limit=8)


def test_qa_evaluation_scores_each_test_answer_against_its_reference(tiny_chat_model, tmp_path):
    """Task qa: the held-out questions (a multi-turn one with its history), every answer scored
    against the reference; the corpus figures are those of the raw answers kept beside them."""
    from xtuner_recipe import text_metrics

    train = [assistant_data.conversation_record("What is the price?", "It costs 5 yuan.")]
    test = [assistant_data.conversation_record("价格是多少？", "每100克5元。"),
            {"messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello."},
                          {"role": "user", "content": "And the price?"},
                          {"role": "assistant", "content": "It costs 5 yuan."}]},
            assistant_data.conversation_record("价格是多少？", "a duplicate question"),
            assistant_data.conversation_record("One more?", "Not asked: beyond the limit.")]
    result = evaluate(eval_settings(tiny_chat_model, "qa", max_test_items=2),
                      str(tiny_chat_model), write(tmp_path / "train.json", train),
                      write(tmp_path / "test.json", test))
    assert result["task"] == "qa"
    group = result["groups"]["test"]
    items = group["prompts"]
    assert [i["prompt"] for i in items] == ["价格是多少？", "And the price?"]
    assert items[1]["history"] == [["Hi", "Hello."]] and items[0]["lang"] == "zh"
    assert items[0]["references"] == ["每100克5元。", "a duplicate question"]
    for model in ("base", "merged"):
        answers = [i[model] for i in items]
        assert group[model] == text_metrics.scores_by_language(
            answers, [i["references"] for i in items], [i["lang"] for i in items])
        assert group[f"{model}_copied"] == sum(i[f"{model}_copied"] for i in items) / 2
    assert set(result["groups"]) == {"test", "general"}


def test_pretrain_evaluation_measures_heldout_and_training_documents(tiny_chat_model, tmp_path):
    train = [{"text": f"The tea house opens at {h} in the morning."} for h in range(6, 12)]
    test = [{"text": "The tea house closes at ten in the evening, after the last pot."}]
    result = evaluate(eval_settings(tiny_chat_model, "pretrain"), str(tiny_chat_model),
                      write(tmp_path / "train.json", train), write(tmp_path / "test.json", test))
    assert result["documents"] == {"heldout": 1, "train": 1}
    domain = result["domain_perplexity"]
    assert domain["heldout"]["base"] == domain["heldout"]["merged"] > 1  # the same model
    assert result["continuations"][0]["prompt"] == " ".join(test[0]["text"].split()[:12])


def test_evaluation_keeps_every_raw_answer_and_its_judgement(tiny_chat_model, tmp_path):
    """Both models (here the same random one) answer every group; shares come from the flags."""
    dataset = write(tmp_path / "assistant.json",
                    assistant_data.generate_records("Ada", PAIRS, 1, "conversation"))
    run = eval_settings(tiny_chat_model, "identity")
    result = evaluate(run, str(tiny_chat_model), dataset, write(tmp_path / "test.json", []))
    groups = result["groups"]
    assert [i["prompt"] for i in groups["training"]["prompts"]] == [p["input"] for p in PAIRS]
    assert len(groups["unrelated"]["prompts"]) == 2
    assert groups["general"]["prompts"][0]["accepted"] == ["Paris"]
    for data in groups.values():
        for model in ("base", "merged"):
            flags = [i[f"{model}_pass"] for i in data["prompts"]]
            assert data[model] == sum(flags) / len(flags)
        assert all(i["base"] == i["merged"] for i in data["prompts"])  # same model, greedy
    assert result["perplexity"]["base"] == result["perplexity"]["merged"] > 1
    # the harness's multiple choice: every item's choice kept, the accuracy computed from them
    for model in ("base", "merged"):
        task = result["choice"][model]["general_choice_en"]
        assert task["n"] == len(task["items"]) == 8
        assert task["acc"] == sum(i["chosen"] == i["target"] for i in task["items"]) / 8
        assert all(i["correct"] == (i["chosen"] == i["target"]) for i in task["items"])


def test_build_prompt_internlm2_chat_without_system():
    assert build_prompt("internlm2_chat", None, "你是谁") == (
        "<|im_start|>user\n你是谁<|im_end|>\n<|im_start|>assistant\n")
    assert build_prompt("internlm2_chat", "", "Hi") == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")


def test_build_prompt_internlm2_chat_with_system():
    assert build_prompt("internlm2_chat", "You are {name}'s helper.", "Who are you?") == (
        "<|im_start|>system\nYou are {name}'s helper.<|im_end|>\n"
        "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n")


def test_build_prompt_follows_xtuners_template_table():
    from xtuner.utils import PROMPT_TEMPLATE

    for name in ("internlm2_chat", "qwen_chat", "llama3_chat", "default"):
        template = PROMPT_TEMPLATE[name]
        expected = template["INSTRUCTION"].format(input="Q", round=1)
        assert build_prompt(name, None, "Q") == expected
        system = template.get("SYSTEM", "{system}").format(system="S")
        assert build_prompt(name, "S", "Q") == system + expected


def test_build_prompt_is_the_first_round():
    assert build_prompt("chatglm2", "S", "Q") == "S\n[Round 1]\n\n问：Q\n\n答："


def test_a_test_answer_that_repeats_another_questions_training_answer_is_copied():
    from xtuner_recipe.evaluate import copies_training_answer
    from xtuner_recipe.text_metrics import normalise

    trained = {normalise("Tea 1 costs 10 yuan."), normalise("Tea 2 costs 20 yuan.")}
    assert copies_training_answer("tea 1 costs 10 yuan", ["Tea 3 costs 30 yuan."], trained)
    assert not copies_training_answer("Tea 2 costs 20 yuan.", ["Tea 2 costs 20 yuan."], trained)
    assert not copies_training_answer("Tea 3 costs 25 yuan.", ["Tea 3 costs 30 yuan."], trained)
    # one of the question's own answers is not a copy
    assert not copies_training_answer("Tea 1 costs 10 yuan.", ["Tea 3 costs 30 yuan.",
                                                                "Tea 1 costs 10 yuan."], trained)


def test_a_test_question_asked_twice_is_one_item_with_both_answers_as_references():
    """Defect (issue 27): test.json held 7 records, 6 questions, and the report scored the
    repeated question against its first answer only."""
    from xtuner_recipe.evaluate import test_items

    records = [assistant_data.conversation_record(q, a) for q, a in [
        ("孕妇可以吃感冒药吗？", "请先咨询医生。"), ("儿童用量？", "减半。"),
        ("孕妇 可以吃感冒药吗?", "不建议自行服用。"), ("孕妇可以吃感冒药吗", "请先咨询医生"),
        ("第三个问题？", "超出上限。")]]
    records.append({"messages": [{"role": "user", "content": "儿童用量？"},
                                 {"role": "assistant", "content": "减半。"},
                                 {"role": "user", "content": "几岁以下？"},
                                 {"role": "assistant", "content": "12岁以下。"}]})
    items = test_items(records, limit=2)
    assert [(i["prompt"], i["references"]) for i in items] == [
        ("孕妇可以吃感冒药吗？", ["请先咨询医生。", "不建议自行服用。"]),  # the same answer once
        ("儿童用量？", ["减半。"])]  # the multi-turn record asks another question: not a copy
    assert len(test_items(records, limit=10)) == 4
