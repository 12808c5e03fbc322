"""Text-overlap metrics of answers against reference answers, for English and Chinese alike.

- BLEU and chrF from sacrebleu (corpus level). BLEU uses sacrebleu's `zh` tokenizer when a
  reference holds CJK characters (each character a token, as for Chinese MT), else `13a`; chrF
  counts character n-grams and needs no tokenizer.
- ROUGE-L F1 from rouge-score, with a tokenizer that keeps CJK characters (one token each):
  rouge-score's default keeps only [a-z0-9], so every Chinese answer would score 0.
- Exact match after normalisation (NFKC, case, whitespace, final punctuation).

Every figure is 0-100. All are computed from the raw answers the report keeps beside them.
"""

import re
import unicodedata

from xtuner_recipe import scoring

# CJK ideographs (with extension A and compatibility forms), kana and hangul: scripts written
# without spaces between words.
CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
WORD = re.compile(r"[a-z0-9]+")
FINAL_PUNCTUATION = ".!?。！？…"


def has_cjk(text):
    return CJK.search(text or "") is not None


def language(text):
    """'zh' for text with CJK characters, else 'en': the two languages the samples use."""
    return "zh" if has_cjk(text) else "en"


def normalise(text):
    """scoring.normalise (NFKC, case-folded, whitespace collapsed), final punctuation dropped."""
    return scoring.normalise(text).rstrip(FINAL_PUNCTUATION + " ")


class RougeTokenizer:
    """rouge-score's tokenizer interface: lower-cased [a-z0-9]+ words and single CJK characters,
    in text order (NFKC first, so full-width digits count as digits)."""

    def tokenize(self, text):
        text = unicodedata.normalize("NFKC", text or "").casefold()
        return [m.group(0) for m in re.finditer(CJK.pattern + r"|[a-z0-9]+", text)]


def exact_match(answer, reference):
    return normalise(answer) == normalise(reference)


def rouge_l(answer, reference):
    """ROUGE-L F1 of one answer, 0-100."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=RougeTokenizer())
    return 100 * scorer.score(reference, answer)["rougeL"].fmeasure


def chrf(answer, reference):
    """Sentence-level chrF of one answer, 0-100 (for the side-by-side table)."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(answer, [reference]).score


def bleu_tokenizer(references):
    return "zh" if any(has_cjk(r) for r in references) else "13a"


def corpus_scores(answers, references):
    """BLEU, chrF, mean ROUGE-L F1 and exact-match share (0-100) of answers against references,
    item i against reference i."""
    from sacrebleu.metrics import BLEU, CHRF

    if len(answers) != len(references) or not answers:
        raise ValueError(f"need as many answers as references, at least one "
                         f"(got {len(answers)} and {len(references)})")
    answers = [a or "" for a in answers]
    bleu = BLEU(tokenize=bleu_tokenizer(references), effective_order=True)
    return {
        "bleu": round(bleu.corpus_score(answers, [references]).score, 2),
        "chrf": round(CHRF().corpus_score(answers, [references]).score, 2),
        "rouge_l": round(sum(map(rouge_l, answers, references)) / len(answers), 2),
        "exact_match": round(100 * sum(map(exact_match, answers, references)) / len(answers), 2),
        "count": len(answers),
    }


def scores_by_language(answers, references):
    """corpus_scores for all items and for each reference language ('en', 'zh') present."""
    result = {"all": corpus_scores(answers, references)}
    for lang in sorted({language(r) for r in references}):
        pairs = [(a, r) for a, r in zip(answers, references) if language(r) == lang]
        if len(pairs) < len(references):
            result[lang] = corpus_scores(*map(list, zip(*pairs)))
    return result
