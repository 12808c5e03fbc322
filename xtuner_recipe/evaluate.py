"""Ask the base model and the merged model the same prompts and score the answers.

    python -m xtuner_recipe.evaluate --settings settings/evaluate.json --merged MODEL
        --dataset assistant.json --out answers.json

Prompts are wrapped in the same xtuner prompt template the model was trained with, decoded
greedily, and cut at the template's stop words. An answer "states the identity" when it contains
the owner's name.
"""

import argparse
import json
import time
from pathlib import Path

from xtuner_recipe import use_runtime_env
from xtuner_recipe.messages import log
from xtuner_recipe.settings import read_stage

TRAIN_PROMPTS_SHOWN = 20
# An identity counts as learned when at least this share of answers states it, and as absent
# (the base model, before training) when at most this share does.
IDENTITY_LEARNED = 0.9
IDENTITY_ABSENT = 0.1


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


def states_identity(answer, name):
    return name.casefold() in answer.casefold()


def identity_score(answers, name):
    return sum(states_identity(a, name) for a in answers) / len(answers) if answers else 0.0


def build_prompt(template_name, system, prompt):
    from xtuner.utils import PROMPT_TEMPLATE

    template = PROMPT_TEMPLATE[template_name]
    text = template.get("SYSTEM", "{system}").format(system=system) if system else ""
    return text + template["INSTRUCTION"].format(input=prompt, round=1)


class Chat:
    def __init__(self, path, template_name, system, max_new_tokens):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from xtuner.utils import PROMPT_TEMPLATE

        self.torch = torch
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=True, torch_dtype=dtype).to(self.device).eval()
        self.template_name, self.system = template_name, system
        self.stop_words = PROMPT_TEMPLATE[template_name].get("STOP_WORDS", [])
        stop_ids = [self.tokenizer.convert_tokens_to_ids(w) for w in self.stop_words]
        self.eos = [i for i in [self.tokenizer.eos_token_id, *stop_ids]
                    if isinstance(i, int) and i != self.tokenizer.unk_token_id]
        self.max_new_tokens = max_new_tokens

    def answer(self, prompt):
        text = build_prompt(self.template_name, self.system, prompt)
        inputs = self.tokenizer(text, return_tensors="pt").to(self.device)
        with self.torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=False,
                eos_token_id=self.eos, pad_token_id=self.tokenizer.pad_token_id
                if self.tokenizer.pad_token_id is not None else self.eos[0])
        reply = self.tokenizer.decode(output[0, inputs["input_ids"].shape[1]:],
                                      skip_special_tokens=False)
        for word in [*self.stop_words, self.tokenizer.eos_token]:
            if word:
                reply = reply.split(word)[0]
        return reply.strip()


def evaluate(model_path, prompts, template, system, max_new_tokens):
    chat = Chat(model_path, template, system, max_new_tokens)
    started = time.time()
    answers = {group: [chat.answer(p) for p in group_prompts]
               for group, group_prompts in prompts.items()}
    return answers, time.time() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True, help="settings/evaluate.json")
    parser.add_argument("--merged", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    use_runtime_env()
    run = read_stage(args.settings, "evaluate")
    prompts = {"training": training_prompts(args.dataset),
               "heldout": run.heldout_identity_prompts, "general": run.general_prompts}
    result = {"name": run.name, "prompt_template": run.prompt_template, "groups": {}}
    answers = {}
    for model, path in (("base", run.base_model), ("merged", args.merged)):
        answers[model], seconds = evaluate(path, prompts, run.prompt_template, run.system,
                                           run.max_new_tokens)
        result[f"{model}_generation_s"] = round(seconds, 1)
    for group, group_prompts in prompts.items():
        result["groups"][group] = {
            "prompts": [
                {"prompt": p, "base": answers["base"][group][i],
                 "merged": answers["merged"][group][i],
                 "base_states_identity": states_identity(answers["base"][group][i], run.name),
                 "merged_states_identity": states_identity(answers["merged"][group][i],
                                                           run.name)}
                for i, p in enumerate(group_prompts)],
            "identity_score_base": identity_score(answers["base"][group], run.name),
            "identity_score_merged": identity_score(answers["merged"][group], run.name),
        }
    Path(args.out).write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    for group, data in result["groups"].items():
        log(f"identity score, {group} prompts: base {data['identity_score_base']:.2f} -> "
            f"merged {data['identity_score_merged']:.2f}")


if __name__ == "__main__":
    main()
