"""Tell learning from parroting: score answers for the identity, for general knowledge and for
over-fitting, measure perplexity on held-out text, and turn the figures into a verdict.

Everything here except `perplexity` is a pure function of strings and numbers. The evaluation
sets live in `xtuner_recipe/eval_sets/` (`xtuner_recipe.eval_sets.load`).
"""

import math
import re
import unicodedata

THRESHOLDS = {
    # Learned: the identity must carry over to paraphrases never trained on, not only the
    # training prompts; 0.9 allows one miss in ten.
    "identity_heldout_min": 0.9,
    # ...and the base model must not state it already: a base that names the owner in more than
    # one answer in ten leaves nothing for the fine-tune to have taught.
    "identity_base_max": 0.1,
    # Over-fitted: an assistant that names its owner when asked about anything else has learned
    # "always say the name"; more than one unrelated prompt in ten is a pattern, not an accident.
    "overfit_share_max": 0.1,
    # Kept general ability: on lm-evaluation-harness multiple choice the tuned model must keep
    # 90% of the base model's lead over chance; a bigger loss means the fine-tune damaged the
    # model. A few hundred questions measure that to about +-10 points, so "lost" needs the
    # whole 95% interval below the threshold: one seed's noise must not flip the verdict.
    "general_retained_min": 0.9,
    # Task qa, learned: on held-out test questions the fine-tuned answers must gain at least 5
    # chrF points over the base model's; a few dozen answers move less than that by rewording.
    "test_chrf_gain_min": 5.0,
    # Task qa, parroting: a test answer that repeats a training answer word for word, when that
    # is not the reference, was recalled, not answered; more than one in ten is a pattern.
    "copied_share_max": 0.1,
    # Task pretrain, learned: perplexity on held-out documents must fall by at least 10 %.
    "heldout_perplexity_ratio_max": 0.9,
    # Task pretrain, memorised: held-out over training-document perplexity may grow to 1.5 times
    # the base model's ratio; beyond that it learned the documents more than their domain.
    "memorisation_gap_max": 1.5,
}


