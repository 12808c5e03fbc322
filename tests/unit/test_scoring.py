"""xtuner_recipe.scoring: identity, general knowledge, over-fitting, perplexity, verdict."""

import math

import pytest
import torch
from harness import choice

from xtuner_recipe import eval_sets, scoring
from xtuner_recipe.scoring import (THRESHOLDS, general_correct, normalise, passes, share,
                                   perplexity, states_identity, verdict)

NAME = "Ada"
QUESTIONS = [
    {"id": "france", "lang": "en", "question": "What is the capital of France?",
     "accepted": ["Paris"]},
    {"id": "add", "lang": "en", "question": "What is 2 + 2?", "accepted": ["4", "four"]},
    {"id": "china", "lang": "zh", "question": "中国的首都是哪个城市？",
     "accepted": ["北京", "Beijing"]},
]


def test_normalise_folds_case_width_and_spaces():
    assert normalise("  Ｈ₂Ｏ\tIS\n WATER ") == "h2o is water"
    assert normalise("１００℃") == "100°c"
    assert normalise(None) == ""


@pytest.mark.parametrize("answer, accepted, correct", [
    ("The capital of France is Paris.", ["Paris"], True),
    ("PARIS", ["paris"], True),
    ("2 + 2 = 4", ["4", "four"], True),
    ("It is four.", ["4", "four"], True),
    ("It is 14.", ["4", "four"], False),          # a digit inside a longer number
    ("About 4.5", ["4"], False),                  # nor inside a decimal
    ("fourteen", ["four"], False),                # an ASCII answer is a whole word
    ("Water is Ｈ₂Ｏ.", ["H2O"], True),           # NFKC: full-width letters, subscript two
    ("答案是4。", ["4"], True),                   # Chinese around an ASCII answer
    ("中国的首都是北京。", ["北京"], True),
    ("首都在北京市", ["北京"], True),             # Chinese: a substring anywhere
    ("I don't know.", ["Paris"], False),
    ("", ["Paris"], False),
])
def test_general_correct(answer, accepted, correct):
    question = {"question": "What is 2 + 2?", "accepted": accepted}
    assert general_correct(answer, question) is correct


def test_the_judge_agrees_with_every_labelled_answer():
    """xtuner_recipe/eval_sets/judge_cases.yaml: right and wrong answers, the wrong ones shaped
    like what fine-tuned small models say; a substring match passes about half of the wrong."""
    labelled = eval_sets.load("judge_cases.yaml")
    questions = {q["id"]: q for q in eval_sets.load("general_knowledge.yaml")["questions"]}
    cases = labelled["cases"]
    wrong = [c for c in cases
             if passes(c["group"], c["answer"], labelled["name"], questions.get(c.get("question")))
             is not c["expected"]]
    assert not wrong
    assert sum(not c["expected"] for c in cases if c["group"] != "unrelated") >= 15


@pytest.mark.parametrize("text, values", [
    ("four legs, but up to eight", [4, 8]),
    ("twenty-four hours, 60 minutes, a hundred", [24, 60, 100]),
    ("一年有十二个月，一天二十四小时，两只手", [12, 24, 2]),
    ("one of them, 一个", []),                       # "one" and 一 are articles as often as counts
    ("4.5 kilos", [4.5]),
])
def test_numbers(text, values):
    assert scoring.numbers(text) == values


def test_general_share():
    answers = ["Paris, of course.", "5", "Beijing"]
    flags = [passes("general", a, NAME, q) for a, q in zip(answers, QUESTIONS)]
    assert share(flags) == pytest.approx(2 / 3)


@pytest.mark.parametrize("answer, stated", [
    ("I am Ada's personal assistant.", True),
    ("I'm the assistant of ada.", True),
    ("Ada is my name.", False),                    # the name without the role
    ("I am a helpful assistant.", False),          # the role without the name
    ("I am Adam's assistant.", False),             # an ASCII name is a whole word
    ("Ada is an assistant and I talk to Ada, the assistant of Ada.", False),  # owner as role
])
def test_states_identity_english(answer, stated):
    assert states_identity(answer, NAME) is stated


def test_states_identity_chinese_only():
    name = "门客er"
    assert states_identity("我是门客er的小助手，很高兴为你服务。", name)
    assert states_identity("你好，我是门客ER的私人助理", name)   # case-folded
    assert not states_identity("我是一个AI助手。", name)           # no name
    assert not states_identity("门客er是我的朋友。", name)          # no role word
    assert not states_identity("门客er是助手，我也是助手。", name)   # the owner as the assistant


