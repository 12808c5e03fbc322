"""Multiple-choice results in the shape xtuner_recipe.choice_eval.evaluate gives, from which items
each model got right: for the verdict and report tests."""

from xtuner_recipe.choice_eval import accuracy


def task_items(flags, choices=4):
    """One item per flag: the right choice is 0, the model's is 0 when the flag is true."""
    return [{"id": k, "question": f"q{k}", "choices": [f"c{j}" for j in range(choices)],
             "target": 0, "chosen": 0 if right else 1, "loglik": [0.0] * choices,
             "correct": bool(right)} for k, right in enumerate(flags)]


def results(base_flags, tuned_flags, task="general_choice_en"):
    """answers.json's `choice`: {base: {task: ...}, merged: {task: ...}}."""
    return {model: {task: {"items": items, **accuracy(items)}}
            for model, items in (("base", task_items(base_flags)),
                                 ("merged", task_items(tuned_flags)))}


def retained(base_flags, tuned_flags):
    """The verdict's figures["general"] of these flags (xtuner_recipe.scoring.retained_ability)."""
    from xtuner_recipe.scoring import retained_ability

    choice = results(base_flags, tuned_flags)
    return retained_ability(choice["base"], choice["merged"])
