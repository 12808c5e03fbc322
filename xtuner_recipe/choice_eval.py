"""General ability measured the way the field does: EleutherAI's lm-evaluation-harness, as a
library, on log-likelihood multiple choice. The model scores each choice as the continuation of
the question and its most likely choice is its answer, so no wording of a wrong answer can pass
(a generated answer is judged by text, xtuner_recipe.scoring; this is judged by the choice).

The shipped tasks are local files, no hub needed: `general_choice_en` and `general_choice_zh`
(`xtuner_recipe/eval_sets/general_choice_<lang>.jsonl`, 160 English and 140 Chinese questions
written for this project, four choices each). `eval.harness_tasks` may also name a task YAML of
your own (local data files) or one of the harness's registered tasks (MMLU, C-Eval, CMMLU,
ARC...), which fetch their data from the Hugging Face hub: where the hub cannot be reached the
run stops with a message that says so.
"""

import math
from pathlib import Path

from xtuner_recipe import eval_sets
from xtuner_recipe.messages import ConfigError

SHIPPED = {  # task -> (data file, question layout, what goes between it and a choice)
    "general_choice_en": ("general_choice_en.jsonl", "Question: {{question}}\nAnswer:", " "),
    "general_choice_zh": ("general_choice_zh.jsonl", "问题：{{question}}\n答案：", ""),
}
# lm-eval's bootstrap for the standard error of metrics other than a mean; acc's is analytic.
BOOTSTRAP_ITERS = 1000


def task_config(name):
    """The harness's task config of a shipped task (a dict), or `name` as it was given."""
    if name not in SHIPPED:
        return name
    data, layout, delimiter = SHIPPED[name]
    return {"task": name, "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(eval_sets.HERE / data)}},
            "test_split": "test", "output_type": "multiple_choice", "doc_to_text": layout,
            "doc_to_choice": "{{choices}}", "doc_to_target": "answer",
            "target_delimiter": delimiter,
            "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}]}


def task_manager(names):
    """lm-eval's TaskManager, told about the folders of the YAML files among `names`."""
    from lm_eval.tasks import TaskManager

    folders = sorted({str(Path(n).resolve().parent) for n in names if n.endswith((".yaml", ".yml"))})
    return TaskManager(include_path=folders or None)


def task_name(name):
    """A YAML file's task name (its `task:` key), or the name itself."""
    if not name.endswith((".yaml", ".yml")):
        return name
    import yaml

    return yaml.safe_load(Path(name).read_text(encoding="utf-8"))["task"]


def check_tasks(names):
    """Before any job: every name is shipped, a readable YAML, or a task the harness knows."""
    unknown = []
    for name in names:
        if name in SHIPPED:
            continue
        if name.endswith((".yaml", ".yml")):
            if not Path(name).is_file():
                raise ConfigError(f"config field eval.harness_tasks: {name} is not a file")
            continue
        unknown.append(name)
    if unknown:
        known = set(task_manager([]).all_tasks)
        missing = [n for n in unknown if n not in known]
        if missing:
            raise ConfigError(
                f"config field eval.harness_tasks: {', '.join(missing)} is not an "
                f"lm-evaluation-harness task; use a shipped task ({', '.join(SHIPPED)}), a "
                "registered one (mmlu, ceval-valid, cmmlu, arc_easy, ...) or the path of a task "
                "YAML with local data files")


def evaluate(model, tokenizer, names, limit=None, batch_size=16):
    """Each task's accuracy with its standard error, and every item's choice log-likelihoods
    (the raw answers the accuracy is computed from)."""
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
              device=str(model.device))
    try:
        output = simple_evaluate(model=lm, tasks=[task_config(n) for n in names],
                                 task_manager=task_manager(names), limit=limit,
                                 log_samples=True, bootstrap_iters=BOOTSTRAP_ITERS)
    except (ConnectionError, OSError) as error:
        raise ConfigError(
            f"eval.harness_tasks: {', '.join(names)}: the task's data could not be loaded "
            f"({type(error).__name__}: {error}). Registered tasks fetch their data from the "
            "Hugging Face hub; where it is out of reach, use the shipped tasks or a task YAML "
            "with local data files") from error
    tasks = {}
    for name in names:
        task = task_name(name)
        items = [item_record(sample) for sample in output["samples"][task]]
        tasks[task] = {"items": items, **accuracy(items)}
    return tasks


def item_record(sample):
    """One item as the report keeps it: the question, the choices with their log-likelihoods,
    the right one and the model's."""
    doc = sample["doc"]
    loglik = [round(float(r[0]), 4) for r in sample["filtered_resps"]]
    chosen = max(range(len(loglik)), key=loglik.__getitem__)
    return {"id": doc.get("id", sample["doc_id"]), "question": doc.get("question"),
            "choices": doc.get("choices"), "target": int(sample["target"]), "chosen": chosen,
            "loglik": loglik, "correct": chosen == int(sample["target"])}


def accuracy(items):
    """Share of items right and its standard error (sample standard deviation over sqrt n)."""
    n = len(items)
    acc = sum(i["correct"] for i in items) / n if n else 0.0
    stderr = math.sqrt(acc * (1 - acc) / (n - 1)) if n > 1 else None
    return {"n": n, "acc": round(acc, 4), "stderr": None if stderr is None else round(stderr, 4)}

