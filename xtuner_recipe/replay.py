"""Replay data: the base model's own answers to general prompts, to mix into the training data.

    python -m xtuner_recipe.replay --settings base_model/settings/replay-<model>.json --out FILE

Mixed into the identity pairs (assistant.replay), these pairs keep the fine-tune close to what
the model already did on everything else, so it learns its identity without learning to say it
to every prompt. Answers are greedy, in the prompt template the model is trained with
(xtuner_recipe.chat). The output is a list of {"input", "output"} pairs, in no record format:
the data rule writes them in the run's format.
"""

import argparse
import json
import time
from pathlib import Path

from xtuner_recipe.messages import log
from xtuner_recipe.settings import read_stage


def replay_pairs(prompts, answers):
    """One pair per prompt whose answer is not empty."""
    return [{"input": p, "output": a.strip()} for p, a in zip(prompts, answers)
            if a and a.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    from xtuner_recipe.chat import ChatModel

    run = read_stage(args.settings, "replay")
    started = time.time()
    chat = ChatModel(run.model_path, run.prompt_template, run.system, run.max_new_tokens)
    pairs = replay_pairs(run.prompts, chat.answers(run.prompts))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(pairs, indent=2, ensure_ascii=False) + "\n",
                              encoding="utf-8")
    log(f"{args.out}: {len(pairs)} replay pairs from {len(run.prompts)} prompts "
        f"({len(run.prompts) - len(pairs)} empty answers skipped), {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
