"""Ask the base model and the merged model the same questions, and keep every raw answer.

    python -m xtuner_recipe.evaluate --settings settings/evaluate.json --merged MODEL
        --dataset assistant.json --out answers.json

Four groups of prompts, each answered greedily in the prompt template the model was trained with
(xtuner_recipe.chat), each answer judged by xtuner_recipe.scoring:
- training: the identity questions trained on (does the answer state the identity?);
- heldout: paraphrases of them never trained on (learning, not parroting);
- unrelated: everyday prompts (does the answer bring up the owner? over-fitting);
- general: general-knowledge questions with known answers (is the answer right?).
Plus the perplexity of both models on a held-out general text.

That is task identity. Task qa asks the held-out test split of the user's data instead (with its
earlier turns, for multi-turn records) and scores each answer against the reference answer
(xtuner_recipe.text_metrics); task pretrain measures perplexity on held-out and on training
documents, and lets both models continue the opening of held-out documents. Both also ask the
general-knowledge questions: a fine-tune that damages the model shows there.
"""

import argparse
import json
import time
from pathlib import Path

from xtuner_recipe import choice_eval, preflight, scoring, text_metrics
from xtuner_recipe.messages import log, progress
from xtuner_recipe.settings import read_stage

TRAIN_PROMPTS_SHOWN = 20
# Short answers are enough to tell a right general-knowledge answer from a wrong one.
GENERAL_MAX_NEW_TOKENS = 32
# Task pretrain: how many held-out documents both models continue, from how many opening words.
CONTINUATIONS, OPENING_WORDS = 5, 12


def training_prompts(dataset_path, limit=TRAIN_PROMPTS_SHOWN):
    """The distinct first user turns of the training data, in order (at most `limit`)."""
    seen = []
    for record in read_records(dataset_path):
        prompt = preflight.record_turns(record)[0][1]
        if prompt not in seen:
            seen.append(prompt)
            if len(seen) == limit:
                break
    return seen


def evaluate(run, merged, dataset, test_set):
    if run.task == "qa":
        return evaluate_qa(run, merged, dataset, test_set)
    if run.task == "pretrain":
        return evaluate_pretrain(run, merged, dataset, test_set)
    training = run.training_prompts or training_prompts(dataset)
    prompts = {"training": training, "heldout": run.heldout_identity_prompts,
               "unrelated": run.unrelated_prompts}
    answers, general, perplexity, choice, seconds = {}, {}, {}, {}, {}
    for label, chat in models(run, merged):
        started = time.time()
        answers[label] = {group: chat.answers(texts, on_batch=answered(f"{label} model, {group}"))
                          for group, texts in prompts.items()}
        general[label], perplexity[label], choice[label] = ask_general(chat, run, label)
        seconds[label] = time.time() - started
        log(f"{label} model answered {sum(map(len, prompts.values())) + len(general[label])} "
            f"prompts in {seconds[label]:.0f} s")
    groups = {}
    for group, texts in prompts.items():
        items = [{"prompt": prompt, "base": answers["base"][group][i],
                  "merged": answers["merged"][group][i]} for i, prompt in enumerate(texts)]
        for item in items:
            for model in ("base", "merged"):
                item[f"{model}_pass"] = scoring.passes(group, item[model], run.name)
        groups[group] = judged(items)
    groups["general"] = general_group(run, general)
    return {"task": "identity", "name": run.name, "prompt_template": run.prompt_template,
            "system": run.system, "groups": groups, "perplexity": perplexity, "choice": choice,
            "generation_s": {m: round(s, 1) for m, s in seconds.items()}}


