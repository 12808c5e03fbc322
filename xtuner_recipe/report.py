"""The eval report: Markdown for people, JSON for machines, and the loss curve as a PNG.

    python -m xtuner_recipe.report --settings settings/report.json --answers answers.json
        --final final.json --effective effective.json --scalars scalars.jsonl
        --md report.md --json report.json --png loss_curve.png --manifest manifest.json

Last, it writes the manifest of the build (xtuner_recipe.manifest): the sha256 of every file the
run publishes, the report included, with the provenance the report shows.
"""

import argparse
import json
from pathlib import Path

from xtuner_recipe import manifest, scoring
from xtuner_recipe.layout import MANIFEST, build_dir_of
from xtuner_recipe.settings import read_stage


def tokens_seen(iterations, effective, world_size):
    """Tokens trained on: packed samples are exactly max_length tokens each; unpacked samples
    vary in length (None). bench/ counts tokens with this function too."""
    if not effective["pack_to_max_length"]:
        return None
    return iterations * effective["batch_size"] * effective["max_length"] * world_size


def training_summary(final, run, effective, scalars):
    summary = {
        "iterations": final["iteration"],
        "wall_time_s": final["wall_time_s"],
        "segments": final["segments"],
        "resumed_from": final["resumed_from"],
        "processes": final["world_size"],
        "launcher": final["launcher"],
        "deepspeed_checkpoint": final["deepspeed"],
        "method": run.method,
        "device": run.device,
        "peak_host_rss_mb": final["peak_host_rss_mb"],
        "peak_gpu_memory_mb": max((s["memory"] for s in scalars if "memory" in s), default=None),
        "first_loss": scalars[0]["loss"] if scalars else None,
        "last_loss": scalars[-1]["loss"] if scalars else None,
    }
    summary["tokens_seen"] = tokens_seen(final["iteration"], effective, final["world_size"])
    # Steady-state speed from mmengine's per-iteration times (the first logged one warms up).
    times = [s["time"] for s in scalars[1:] if "time" in s]
    summary["s_per_iter"] = round(sum(times) / len(times), 4) if times else None
    if times and summary["tokens_seen"]:
        summary["tokens_per_s"] = round(summary["tokens_seen"] / final["iteration"]
                                        / summary["s_per_iter"])
    summary["training_samples"] = effective["samples"]
    # the train rule's wall time when it trained the whole attempt in one go; else the attempt's
    # segments (a resumed or reused attempt's rule did only part of the work)
    one_go = final.get("trained_now") and final["segments"] == 1
    wall = final["rule_wall_time_s"] if one_go else final["wall_time_s"]
    summary["train_rule_wall_s" if one_go else "attempt_wall_s"] = wall
    if times and wall:
        # what the train step spent outside its iterations: hashing its inputs, start-up, model
        # load, the sample chat, checkpoint saves (the steps at the steady speed)
        outside = max(0.0, wall - summary["s_per_iter"] * final["iteration"])
        summary["outside_steps_s"] = round(outside, 1)
        summary["outside_steps_share"] = round(outside / wall, 3)
    return summary


def provenance(final, run):
    """What the published weights were made from and with (the manifest adds the file hashes)."""
    return {
        "run_name": run.run_name,
        "recipe": run.recipe,
        "attempt": final["attempt"],
        "base_model": run.base_model,
        "base_model_public_id": run.base_model_public_id,
        "inputs": final["inputs"],
        "environment": final["environment"],
        "devices": final["devices"],
    }


def provenance_lines(prov):
    env, inputs = prov["environment"], prov["inputs"]
    revision = env["recipe_revision"]
    rows = [
        ("training attempt", f"`{prov['attempt']}` (hash of the inputs below)"),
        ("base model", f"`{prov['base_model']}` ({len(inputs['base_model'])} files hashed)"),
        ("dataset sha256", f"`{inputs['dataset']}`"),
        ("patched config sha256", f"`{inputs['xtuner_config']}`"),
        ("DeepSpeed JSON sha256", f"`{inputs['deepspeed']}`" if inputs["deepspeed"] else "none"),
        ("processes", inputs["world_size"]),
        ("devices", ", ".join(prov["devices"])),
        ("recipe revision", "n/a (not a git checkout)" if revision is None else
         f"`{revision['revision'][:12]}`" + (" with local changes" if revision["modified"]
                                             else "")),
        ("container", "none" if env["container"] is None else
         f"{env['container']['runtime']} {env['container']['image'] or ''}".strip()),
        ("packages", ", ".join(f"{k} {v}" for k, v in env["software"].items() if v)),
    ]
    return (["## Provenance", "", "| | |", "|---|---|"]
            + [f"| {key} | {value} |" for key, value in rows]
            + ["", f"Every published file's sha256: `{Path(MANIFEST).name}` beside this "
               "report; check a run folder with `python -m xtuner_recipe.manifest verify "
               "results/<run>/published`.", ""])


