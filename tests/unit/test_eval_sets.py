"""The evaluation sets shipped in xtuner_recipe/eval_sets/: shapes, sizes, no overlaps."""

import re

from xtuner_recipe import eval_sets
from xtuner_recipe.scoring import general_correct, normalise, passes, states_identity

NAMES = ("Ada", "门客er")


def _inputs(entries):
    return [normalise(e["input"]) for e in entries]


def test_general_knowledge_questions():
    data = eval_sets.load("general_knowledge.yaml")
    questions = data["questions"]
    assert 35 <= len(questions) <= 45
    langs = [q["lang"] for q in questions]
    assert langs.count("en") >= 25 and langs.count("zh") >= 8
    ids = [q["id"] for q in questions]
    assert len(set(ids)) == len(ids)
    for q in questions:
        assert q["question"].strip()
        assert q["accepted"] and all(isinstance(a, str) and a.strip() for a in q["accepted"]), q
        # the question's own words never count as its answer
        assert not general_correct(q["question"], q), q["id"]


def test_identity_sets():
    data = eval_sets.load("identity.yaml")
    for group, low, high in (("training", 10, 16), ("heldout", 8, 14), ("unrelated", 8, 14)):
        langs = [e["lang"] for e in data[group]]
        assert low <= len(langs) <= high, group
        assert langs.count("zh") >= 4 and langs.count("en") >= 4, group
    for pair in data["training"]:
        assert "{name}" in pair["output"]
        for name in NAMES:
            assert states_identity(pair["output"].replace("{name}", name), name), pair
    training = set(_inputs(data["training"]))
    assert not training & set(_inputs(data["heldout"]))
    assert not training & set(_inputs(data["unrelated"]))
    assert not set(_inputs(data["heldout"])) & set(_inputs(data["unrelated"]))
    assert all("{name}" not in e["input"] for g in data.values() for e in g)


def test_identity_answers_score_nothing_on_general_knowledge():
    """A model that parrots its training answers must not pass any question by accident."""
    questions = eval_sets.load("general_knowledge.yaml")["questions"]
    for pair in eval_sets.load("identity.yaml")["training"]:
        for name in NAMES:
            answer = pair["output"].replace("{name}", name)
            assert not [q["id"] for q in questions if general_correct(answer, q)]


def test_unrelated_prompts_do_not_mention_a_name():
    unrelated = [e["input"] for e in eval_sets.load("identity.yaml")["unrelated"]]
    for name in NAMES:
        assert not any(passes("unrelated", prompt, name) for prompt in unrelated)


def test_no_prompt_is_in_two_sets():
    general = {normalise(q["question"]) for q in
               eval_sets.load("general_knowledge.yaml")["questions"]}
    identity = eval_sets.load("identity.yaml")
    identity_prompts = {p for group in identity.values() for p in _inputs(group)}
    replay = eval_sets.load("replay_prompts.yaml")["prompts"]
    assert 35 <= len(replay) <= 45
    assert any(re.search(r"[\u4e00-\u9fff]", p) for p in replay)
    replay = {normalise(p) for p in replay}
    assert len(replay) == len(eval_sets.load("replay_prompts.yaml")["prompts"])
    assert not general & identity_prompts
    assert not replay & general
    assert not replay & identity_prompts


def test_heldout_text():
    text = eval_sets.load("heldout_text.txt")
    assert 300 <= len(text.split()) <= 400
    assert "assistant" not in text.casefold()
