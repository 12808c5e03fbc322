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
    assert 0 < tm.rouge_l(partial, ZH) < 100
    assert tm.rouge_l(ZH, ZH) == 100
    assert tm.rouge_l("我不知道。", ZH) == 0
    assert tm.RougeTokenizer().tokenize("Ｏｏｌｏｎｇ 乌龙 48元") == ["oolong", "乌", "龙", "48", "元"]


def test_bleu_uses_the_chinese_tokenizer_for_chinese_references():
    assert tm.bleu_tokenizer([EN]) == "13a"
    assert tm.bleu_tokenizer([EN, ZH]) == "zh"
    close = tm.corpus_scores(["云雾乌龙每100克52元。"], [ZH])
    assert 0 < close["bleu"] < 100 and 0 < close["chrf"] < 100


def test_perfect_answers_score_100_and_unrelated_ones_near_0():
    assert tm.corpus_scores([ZH, EN], [ZH, EN]) == {
        "bleu": 100.0, "chrf": 100.0, "rouge_l": 100.0, "exact_match": 100.0, "count": 2}
    wrong = tm.corpus_scores(["我不知道。", "I do not know."], [ZH, EN])
    assert wrong["bleu"] < 5 and wrong["chrf"] < 10 and wrong["rouge_l"] == wrong["exact_match"] == 0


def test_overlap_alone_rewards_a_parrots_form_exact_match_does_not():
    """A model that answers every question with one learned sentence keeps the sentence's form,
    so BLEU stays high on templated answers; exact match (and the report's copied-answer share,
    xtuner_recipe.evaluate.copies_training_answer) is what exposes it."""
    references = [f"Tea {i} costs {10 * i} yuan per 100 g." for i in range(1, 9)]
    parrot = tm.corpus_scores([references[0]] * 8, references)
    assert parrot["exact_match"] == 12.5 and parrot["bleu"] > 30


def test_exact_match_ignores_case_width_spacing_and_final_punctuation():
    assert tm.exact_match("cloud mist oolong costs 48 yuan per 100 g", EN)
    assert tm.exact_match("云雾乌龙每１００克４８元", ZH)  # full-width digits, no final stop
    assert not tm.exact_match("云雾乌龙每100克52元。", ZH)


def test_scores_by_language_splits_a_mixed_test_set():
    scores = tm.scores_by_language([ZH, "wrong"], [ZH, EN])
    assert scores["zh"]["exact_match"] == 100 and scores["en"]["exact_match"] == 0
    assert scores["all"]["count"] == 2 and scores["zh"]["count"] == scores["en"]["count"] == 1
    assert set(tm.scores_by_language([EN], [EN])) == {"all"}  # one language: no split


def test_answers_and_references_must_pair_up():
    with pytest.raises(ValueError, match="as many answers as references"):
        tm.corpus_scores(["a"], ["a", "b"])