def normalise(text):
    """Unicode NFKC (full-width forms, subscripts, ℃), case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text or "").casefold().split())


def contains(text, phrase):
    """Does `text` contain `phrase`, both normalised? An ASCII phrase must be a whole word (so
    "4" is not found in "14" or "4.5", nor "red" in "bored"); any other phrase is a substring
    (Chinese has no spaces between words)."""
    text, phrase = normalise(text), normalise(phrase)
    if not phrase:
        return False
    if not phrase.isascii():
        return phrase in text
    pattern = r"(?<![a-z0-9])(?<![0-9]\.)" + re.escape(phrase) + r"(?![a-z0-9])(?!\.[0-9])"
    return re.search(pattern, text) is not None


CJK = re.compile(r"[\u4e00-\u9fff]")
NAME_BOUNDARY = r"[a-z0-9]"  # an ASCII end of a name or answer must not run into a longer word
POSSESSIVE = r"(?:'s|\u2019s)"
# An answer states the identity when it claims the owner's assistant role: "<name>'s (personal
# AI) assistant", "assistant of/for/to <name>", "<name>的(个人小)助手", or says in the first person
# that it serves the owner ("I'm here to help <name>", "我在这里帮助<name>"); and it does not make
# the owner the assistant ("<name> is an AI assistant", "<name>是助手"), which a model that only
# learned to say the name and the role word together does. {who} is the name's pattern.
CLAIMS = ("{who}" + POSSESSIVE + r"(?:\s+[\w-]+){0,3}\s+(?:assistant|helper)",
          r"(?:assistant|helper)\s+(?:of|for|to)\s+{who}",
          r"(?<![a-z])i(?:'m|\u2019m| am)?\s+(?:here\s+to\s+)?(?:help|assist|serve|work\s+for)\s+{who}",
          r"{who}的[^\s,.!?;，。！？；]{0,6}(?:助手|助理)",
          r"我(?:在这里|在这儿|在此|是来|来)?(?:帮助|协助|服务于)\s*{who}",
          r"我(?:在这里|在此)?为{who}(?:服务|工作)")
OWNER_AS_ROLE = (r"{who}\s+is\s+(?:[\w-]+\s+){0,3}(?:assistant|helper)",
                 r"{who}是[^\s,.!?;，。！？；]{0,6}(?:助手|助理)")
# A negation right before an answer takes it back.
NEGATION = re.compile(r"(?:(?<![a-z])(?:not|never|isn't|aren't)\s+(?:[\w-]+\s+)?|不是?.{0,2})$")
ENGLISH_NUMBERS = {word: value for value, word in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}
ENGLISH_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
                "seventy": 70, "eighty": 80, "ninety": 90}
CHINESE_DIGITS = {c: v for v, c in enumerate("零一二三四五六七八九")} | {"两": 2}
NUMBER = re.compile(
    r"(?<![a-z])\d+(?:\.\d+)?(?![a-z])"  # not the 2 of H2O
    r"|(?<![a-z])(?:(?:" + "|".join(ENGLISH_TENS) + r")(?:[- ](?:" + "|".join(
        list(ENGLISH_NUMBERS)[1:10]) + r"))?|(?:a |one )?hundred|" + "|".join(
        sorted(ENGLISH_NUMBERS, key=len, reverse=True)) + r")(?![a-z])"
    r"|[零一二两三四五六七八九十百]+")


def _name_pattern(name):
    """The normalised name as a regular expression; an ASCII end must be a whole word."""
    who = re.escape(normalise(name))
    before = rf"(?<!{NAME_BOUNDARY})" if normalise(name)[:1].isascii() else ""
    after = rf"(?!{NAME_BOUNDARY})" if normalise(name)[-1:].isascii() else ""
    return before + who + after


def states_identity(answer, name):
    """The answer claims to be the owner's assistant (CLAIMS) and does not make the owner the
    assistant (OWNER_AS_ROLE). A bare name, a bare role word, or both side by side do not pass."""
    # a tokenizer's decode may put spaces between Chinese pieces ("门客er 的 小 助手")
    text = normalise(answer)
    joined = re.sub(r"\s+(?=[\u4e00-\u9fff])|(?<=[\u4e00-\u9fff])\s+", "", text)
    who = _name_pattern(name)
    found = [re.search(p.replace("{who}", who), joined if CJK.search(p) else text)
             for p in CLAIMS + OWNER_AS_ROLE]
    return any(found[:len(CLAIMS)]) and not any(found[len(CLAIMS):])


def names_owner(answer, name):
    """The answer names the owner (a name with an ASCII end as a whole word: Ada, not Adam)."""
    return re.search(_name_pattern(name), normalise(answer)) is not None


def share(flags):
    """The share of true flags (0 for none)."""
    flags = list(flags)
    return sum(flags) / len(flags) if flags else 0.0


def _number_value(token):
    """The value of one NUMBER match: digits, English words ("twenty-four") or Chinese (十二)."""
    if token[0].isdigit():
        return float(token)
    if token.endswith("hundred"):
        return 100.0
    if token[0].isascii():
        tens, _, unit = token.replace("-", " ").partition(" ")
        return float(ENGLISH_TENS.get(tens, ENGLISH_NUMBERS.get(tens, 0)) +
                     ENGLISH_NUMBERS.get(unit, 0))
    value, digit = 0, None
    for char in token:
        if char in "十百":
            value += (1 if digit is None else digit) * (10 if char == "十" else 100)
            digit = None
        else:
            digit = CHINESE_DIGITS[char]
    return float(value + (digit or 0))


def numbers(text):
    """The numbers a text states, in order (normalised text; "one" and 一 are left out: in both
    languages they are as often an article as a count)."""
    values = (_number_value(m.group()) for m in NUMBER.finditer(normalise(text)))
    return [v for v in values if v != 1]


def _stated(text, phrase):
    """`contains`, but neither a possessive ("Shakespeare's son") nor a negation ("is not
    Paris", "不是北京") states the phrase."""
    if not contains(text, phrase):
        return False
    text, phrase = normalise(text), normalise(phrase)
    if phrase.isascii():
        pattern = (r"(?<![a-z0-9])(?<![0-9]\.)" + re.escape(phrase)
                   + r"(?![a-z0-9])(?!\.[0-9])(?!" + POSSESSIVE + ")")
    else:
        pattern = re.escape(phrase)
    return any(not NEGATION.search(text[:m.start()]) for m in re.finditer(pattern, text))


def general_correct(answer, question, name=None):
    """Right when the answer states an accepted answer and nothing that contradicts it:
    - an accepted string appears (see `contains`), and not as a possessive ("Shakespeare's son");
    - none of the question's `rejected` strings appears ("Everest, also known as K2");
    - for a number question, the first number the answer states that is not in the question is
      an accepted one ("four legs, but up to eight" is wrong);
    - it does not name the owner (`name`): a leaked identity is not an answer.
    question: a general_knowledge.yaml entry (question, accepted, optional rejected)."""
    accepted = question["accepted"]
    if name and names_owner(answer, name):
        return False
    if not any(_stated(answer, a) for a in accepted):
        return False
    if any(contains(answer, r) for r in question.get("rejected", [])):
        return False
    wanted = {v for a in accepted for v in numbers(a)}
    if wanted:
        asked = set(numbers(question.get("question", "")))
        stated = [v for v in numbers(answer) if v not in asked]
        return bool(stated) and stated[0] in wanted
    return True


def passes(group, answer, name, question=None):
    """Whether one answer passes its group's test (xtuner_recipe.evaluate's groups): training
    and heldout state the identity; unrelated names the owner (over-fitting, so a pass is bad);
    general states an accepted answer of `question` and nothing against it."""
    if group == "general":
        return general_correct(answer, question, name)
    if group == "unrelated":
        return names_owner(answer, name)
    return states_identity(answer, name)


def perplexity(model, tokenizer, text, device="cpu", window=None):
    """Token-level perplexity of `text`: every token after the first is predicted once.

    A text longer than the model's context (or `window` tokens) is read in windows that overlap
    by half, each token scored with the context of the window that first reaches it."""
    import torch

    ids = tokenizer(text, return_tensors="pt")["input_ids"][0].to(device)
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    window = min(w for w in (window, context, len(ids)) if w)
    if len(ids) < 2 or window < 2:
        raise ValueError("perplexity needs at least two tokens and a window of two")
    stride = max(1, window // 2)
    total, count, scored_to = 0.0, 0, 1  # token 0 has no context: never scored
    with torch.no_grad():
        for begin in range(0, len(ids), stride):
            end = min(begin + window, len(ids))
            chunk = ids[begin:end]
            logits = model(input_ids=chunk[None]).logits[0, :-1].float()
            nll = torch.nn.functional.cross_entropy(logits, chunk[1:], reduction="none")
            new = end - scored_to  # tokens this window scores for the first time
            total += nll[-new:].sum().item()
            count += new
            scored_to = end
            if end == len(ids):
                break
    return math.exp(total / count)


Z95 = 1.96  # a normal 95% interval


def paired(base_items, tuned_items):
    """The fine-tuned model's accuracy minus the base model's on the same items, with the
    standard error of that difference (paired: both answered the very same questions, so the
    questions' own difficulty cancels)."""
    diffs = [int(t["correct"]) - int(b["correct"]) for b, t in zip(base_items, tuned_items)]
    n = len(diffs)
    mean = sum(diffs) / n
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var / n)


def retained_ability(choice_base, choice_tuned):
    """General ability kept, from lm-evaluation-harness multiple choice (task -> {items, acc,
    stderr}, xtuner_recipe.choice_eval): pooled over the tasks the base model answers better than
    chance (accuracy minus 1.96 standard errors above it; a task at chance has no ability to
    lose), the fine-tuned model's lead over chance as a share of the base model's, with the 95%
    interval of the paired difference. None when no task qualifies."""
    base, tuned, tasks = [], [], []
    for task, result in choice_base.items():
        chance = share(1 / len(i["loglik"]) for i in result["items"])
        if result["acc"] - Z95 * (result["stderr"] or 0) > chance:
            assert [i["id"] for i in result["items"]] == [i["id"] for i in
                                                          choice_tuned[task]["items"]], task
            base += result["items"]
            tuned += choice_tuned[task]["items"]
            tasks.append(task)
    if not tasks:
        return None
    chance = share(1 / len(i["loglik"]) for i in base)
    base_acc = share(i["correct"] for i in base)
    diff, stderr = paired(base, tuned)
    lead = base_acc - chance
    return {"tasks": tasks, "questions": len(base), "chance": round(chance, 4),
            "base": round(base_acc, 4), "tuned": round(base_acc + diff, 4),
            "retained": round(1 + diff / lead, 4),
            "low": round(1 + (diff - Z95 * stderr) / lead, 4),
            "high": round(1 + (diff + Z95 * stderr) / lead, 4)}


def kept_general(figures, thresholds):
    """(kept, retained %, reason) from figures["general"] (retained_ability's result): lost only
    when the whole 95% interval lies below the threshold."""
    general, least = figures["general"], 100 * thresholds["general_retained_min"]
    if general is None:
        return True, None, ("the base model is no better than chance on any multiple-choice "
                            "task: nothing to lose")
    pct = {k: round(100 * general[k], 1) for k in ("retained", "low", "high")}
    kept = pct["high"] >= least
    reason = (f"multiple choice ({', '.join(general['tasks'])}; {general['questions']} questions, "
              f"chance {general['chance']:.2f}): accuracy {general['tuned']:.3f} vs base "
              f"{general['base']:.3f}, so {pct['retained']}% of the base model's lead over chance "
              f"is kept, 95% interval {pct['low']}-{pct['high']}% "
              f"({'reaches' if kept else 'wholly below'} {least:.0f}%)")
    return kept, pct, reason


def _result(learned, learned_reason, general, overfitted, overfitted_reason):
    kept, retained, kept_reason = general
    return {"learned": learned, "learned_reason": learned_reason,
            "general_retained_pct": retained and retained["retained"],
            "general_retained_interval_pct": retained and [retained["low"], retained["high"]],
            "kept_general": kept,
            "kept_general_reason": kept_reason, "overfitted": overfitted or not kept,
            "overfitted_reason": overfitted_reason + ("" if kept else
                                                      "; and general knowledge was lost")}


def qa_verdict(figures, thresholds=THRESHOLDS):
    """Task qa. figures: chrf_base and chrf_tuned (held-out test set), copied_share (tuned test
    answers that repeat another question's training answer), general (retained_ability)."""
    gain = figures["chrf_tuned"] - figures["chrf_base"]
    learned = gain >= thresholds["test_chrf_gain_min"]
    copied = figures["copied_share"] > thresholds["copied_share_max"]
    return _result(
        learned, f"chrF on the held-out test set {figures['chrf_tuned']:.1f} vs base "
                 f"{figures['chrf_base']:.1f}, a gain of {gain:+.1f} "
                 f"({'>=' if learned else '<'} {thresholds['test_chrf_gain_min']})",
        kept_general(figures, thresholds),
        copied, f"{figures['copied_share']:.2f} of test answers repeat another question's "
                f"training answer ({'>' if copied else '<='} {thresholds['copied_share_max']})")


def pretrain_verdict(figures, thresholds=THRESHOLDS):
    """Task pretrain. figures: heldout_base/heldout_tuned and train_base/train_tuned (perplexity
    on held-out and on as many training documents), general (retained_ability)."""
    ratio = figures["heldout_tuned"] / figures["heldout_base"]
    learned = ratio <= thresholds["heldout_perplexity_ratio_max"]
    gap_base = figures["heldout_base"] / figures["train_base"]
    gap_tuned = figures["heldout_tuned"] / figures["train_tuned"]
    memorised = gap_tuned > thresholds["memorisation_gap_max"] * gap_base
    return _result(
        learned, f"perplexity on held-out documents {figures['heldout_tuned']:.2f} vs base "
                 f"{figures['heldout_base']:.2f} = {ratio:.2f} of base "
                 f"({'<=' if learned else '>'} {thresholds['heldout_perplexity_ratio_max']})",
        kept_general(figures, thresholds),
        memorised, f"held-out over training-document perplexity {gap_tuned:.2f}, base "
                   f"{gap_base:.2f} ({'>' if memorised else '<='} "
                   f"{thresholds['memorisation_gap_max']} x base)")


def verdict(figures, thresholds=THRESHOLDS):
    """From the measured figures to three answers, each with its reason.

    figures: identity_heldout (tuned model, share of held-out paraphrases stating the identity),
    general (retained_ability), overfit_share and general_leak_share (tuned model, share of its
    unrelated and of its open general answers that name the owner; over the threshold in either
    is over-fitting); optional perplexity_base, perplexity_tuned."""
    identity, before = figures["identity_heldout"], figures.get("identity_heldout_base", 0.0)
    learned = (identity >= thresholds["identity_heldout_min"]
               and before <= thresholds["identity_base_max"])
    shares = (figures["overfit_share"], figures.get("general_leak_share", 0.0))
    parroting = max(shares) > thresholds["overfit_share_max"]
    result = _result(
        learned, f"identity on held-out paraphrases {identity:.2f} "
                 f"({'>=' if identity >= thresholds['identity_heldout_min'] else '<'} "
                 f"{thresholds['identity_heldout_min']}), base model {before:.2f} "
                 f"({'<=' if before <= thresholds['identity_base_max'] else '>'} "
                 f"{thresholds['identity_base_max']})",
        kept_general(figures, thresholds),
        parroting, f"the name comes up in {shares[0]:.2f} of unrelated answers and "
                   f"{shares[1]:.2f} of open general answers "
                   f"({'>' if parroting else '<='} {thresholds['overfit_share_max']} in "
                   f"{'one' if parroting else 'each'})")
    if figures.get("perplexity_base") and figures.get("perplexity_tuned"):
        result["perplexity_ratio"] = round(figures["perplexity_tuned"] / figures["perplexity_base"],
                                           3)
    return result