def plot_loss(scalars, png_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([s["step"] for s in scalars], [s["loss"] for s in scalars], marker=".")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (mmengine scalars.json)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png_path)
    plt.close(fig)


def _cell(text):
    return text.replace("|", "\\|").replace("\n", " ") or "(empty)"


GROUPS = {  # group -> (title, what its share counts)
    "training": ("identity, training prompts", "answers stating the identity"),
    "heldout": ("identity, held-out paraphrases", "answers stating the identity"),
    "unrelated": ("over-fitting, unrelated prompts", "answers naming the owner (lower is better)"),
    "general": ("general knowledge", "right answers"),
}


def figures(answers):
    """What the identity verdict is computed from (xtuner_recipe.scoring.verdict)."""
    groups = answers["groups"]
    return {"identity_heldout": groups["heldout"]["merged"],
            "identity_heldout_base": groups["heldout"]["base"],
            "overfit_share": scoring.share(leaks(answers, "unrelated")),
            "general_leak_share": scoring.share(leaks(answers, "general")),
            **general_figures(answers),
            "perplexity_base": answers["perplexity"]["base"],
            "perplexity_tuned": answers["perplexity"]["merged"]}


def leaks(answers, group):
    """For each fine-tuned answer of `group` (unrelated or general): does it name the owner?
    (Over-fitting shows wherever the name comes up uninvited.)"""
    return [scoring.names_owner(item["merged"], answers["name"])
            for item in answers["groups"][group]["prompts"]]


def general_figures(answers):
    return {"general": scoring.retained_ability(answers["choice"]["base"],
                                                answers["choice"]["merged"])}


def verdict_of(answers):
    """The verdict of the run's task, from its raw answers."""
    task = answers.get("task", "identity")
    if task == "qa":
        test = answers["groups"]["test"]
        return scoring.qa_verdict({"chrf_base": test["base"]["all"]["chrf"],
                                   "chrf_tuned": test["merged"]["all"]["chrf"],
                                   "copied_share": test["merged_copied"],
                                   **general_figures(answers)})
    if task == "pretrain":
        domain = answers["domain_perplexity"]
        return scoring.pretrain_verdict({"heldout_base": domain["heldout"]["base"],
                                         "heldout_tuned": domain["heldout"]["merged"],
                                         "train_base": domain["train"]["base"],
                                         "train_tuned": domain["train"]["merged"],
                                         **general_figures(answers)})
    return scoring.verdict(figures(answers))


METRICS = {"bleu": "BLEU", "chrf": "chrF", "rouge_l": "ROUGE-L F1", "exact_match": "exact match"}


def score_rows(answers):
    """(key, measure, what it counts, base, fine-tuned) of the run's task. Rows with a key are
    report.json's scores (identity: the group names); the others are shown in the report only."""
    groups, task = answers["groups"], answers.get("task", "identity")
    general = groups["general"]
    rows = []
    if task == "qa":
        test = groups["test"]
        for part in test["base"]:
            scores = test["base"][part]
            name = (f"test set{'' if part == 'all' else ', ' + part} ({scores['count']} "
                    f"questions, {scores['references']} reference answers)")
            rows += [(f"test_{key}" if part == "all" else None, f"{name}, {title}",
                      "0-100, higher is better", test["base"][part][key],
                      test["merged"][part][key]) for key, title in METRICS.items()]
        rows.append(("test_copied", "test answers repeating another question's training answer",
                     "share, lower is better", test["base_copied"], test["merged_copied"]))
    elif task == "pretrain":
        domain, docs = answers["domain_perplexity"], answers["documents"]
        rows += [(f"{part}_perplexity", f"perplexity, {title} ({docs[part]})",
                  "lower is better", domain[part]["base"], domain[part]["merged"])
                 for part, title in (("heldout", "held-out documents"),
                                     ("train", "training documents"))]
    else:
        for group in ("training", "heldout", "unrelated"):
            title, counts = GROUPS[group]
            data = groups[group]
            rows.append((group, f"{title} ({len(data['prompts'])})", counts, data["base"],
                         data["merged"]))
    title, counts = GROUPS["general"]
    rows.append(("general", f"{title} ({len(general['prompts'])})", counts, general["base"],
                 general["merged"]))
    for lang, (count, base, tuned) in by_language(general["prompts"]).items():
        rows.append((None, f"{title}, {lang} ({count})", counts, base, tuned))
    ppl = answers["perplexity"]
    rows.append((None, "perplexity, held-out general text", "lower is better", ppl["base"],
                 ppl["merged"]))
    return rows


