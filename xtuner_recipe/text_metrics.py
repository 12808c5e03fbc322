"""Text-overlap metrics of answers against reference answers, for English and Chinese alike.

- BLEU and chrF from sacrebleu (corpus level). BLEU uses sacrebleu's `zh` tokenizer when a
  reference holds CJK characters (each character a token, as for Chinese MT), else `13a`; chrF
  counts character n-grams and needs no tokenizer.
- ROUGE-L F1 from rouge-score, with a tokenizer that keeps CJK characters (one token each):
  rouge-score's default keeps only [a-z0-9], so every Chinese answer would score 0.
- Exact match after normalisation (`normalise`: NFKC, case, spacing, punctuation variants).

A test question may have several reference answers (it occurs more than once in the test data,
with different answers): BLEU and chrF take them all, ROUGE-L and exact match the best of them.
Every figure is 0-100. All are computed from the raw answers the report keeps beside them.
"""

import re
import unicodedata

from xtuner_recipe import scoring

# CJK ideographs (with extension A and compatibility forms), kana and hangul: scripts written
# without spaces between words.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
FINAL_PUNCTUATION = ".!?"
# CJK punctuation that NFKC keeps, as the ASCII form NFKC gives its full-width variants (？ -> ?).
PUNCTUATION_VARIANTS = str.maketrans({"。": ".", "、": ",", "“": '"', "”": '"', "‘": "'", "’": "'",
                                      "「": '"', "」": '"', "『": '"', "』": '"', "【": "[",
                                      "】": "]", "《": "<", "》": ">", "—": "-", "–": "-"})
SPACE_BESIDE_CJK = re.compile(rf" (?={CJK.pattern})|(?<={CJK.pattern}) ")


def has_cjk(text):
    return CJK.search(text or "") is not None


def language(*texts):
    """'zh' or 'en' (the two languages the samples use) of the first text that holds letters:
    'zh' when it has CJK characters; None when none does (a number such as '48' is no language,
    so a test item's question decides)."""
    for text in texts:
        if has_cjk(text):
            return "zh"
        if any(c.isalpha() for c in text or ""):
            return "en"
    return None


def normalise(text):
    """What makes two texts the same question or answer: scoring.normalise (NFKC, case-folded,
    whitespace collapsed), CJK punctuation as its ASCII variant, no space beside a CJK character
    (Chinese has no spaces between words: '孕妇 可以' is '孕妇可以', and an in-cell line break in
    '；\\n如' is no word break), final punctuation dropped."""
    text = scoring.normalise(text).translate(PUNCTUATION_VARIANTS)
    return SPACE_BESIDE_CJK.sub("", text).rstrip(FINAL_PUNCTUATION + " ")


class RougeTokenizer:
    """rouge-score's tokenizer interface: lower-cased [a-z0-9]+ words and single CJK characters,
    in text order (NFKC first, so full-width digits count as digits)."""

    def tokenize(self, text):
        text = unicodedata.normalize("NFKC", text or "").casefold()
        return [m.group(0) for m in re.finditer(CJK.pattern + r"|[a-z0-9]+", text)]


def exact_match(answer, references):
    """Does the answer equal one of the reference answers, all normalised?"""
    return normalise(answer) in {normalise(r) for r in references}


def rouge_l(answer, references):
    """ROUGE-L F1 of one answer against the closest of its reference answers, 0-100."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=RougeTokenizer())
    return 100 * max(scorer.score(r, answer)["rougeL"].fmeasure for r in references)


def chrf(answer, references):
    """Sentence-level chrF of one answer against its reference answers (sacrebleu keeps the
    best), 0-100 (for the side-by-side table)."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(answer, references).score


def bleu_tokenizer(references):
    return "zh" if any(has_cjk(r) for refs in references for r in refs) else "13a"


def corpus_scores(answers, references):
    """BLEU, chrF, mean ROUGE-L F1 and exact-match share (0-100) of answers against references:
    item i against references[i], the list of its reference answers."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(answers) != len(references) or not answers:
        raise ValueError(f"need as many answers as references, at least one "
                         f"(got {len(answers)} and {len(references)})")
    answers = [a or "" for a in answers]
    # sacrebleu's references: the k-th reference of every item, None where an item has fewer.
    streams = [[refs[k] if k < len(refs) else None for refs in references]
               for k in range(max(map(len, references)))]
    bleu = BLEU(tokenize=bleu_tokenizer(references), effective_order=True)
    return {
        "bleu": round(bleu.corpus_score(answers, streams).score, 2),
        "chrf": round(CHRF().corpus_score(answers, streams).score, 2),
        "rouge_l": round(sum(map(rouge_l, answers, references)) / len(answers), 2),
        "exact_match": round(100 * sum(map(exact_match, answers, references)) / len(answers), 2),
        "count": len(answers),
        "references": sum(map(len, references)),
    }


def scores_by_language(answers, references, languages):
    """corpus_scores for all items and for each language ('en', 'zh') present when there are
    several; an item whose language is None counts in 'all' only."""
    result = {"all": corpus_scores(answers, references)}
    for lang in sorted({lang for lang in languages if lang}):
        picked = [i for i, item_lang in enumerate(languages) if item_lang == lang]
        if len(picked) < len(answers):
            result[lang] = corpus_scores([answers[i] for i in picked],
                                         [references[i] for i in picked])
    return result