def read_records(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def judged(items):
    """A group: its items (each with base_pass and merged_pass) and each model's share passed."""
    return {"prompts": items, "base": scoring.share(i["base_pass"] for i in items),
            "merged": scoring.share(i["merged_pass"] for i in items)}


def general_group(run, answers):
    """The general-knowledge questions, each answer judged against its accepted answers."""
    items = []
    for question, base, merged in zip(run.general_knowledge, answers["base"], answers["merged"]):
        item = {"prompt": question["question"], "id": question["id"], "lang": question["lang"],
                "accepted": question["accepted"], "base": base, "merged": merged}
        for model in ("base", "merged"):
            item[f"{model}_pass"] = scoring.general_correct(item[model], question, run.name)
        items.append(item)
    return judged(items)


def test_items(records, limit):
    """(system, history, prompt, references) of the first `limit` distinct test questions: the
    last assistant turn is a reference answer, the turns before it the history. A question asked
    again (the same turns before the answer, normalised) adds its answer to the references."""
    items = {}
    for record in records:
        turns = preflight.record_turns(record)
        *earlier, (_, prompt, reference) = turns
        asked = tuple(map(text_metrics.normalise, [t for _, q, a in earlier for t in (q, a)]
                          + [prompt]))
        if asked not in items:
            if len(items) < limit:
                items[asked] = {"system": turns[0][0] or None, "prompt": prompt,
                                "history": [[q, a] for _, q, a in earlier],
                                "references": [reference]}
        elif not text_metrics.exact_match(reference, items[asked]["references"]):
            items[asked]["references"].append(reference)
    return list(items.values())


def models(run, merged):
    """(label, ChatModel) of the base model, then the fine-tuned one, loaded one at a time."""
    from xtuner_recipe.chat import ChatModel

    for label, path in (("base", run.base_model), ("merged", merged)):
        yield label, ChatModel(path, run.prompt_template, run.system, run.max_new_tokens)


def ask_general(chat, run, label):
    """What a fine-tune must not break: the answers to the open general-knowledge questions, the
    perplexity of the held-out general text, and the multiple-choice tasks of lm-evaluation-
    harness (xtuner_recipe.choice_eval), each task's accuracy with every item's choice."""
    chat.max_new_tokens = min(run.max_new_tokens, GENERAL_MAX_NEW_TOKENS)
    answers = chat.answers([q["question"] for q in run.general_knowledge],
                           on_batch=answered(f"{label} model, open general questions"))
    chat.max_new_tokens = run.max_new_tokens
    ppl = scoring.perplexity(chat.model, chat.tokenizer, run.heldout_text, chat.device)
    progress(f"evaluate: {label} model, multiple choice ({', '.join(run.harness_tasks)})")
    choice = choice_eval.evaluate(chat.model, chat.tokenizer, run.harness_tasks,
                                  run.harness_limit)
    for task, result in choice.items():
        progress(f"evaluate: {label} model, {task}: accuracy {result['acc']:.3f} "
                 f"± {result['stderr'] or 0:.3f} ({result['n']} questions)")
    return answers, ppl, choice


def answered(what):
    """A ChatModel batch callback that prints how many prompts are answered of how many."""
    return lambda done, total: progress(f"evaluate: {what}: {done}/{total} answered")


def copies_training_answer(answer, references, trained):
    """A training answer, word for word, that is none of this question's answers: recalled, not
    answered (`trained`: the normalised training answers)."""
    return (text_metrics.normalise(answer) in trained
            and not text_metrics.exact_match(answer, references))


def evaluate_qa(run, merged, dataset, test_set):
    from xtuner_recipe.chat import build_prompt

    records = read_records(test_set)
    items = test_items(records, run.max_test_items)
    trained = {text_metrics.normalise(preflight.record_turns(r)[-1][2])
               for r in read_records(dataset)}
    general, perplexity, choice, seconds = {}, {}, {}, {}
    for label, chat in models(run, merged):
        started = time.time()
        texts = [build_prompt(run.prompt_template, i["system"] or run.system, i["prompt"],
                              i["history"]) for i in items]
        for item, answer in zip(items, chat.complete(texts)):
            item[label] = answer
            item[f"{label}_scores"] = {
                "chrf": round(text_metrics.chrf(answer, item["references"]), 1),
                "rouge_l": round(text_metrics.rouge_l(answer, item["references"]), 1),
                "exact_match": text_metrics.exact_match(answer, item["references"])}
            item[f"{label}_copied"] = copies_training_answer(answer, item["references"], trained)
        general[label], perplexity[label], choice[label] = ask_general(chat, run, label)
        seconds[label] = time.time() - started
        log(f"{label} model answered {len(items)} test and {len(general[label])} general "
            f"questions in {seconds[label]:.0f} s")
    for item in items:  # a number-only answer ('48') is in its question's language
        item["lang"] = text_metrics.language(*item["references"], item["prompt"])
    references, languages = [i["references"] for i in items], [i["lang"] for i in items]
    test = {"prompts": items, "test_records": len(records)}
    for label in ("base", "merged"):
        test[label] = text_metrics.scores_by_language([i[label] for i in items], references,
                                                      languages)
        test[f"{label}_copied"] = scoring.share(i[f"{label}_copied"] for i in items)
    return {"task": "qa", "prompt_template": run.prompt_template, "system": run.system,
            "groups": {"test": test, "general": general_group(run, general)},
            "perplexity": perplexity, "choice": choice,
            "generation_s": {m: round(s, 1) for m, s in seconds.items()}}


def documents_text(records):
    return "\n\n".join(r["text"] for r in records)


def evaluate_pretrain(run, merged, dataset, test_set):
    heldout = read_records(test_set)[:run.max_test_items]
    trained = read_records(dataset)[:len(heldout)]  # as many training documents, to compare
    openings = [" ".join(d["text"].split()[:OPENING_WORDS]) if not text_metrics.has_cjk(d["text"])
                else d["text"][:OPENING_WORDS * 2] for d in heldout[:CONTINUATIONS]]
    domain = {"heldout": {}, "train": {}}
    general, perplexity, choice, continuations, seconds = {}, {}, {}, {}, {}
    for label, chat in models(run, merged):
        started = time.time()
        for part, docs in (("heldout", heldout), ("train", trained)):
            domain[part][label] = scoring.perplexity(chat.model, chat.tokenizer,
                                                     documents_text(docs), chat.device)
        continuations[label] = chat.complete(openings)  # plain text: no prompt template
        general[label], perplexity[label], choice[label] = ask_general(chat, run, label)
        seconds[label] = time.time() - started
        log(f"{label} model: held-out documents perplexity {domain['heldout'][label]:.2f}, "
            f"{seconds[label]:.0f} s")
    samples = [{"prompt": opening, "reference": doc["text"], "base": base, "merged": tuned}
               for opening, doc, base, tuned in zip(openings, heldout, continuations["base"],
                                                    continuations["merged"])]
    return {"task": "pretrain", "prompt_template": run.prompt_template, "system": run.system,
            "groups": {"general": general_group(run, general)},
            "documents": {"heldout": len(heldout), "train": len(trained)},
            "domain_perplexity": domain, "continuations": samples, "perplexity": perplexity,
            "choice": choice,
            "generation_s": {m: round(s, 1) for m, s in seconds.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="settings/evaluate.json")
    parser.add_argument("--merged", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--test-set", required=True, help="the held-out test records")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    run = read_stage(args.settings, "evaluate")
    result = evaluate(run, args.merged, args.dataset, args.test_set)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    for group, data in result["groups"].items():
        base, merged = (data[m]["all"]["chrf"] if group == "test" else data[m]
                        for m in ("base", "merged"))
        log(f"{group}{' chrF' if group == 'test' else ''}: base {base:.2f} -> merged {merged:.2f}")


if __name__ == "__main__":
    main()