def choice_summary(answers):
    """task -> questions, each model's accuracy and standard error, and the paired difference
    (lm-evaluation-harness multiple choice, xtuner_recipe.choice_eval)."""
    summary = {}
    for task, base in answers["choice"]["base"].items():
        tuned = answers["choice"]["merged"][task]
        diff, stderr = scoring.paired(base["items"], tuned["items"])
        summary[task] = {"questions": base["n"],
                         "base": {"acc": base["acc"], "stderr": base["stderr"]},
                         "merged": {"acc": tuned["acc"], "stderr": tuned["stderr"]},
                         "difference": {"acc": round(diff, 4), "stderr": round(stderr, 4)}}
    return summary


def choice_lines(answers):
    """The multiple-choice table: accuracy with its standard error, and the paired difference."""
    lines = ["## General ability: multiple choice (lm-evaluation-harness)", "",
             "Each question's choices are scored by the model's log-likelihood; its most likely "
             "choice is its answer (every item's choice and log-likelihoods: `eval/answers.json`, "
             "`choice`). Figures are accuracy ± standard error; the difference is paired (the same "
             "questions).", "",
             "| task | questions | base model | fine-tuned (merged) | difference |",
             "|---|---|---|---|---|"]
    for task, row in choice_summary(answers).items():
        cells = [f"{row[m]['acc']:.3f} ± {row[m]['stderr'] or 0:.3f}"
                 for m in ("base", "merged", "difference")]
        lines.append(f"| {task} | {row['questions']} | " + " | ".join(cells) + " |")
    return lines + [""]


def choice_table(answers):
    """Every multiple-choice question with the right choice and each model's (✓ right, ✗ wrong)."""
    lines = ["## Answers: multiple choice", "",
             "| task | question | right choice | base model | fine-tuned |", "|---|---|---|---|---|"]
    for task, base in answers["choice"]["base"].items():
        for b, t in zip(base["items"], answers["choice"]["merged"][task]["items"]):
            choices = b["choices"] or [str(k) for k in range(len(b["loglik"]))]
            cells = [f"{_cell(choices[i['chosen']])} {'✓' if i['correct'] else '✗'}"
                     for i in (b, t)]
            lines.append(f"| {task} | {_cell(str(b['question'] or b['id']))} | "
                         f"{_cell(choices[b['target']])} | {cells[0]} | {cells[1]} |")
    return lines + [""]


def by_language(items):
    """lang -> (count, base share, tuned share) of general-knowledge items: a model may know one
    language only, and the overall figure then hides it."""
    langs = sorted({i["lang"] for i in items if i.get("lang")})
    return {lang: (len(sub), scoring.share(i["base_pass"] for i in sub),
                   scoring.share(i["merged_pass"] for i in sub))
            for lang in langs for sub in [[i for i in items if i.get("lang") == lang]]}


def verdict_line(verdict):
    interval = verdict["general_retained_interval_pct"]
    kept = ("n/a (the base model is at chance)" if verdict["general_retained_pct"] is None
            else f"{verdict['general_retained_pct']:.0f} % of base (95 % interval "
                 f"{interval[0]:.0f}-{interval[1]:.0f} %)")
    return (f"**Verdict: {'learned' if verdict['learned'] else 'not learned'}; kept general "
            f"ability: {kept}; over-fitted: {'yes' if verdict['overfitted'] else 'no'}.**")


def verdict_lines(verdict):
    """The verdict and its three reasons, as the report, the web demo and the model card show it."""
    return [verdict_line(verdict), "", f"- learned: {verdict['learned_reason']}",
            f"- kept general ability: {verdict['kept_general_reason']}",
            f"- over-fitted: {verdict['overfitted_reason']}"]


JUDGED = {
    "identity": "The identity counts as stated when an answer claims to be **{name}**'s "
                "assistant, or to serve {name}, and does not make {name} the assistant; an open "
                "general answer counts as right when it states an accepted answer, nothing "
                "against it and no owner's name (labelled examples the judge must get right: "
                "`xtuner_recipe/eval_sets/judge_cases.yaml`)",
    "qa": "Each answer to a held-out test question is scored against its reference answers "
          "(every answer the test data gives the question; sacrebleu BLEU and chrF take them "
          "all, rouge-score ROUGE-L with CJK characters as tokens and exact match after "
          "normalising the best: `xtuner_recipe/text_metrics.py`)",
    "pretrain": "Perplexity of held-out documents (never trained on) against as many training "
                "documents: learning the domain lowers both, memorising only the second",
}