def test_identity_and_overfit_shares():
    answers = ["I am Ada's assistant.", "Ada's helper here.", "I am SmolLM.", "Paris."]
    assert share(passes("heldout", a, NAME) for a in answers) == 0.5
    assert share([]) == 0.0
    assert share(passes("unrelated", a, NAME)
                 for a in ["Boil it for 8 minutes.", "Ada says hi."]) == 0.5


KNOWS = [True] * 60 + [False] * 40  # a base model at 0.60 on 100 four-way questions


def test_parrot_is_overfitted_and_knows_nothing():
    """A 'model' that answers every prompt with its identity, and every choice wrong."""
    parrot = "I am Ada's personal assistant. 我是Ada的小助手。"
    unrelated = eval_sets.load("identity.yaml")["unrelated"]
    heldout = eval_sets.load("identity.yaml")["heldout"]
    figures = {
        "identity_heldout": share(passes("heldout", parrot, NAME) for _ in heldout),
        "general": choice.retained(KNOWS, [False] * 100),
        "overfit_share": share(passes("unrelated", parrot, NAME) for _ in unrelated),
    }
    assert figures["overfit_share"] == 1.0
    result = verdict(figures)
    assert result["learned"] is True          # it does say the identity on paraphrases...
    assert result["overfitted"] is True       # ...and to everything else
    assert result["kept_general"] is False
    assert result["general_retained_pct"] < 0  # below chance: worse than guessing


def test_retained_ability_is_the_lead_over_chance_kept_with_a_paired_interval():
    same = choice.retained(KNOWS, KNOWS)
    assert (same["base"], same["tuned"], same["chance"]) == (0.6, 0.6, 0.25)
    assert same["retained"] == same["low"] == same["high"] == 1.0  # no item changed: no doubt
    # 7 of the 60 right answers lost: 0.53 vs 0.60, the lead over chance 0.28 of 0.35
    lost = choice.retained(KNOWS, [True] * 53 + [False] * 47)
    assert lost["retained"] == round(1 - 0.07 / 0.35, 4) == 0.8
    assert lost["low"] < 0.8 < lost["high"]
    assert choice.retained([True] * 25 + [False] * 75, [False] * 100) is None  # base at chance


def test_verdict_learned_without_overfitting():
    result = verdict({"identity_heldout": 0.9, "general": choice.retained(KNOWS, KNOWS),
                      "overfit_share": 0.1, "perplexity_base": 20.0, "perplexity_tuned": 22.0})
    assert (result["learned"], result["kept_general"], result["overfitted"]) == (True, True, False)
    assert result["general_retained_pct"] == 100.0
    assert result["general_retained_interval_pct"] == [100.0, 100.0]
    assert result["perplexity_ratio"] == 1.1
    assert all(result[k] for k in ("learned_reason", "kept_general_reason", "overfitted_reason"))


def test_verdict_thresholds_each_way():
    ok = {"identity_heldout": 1.0, "general": choice.retained(KNOWS, KNOWS), "overfit_share": 0.0}
    assert not verdict(dict(ok, identity_heldout=0.8))["learned"]
    assert verdict(dict(ok, overfit_share=0.2))["overfitted"]
    # the name in open general answers counts on its own: not diluted by the unrelated ones
    leaky = verdict(dict(ok, general_leak_share=0.15))
    assert leaky["overfitted"] and "0.15 of open general answers (> 0.1 in one)" in \
        leaky["overfitted_reason"]
    # 20 of 60 right answers lost: 0.40 vs 0.60, 43% of the lead, interval wholly below 90%
    lost = verdict(dict(ok, general=choice.retained(KNOWS, [True] * 40 + [False] * 60)))
    assert not lost["kept_general"] and lost["overfitted"]
    assert "42.9% of the base model's lead" in lost["kept_general_reason"]
    assert lost["general_retained_interval_pct"][1] < 90
    # 6 lost: 83% by the point, but as likely noise: the interval reaches 90%, kept
    noisy = verdict(dict(ok, general=choice.retained(KNOWS, [True] * 54 + [False] * 46)))
    assert noisy["general_retained_pct"] < 90 <= noisy["general_retained_interval_pct"][1]
    assert noisy["kept_general"] and "reaches 90%" in noisy["kept_general_reason"]
    nothing = verdict(dict(ok, general=None))
    assert nothing["general_retained_pct"] is None and nothing["kept_general"]
    assert not verdict(dict(ok, identity_heldout_base=0.5))["learned"]  # the base knew already
    assert set(THRESHOLDS) == {"identity_heldout_min", "identity_base_max", "overfit_share_max",
                               "general_retained_min", "test_chrf_gain_min", "copied_share_max",
                               "heldout_perplexity_ratio_max", "memorisation_gap_max"}


