"""Text-overlap metrics: Chinese answers score like English ones, and a parrot scores low."""

import pytest
from rouge_score import rouge_scorer

from xtuner_recipe import text_metrics as tm

ZH = "云雾乌龙每100克48元。"
EN = "Cloud Mist Oolong costs 48 yuan per 100 g."


def test_rouge_keeps_chinese_characters_where_rouge_scores_default_drops_them():
    """rouge-score's own tokenizer keeps [a-z0-9] only: two different Chinese sentences that
    share a few characters score 0 there, and a partial match must score between 0 and 100."""
    partial = "云雾乌龙每100克52元。"
    default = rouge_scorer.RougeScorer(["rougeL"]).score(ZH, "龙井每斤二百元。")
    assert default["rougeL"].fmeasure in (0.0, 1.0)  # digits aside, nothing Chinese is compared
    assert 0 < tm.rouge_l(partial, [ZH]) < 100
    assert tm.rouge_l(ZH, [ZH]) == 100
    assert tm.rouge_l("我不知道。", [ZH]) == 0
    assert tm.RougeTokenizer().tokenize("Ｏｏｌｏｎｇ 乌龙 48元") == ["oolong", "乌", "龙", "48", "元"]


def test_bleu_uses_the_chinese_tokenizer_for_chinese_references():
    assert tm.bleu_tokenizer([[EN]]) == "13a"
    assert tm.bleu_tokenizer([[EN], [EN, ZH]]) == "zh"
    close = tm.corpus_scores(["云雾乌龙每100克52元。"], [[ZH]])
    assert 0 < close["bleu"] < 100 and 0 < close["chrf"] < 100


def test_perfect_answers_score_100_and_unrelated_ones_near_0():
    assert tm.corpus_scores([ZH, EN], [[ZH], [EN]]) == {
        "bleu": 100.0, "chrf": 100.0, "rouge_l": 100.0, "exact_match": 100.0, "count": 2,
        "references": 2}
    wrong = tm.corpus_scores(["我不知道。", "I do not know."], [[ZH], [EN]])
    assert wrong["bleu"] < 5 and wrong["chrf"] < 10 and wrong["rouge_l"] == wrong["exact_match"] == 0


def test_overlap_alone_rewards_a_parrots_form_exact_match_does_not():
    """A model that answers every question with one learned sentence keeps the sentence's form,
    so BLEU stays high on templated answers; exact match (and the report's copied-answer share,
    xtuner_recipe.evaluate.copies_training_answer) is what exposes it."""
    references = [f"Tea {i} costs {10 * i} yuan per 100 g." for i in range(1, 9)]
    parrot = tm.corpus_scores([references[0]] * 8, [[r] for r in references])
    assert parrot["exact_match"] == 12.5 and parrot["bleu"] > 30


def test_exact_match_ignores_case_width_spacing_and_final_punctuation():
    assert tm.exact_match("cloud mist oolong costs 48 yuan per 100 g", [EN])
    assert tm.exact_match("云雾乌龙每１００克４８元", [ZH])  # full-width digits, no final stop
    assert not tm.exact_match("云雾乌龙每100克52元。", [ZH])


def test_normalise_makes_one_text_of_cjk_spacing_punctuation_variants_and_line_breaks():
    """Defect (issue 27): the key kept a space between CJK characters, so '孕妇 可以吃感冒药吗？'
    and '孕妇可以吃感冒药吗？' were two questions (and leaked across the split); exact match failed
    a correct answer whose reference holds an in-cell line break ('；\\n如' became '; 如')."""
    same = ["孕妇 可以吃感冒药吗？", "孕妇可以吃感冒药吗?", "孕妇\n可以吃 感冒药 吗 ？", "孕妇可以吃感冒药吗"]
    assert {tm.normalise(q) for q in same} == {"孕妇可以吃感冒药吗"}
    assert tm.normalise("“板蓝根”、「连花」。") == tm.normalise('"板蓝根",「连花」.') == '"板蓝根","连花"'
    assert tm.normalise("Ｃａｎ I  take IT ？") == "can i take it"  # Latin words keep one space
    assert tm.normalise("用 Python 3 编程") == "用python 3编程"
    assert tm.exact_match("饭后服用；如有不适请停药。", ["饭后服用；\n如有不适请停药。"])
    assert not tm.exact_match("can i take it", ["cani take it"])


def test_a_correct_answer_scores_100_against_any_of_several_references():
    """Defect (issue 27): a test question with two answers was scored against the first only."""
    references = [["每次一粒。", "一次1粒，每日两次。"], [EN]]
    scores = tm.corpus_scores(["一次1粒，每日两次。", EN], references)
    assert scores == {"bleu": 100.0, "chrf": 100.0, "rouge_l": 100.0, "exact_match": 100.0,
                      "count": 2, "references": 3}
    assert tm.chrf("一次1粒，每日两次。", references[0]) == 100
    assert tm.rouge_l("每次一粒。", references[0]) == 100
    assert tm.exact_match("一次1粒,每日两次", references[0])
    first_only = tm.corpus_scores(["一次1粒，每日两次。", EN], [["每次一粒。"], [EN]])
    assert first_only["exact_match"] == 50 and first_only["chrf"] < 100


def test_a_number_has_no_language_and_takes_its_questions():
    """Defect (issue 27): a reference '48' counted as English, a false 'en' row in an all-Chinese
    test set."""
    assert tm.language("48") is None and tm.language("４８。") is None
    assert tm.language("48", "每天最多吃几粒？") == "zh"
    assert tm.language("48 tablets", "每天最多吃几粒？") == "en"
    zh_only = tm.scores_by_language(["48", ZH], [["48"], [ZH]], ["zh", "zh"])
    assert set(zh_only) == {"all"}


def test_scores_by_language_splits_a_mixed_test_set():
    scores = tm.scores_by_language([ZH, "wrong"], [[ZH], [EN]], ["zh", "en"])
    assert scores["zh"]["exact_match"] == 100 and scores["en"]["exact_match"] == 0
    assert scores["all"]["count"] == 2 and scores["zh"]["count"] == scores["en"]["count"] == 1
    assert set(tm.scores_by_language([EN], [[EN]], ["en"])) == {"all"}  # one language: no split
    unknown = tm.scores_by_language([ZH, "4"], [[ZH], ["4"]], ["zh", None])
    assert unknown["all"]["count"] == 2 and unknown["zh"]["count"] == 1 and "en" not in unknown


def test_answers_and_references_must_pair_up():
    with pytest.raises(ValueError, match="as many answers as references"):
        tm.corpus_scores(["a"], [["a"], ["b"]])