def answer_table(title, items, reference=False):
    """One group's raw answers, with the mark of each (✓ pass, ✗ fail) or its chrF."""
    lines = [f"## Answers: {title}", "",
             "| prompt |" + (" reference |" if reference else "") + " base model | fine-tuned |",
             "|---|---|---|" + ("---|" if reference else "")]
    for item in items:
        marks = []
        for m in ("base", "merged"):
            if f"{m}_scores" in item:
                marks.append(f" (chrF {item[f'{m}_scores']['chrf']:.0f})")
            else:
                passed = item.get(f"{m}_pass")
                marks.append("" if passed is None else (" ✓" if passed else " ✗"))
        history = "".join(f"{_cell(q)} → {_cell(a)} / " for q, a in item.get("history", []))
        # qa items have their reference answers, pretrain's continuations the document
        shown = (f" {' / '.join(map(_cell, item.get('references') or [item['reference']]))} |"
                 if reference else "")
        lines.append(f"| {history}{_cell(item['prompt'])} |" + shown
                     + f" {_cell(item['base'])}{marks[0]} | {_cell(item['merged'])}{marks[1]} |")
    return lines + [""]


def answer_sections(answers):
    groups, task = answers["groups"], answers.get("task", "identity")
    if task == "qa":
        lines = answer_table("held-out test set", groups["test"]["prompts"], reference=True)
    elif task == "pretrain":
        lines = answer_table("continuations of held-out documents' openings (no template)",
                             answers["continuations"], reference=True)
    else:
        lines = [line for group in ("training", "heldout", "unrelated")
                 for line in answer_table(GROUPS[group][0], groups[group]["prompts"])]
    return lines + answer_table(GROUPS["general"][0], groups["general"]["prompts"])


def markdown(answers, verdict, summary, run_name, png_name, prov):
    task = answers.get("task", "identity")
    lines = [f"# Eval report: {run_name}", "", *verdict_lines(verdict), "",
             f"Task **{task}**. " + JUDGED[task].format(name=answers.get("name")) + "; thresholds "
             "and their reasons: `xtuner_recipe/scoring.py`.", "",
             "| measure | counts | base model | fine-tuned (merged) |", "|---|---|---|---|"]
    lines += [f"| {measure} | {counts} | {base:.2f} | {tuned:.2f} |"
              for _, measure, counts, base, tuned in score_rows(answers)]
    lines += ["", *choice_lines(answers), "## Training", "", "| | |", "|---|---|"]
    for key, value in summary.items():
        lines.append(f"| {key} | {value if value is not None else 'n/a'} |")
    lines += ["", f"![loss curve]({png_name})", ""]
    lines += provenance_lines(prov)
    return "\n".join(lines + answer_sections(answers) + choice_table(answers))


def read_jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("settings", "answers", "final", "effective", "scalars", "md", "json", "png",
                 "manifest"):
        parser.add_argument(f"--{name}", required=True)
    args = parser.parse_args(argv)
    run = read_stage(args.settings, "report")
    answers = json.loads(Path(args.answers).read_text(encoding="utf-8"))
    final = json.loads(Path(args.final).read_text())
    effective = json.loads(Path(args.effective).read_text())
    scalars = read_jsonl(args.scalars)
    summary = training_summary(final, run, effective, scalars)
    verdict = verdict_of(answers)
    plot_loss(scalars, args.png)
    prov = provenance(final, run)
    report = {
        "run_name": run.run_name,
        "recipe": run.recipe,
        "task": run.task,
        "provenance": prov,
        "verdict": verdict,
        "thresholds": scoring.THRESHOLDS,
        "scores": {key: {"base": base, "merged": tuned}
                   for key, _, _, base, tuned in score_rows(answers) if key},
        "general_by_language": {lang: {"questions": n, "base": b, "merged": m} for lang, (n, b, m)
                                in by_language(answers["groups"]["general"]["prompts"]).items()},
        "multiple_choice": choice_summary(answers),
        "perplexity": answers["perplexity"],
        "domain_perplexity": answers.get("domain_perplexity"),
        "training": summary,
        "loss_curve": [{"step": s["step"], "loss": s["loss"]} for s in scalars],
        "answers": answers["groups"],
    }
    Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                               encoding="utf-8")
    Path(args.md).write_text(markdown(answers, verdict, summary, run.run_name,
                                      Path(args.png).name, prov), encoding="utf-8")
    Path(args.manifest).write_text(json.dumps(manifest.build_manifest(build_dir_of(args.manifest), prov),
                                              indent=2, sort_keys=True, ensure_ascii=False)
                                   + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
