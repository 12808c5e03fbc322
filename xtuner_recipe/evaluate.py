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
"""

import argparse
import json
import time
from pathlib import Path

from xtuner_recipe import scoring
from xtuner_recipe.messages import log
from xtuner_recipe.settings import read_stage

TRAIN_PROMPTS_SHOWN = 20
# Short answers are enough to tell a right general-knowledge answer from a wrong one.
GENERAL_MAX_NEW_TOKENS = 32


def training_prompts(dataset_path, limit=TRAIN_PROMPTS_SHOWN):
    """The distinct first user turns of the training data, in order (at most `limit`)."""
    seen = []
    for record in json.loads(Path(dataset_path).read_text(encoding="utf-8")):
        if "conversation" in record:
            prompt = record["conversation"][0]["input"]
        else:
            prompt = next(m["content"] for m in record["messages"] if m["role"] == "user")
        if prompt not in seen:
            seen.append(prompt)
            if len(seen) == limit:
                break
    return seen


def ask(model_path, run, prompts):
    """One model's answers to every group, its perplexity, and the seconds it took."""
    from xtuner_recipe.chat import ChatModel

    started = time.time()
    chat = ChatModel(model_path, run.prompt_template, run.system, run.max_new_tokens)
    answers = {group: chat.answers(texts) for group, texts in prompts.items()
               if group != "general"}
    chat.max_new_tokens = min(run.max_new_tokens, GENERAL_MAX_NEW_TOKENS)
    answers["general"] = chat.answers(prompts["general"])
    perplexity = scoring.perplexity(chat.model, chat.tokenizer, run.heldout_text, chat.device)
    return answers, perplexity, time.time() - started


def evaluate(run, merged, dataset):
    training = run.training_prompts or training_prompts(dataset)
    prompts = {"training": training, "heldout": run.heldout_identity_prompts,
               "unrelated": run.unrelated_prompts,
               "general": [q["question"] for q in run.general_knowledge]}
    answers, perplexity, seconds = {}, {}, {}
    for model, path in (("base", run.base_model), ("merged", merged)):
        answers[model], perplexity[model], seconds[model] = ask(path, run, prompts)
        log(f"{model} model answered {sum(map(len, prompts.values()))} prompts "
            f"in {seconds[model]:.0f} s")
    questions = {"general": run.general_knowledge}
    groups = {}
    for group, texts in prompts.items():
        items = []
        for i, prompt in enumerate(texts):
            question = questions.get(group, [None] * len(texts))[i]
            item = {"prompt": prompt}
            if question:
                item.update(id=question["id"], lang=question["lang"],
                            accepted=question["accepted"])
            for model in ("base", "merged"):
                item[model] = answers[model][group][i]
                item[f"{model}_pass"] = scoring.passes(group, item[model], run.name, question)
            items.append(item)
        groups[group] = {
            "prompts": items,
            "base": scoring.share(i["base_pass"] for i in items),
            "merged": scoring.share(i["merged_pass"] for i in items),
        }
    return {"name": run.name, "prompt_template": run.prompt_template, "system": run.system,
            "groups": groups, "perplexity": perplexity,
            "generation_s": {m: round(s, 1) for m, s in seconds.items()}}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="settings/evaluate.json")
    parser.add_argument("--merged", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    run = read_stage(args.settings, "evaluate")
    result = evaluate(run, args.merged, args.dataset)
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    for group, data in result["groups"].items():
        log(f"{group}: base {data['base']:.2f} -> merged {data['merged']:.2f}")


if __name__ == "__main__":
    main()