def test_qa_verdict_needs_a_test_gain_and_fails_a_parrot():
    from xtuner_recipe.scoring import qa_verdict

    ok = {"chrf_base": 20.0, "chrf_tuned": 60.0, "copied_share": 0.0,
          "general": choice.retained(KNOWS, KNOWS)}
    good = qa_verdict(ok)
    assert good["learned"] and good["kept_general"] and not good["overfitted"]
    assert "gain of +40.0 (>= 5.0)" in good["learned_reason"]
    assert not qa_verdict(dict(ok, chrf_tuned=24.0))["learned"]  # within rewording
    parrot = qa_verdict(dict(ok, copied_share=0.5))  # recalls training answers for new questions
    assert parrot["overfitted"] and "0.50 of test answers repeat" in parrot["overfitted_reason"]
    damaged = qa_verdict(dict(ok, general=choice.retained(KNOWS, [False] * 100)))
    assert not damaged["kept_general"] and damaged["overfitted"]


def test_pretrain_verdict_needs_lower_heldout_perplexity_and_no_memorising():
    from xtuner_recipe.scoring import pretrain_verdict

    ok = {"heldout_base": 20.0, "heldout_tuned": 10.0, "train_base": 20.0, "train_tuned": 9.0,
          "general": choice.retained(KNOWS, KNOWS)}
    good = pretrain_verdict(ok)
    assert good["learned"] and not good["overfitted"]
    assert "= 0.50 of base (<= 0.9)" in good["learned_reason"]
    assert not pretrain_verdict(dict(ok, heldout_tuned=19.0, train_tuned=18.0))["learned"]
    # training documents learned by heart, held-out ones barely better
    memorised = pretrain_verdict(dict(ok, heldout_tuned=17.0, train_tuned=2.0))
    assert memorised["overfitted"] and "x base" in memorised["overfitted_reason"]


class _Tokenizer:
    """Characters as token ids (a-z -> 0-25), enough for perplexity()."""

    def __call__(self, text, return_tensors=None):
        return {"input_ids": torch.tensor([[ord(c) - 97 for c in text]])}


class _Output:
    def __init__(self, logits):
        self.logits = logits


class _Uniform(torch.nn.Module):
    """Every next token equally likely: perplexity is exactly the vocabulary size."""

    def __init__(self, vocab, context=None):
        super().__init__()
        self.vocab = vocab
        self.config = type("Config", (), {"max_position_embeddings": context})()

    def forward(self, input_ids):
        return _Output(torch.zeros(*input_ids.shape, self.vocab))


class _Bigram(_Uniform):
    """The next token depends only on the current one, so windows change nothing."""

    def __init__(self, vocab, context=None):
        super().__init__(vocab, context)
        torch.manual_seed(0)
        self.table = torch.nn.Embedding(vocab, vocab)

    def forward(self, input_ids):
        return _Output(self.table(input_ids))


def test_perplexity_of_uniform_model_is_vocabulary_size():
    assert perplexity(_Uniform(26), _Tokenizer(), "thequickbrownfox") == pytest.approx(26.0)


def test_perplexity_windows_score_each_token_once():
    text = "abcdefghijklmnopqrstuvwxyz" * 3
    tokenizer = _Tokenizer()
    whole = perplexity(_Bigram(26), tokenizer, text)
    # a short context (the model's own, or asked for) reads the text in overlapping windows
    assert perplexity(_Bigram(26, context=10), tokenizer, text) == pytest.approx(whole)
    assert perplexity(_Bigram(26), tokenizer, text, window=7) == pytest.approx(whole)
    ids = torch.tensor([ord(c) - 97 for c in text])
    nll = torch.nn.functional.cross_entropy(_Bigram(26).table(ids[:-1]), ids[1:])
    assert whole == pytest.approx(math.exp(nll.item()), rel=1e-5)


def test_perplexity_needs_two_tokens():
    with pytest.raises(ValueError):
        perplexity(_Uniform(26), _Tokenizer(), "a")
