"""The eval report: mmengine scalars across resumed runs, the training summary, Markdown, PNG."""

import json

import pytest

from harness import choice
from xtuner_recipe import scoring
from xtuner_recipe.report import figures, markdown, plot_loss, provenance, training_summary
from xtuner_recipe.settings import ReportSettings
from xtuner_recipe.train import read_scalars

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_scalars(work_dir, timestamp, entries):
    folder = work_dir / timestamp / "vis_data"
    folder.mkdir(parents=True)
    (folder / "scalars.json").write_text("".join(json.dumps(e) + "\n" for e in entries))


def entry(step, loss, time=0.5, **extra):
    return {"lr": 1e-3, "data_time": 0.01, "loss": loss, "time": time, "iter": step,
            "step": step, **extra}


def test_read_scalars_merges_runs_later_run_wins(tmp_path):
    write_scalars(tmp_path, "20240101_100000", [entry(5, 3.0), entry(10, 2.5), entry(15, 2.2)])
    # resumed from iteration 10: the second run logs 15 again, then goes on
    write_scalars(tmp_path, "20240101_120000", [entry(15, 2.0), entry(20, 1.5)])
    scalars = read_scalars(tmp_path)
    assert [s["step"] for s in scalars] == [5, 10, 15, 20]
    assert [s["loss"] for s in scalars] == [3.0, 2.5, 2.0, 1.5]


def test_read_scalars_orders_by_step_and_skips_non_loss_lines(tmp_path):
    folder = tmp_path / "20240101_100000" / "vis_data"
    folder.mkdir(parents=True)
    lines = [json.dumps(entry(10, 2.0)), "", json.dumps(entry(5, 3.0)),
             json.dumps({"step": 10, "accuracy": 1.0}),  # an eval line: no loss
             json.dumps({"loss": 9.9}),  # no step
             "   "]
    (folder / "scalars.json").write_text("\n".join(lines) + "\n")
    scalars = read_scalars(tmp_path)
    assert [(s["step"], s["loss"]) for s in scalars] == [(5, 3.0), (10, 2.0)]


def test_read_scalars_of_an_empty_or_other_work_dir(tmp_path):
    assert read_scalars(tmp_path) == []
    (tmp_path / "20240101_100000").mkdir()
    (tmp_path / "20240101_100000" / "scalars.json").write_text(json.dumps(entry(1, 1.0)) + "\n")
    assert read_scalars(tmp_path) == []  # not under vis_data


def final_record(iteration=160, world_size=2):
    return {"checkpoint": f"/w/iter_{iteration}.pth", "iteration": iteration,
            "deepspeed": False, "launcher": "pytorch", "world_size": world_size,
            "resumed_from": [], "segments": 1, "wall_time_s": 100.0,
            "trained_now": True, "rule_wall_time_s": 110.0,
            "peak_host_rss_mb": 1234.5, "attempt": "0123456789abcdef",
            "inputs": {"xtuner_config": "c" * 64, "dataset": "d" * 64,
                       "base_model": {"config.json": "e" * 64}, "deepspeed": None,
                       "world_size": world_size},
            "environment": {"software": {"python": "3.11.2", "xtuner": "0.2.0"},
                            "container": None,
                            "recipe_revision": {"revision": "f" * 40, "modified": True}},
            "devices": ["Some CPU (2 cores)"]}


def plan_with(pack, batch_size=2, max_length=128):
    """(report settings, effective values) of a run."""
    run = ReportSettings(task="identity", run_name="r", recipe="tiny-internlm2/lora_cpu", method="lora",
                         device="cpu", base_model="models/tiny", base_model_public_id=None)
    return run, {"pack_to_max_length": pack, "batch_size": batch_size, "max_length": max_length,
                 "accumulative_counts": 4, "lr": 1e-3, "max_iters": 160, "max_epochs": None,
                 "samples": 321}


def test_summary_for_packed_training():
    scalars = [entry(5, 3.0, time=9.0, memory=100), entry(10, 2.0, time=0.5, memory=300),
               entry(15, 1.0, time=0.7, memory=200)]
    summary = training_summary(final_record(160, 2), *plan_with(True, 2, 128), scalars)
    assert summary["tokens_seen"] == 160 * 2 * 128 * 2
    assert summary["s_per_iter"] == pytest.approx(0.6)  # the first (warm-up) entry is dropped
    assert summary["tokens_per_s"] == round(2 * 128 * 2 / 0.6)
    assert summary["peak_gpu_memory_mb"] == 300
    assert (summary["first_loss"], summary["last_loss"]) == (3.0, 1.0)
    assert summary["iterations"] == 160 and summary["processes"] == 2
    assert summary["method"] == "lora" and summary["device"] == "cpu"
    assert summary["launcher"] == "pytorch" and summary["deepspeed_checkpoint"] is False
    assert summary["peak_host_rss_mb"] == 1234.5
    assert summary["training_samples"] == 321
    # the rule's 110 s, 160 steps at 0.6 s: 14 s outside the steps (hashing, start-up, saves)
    assert summary["train_rule_wall_s"] == 110.0
    assert summary["outside_steps_s"] == pytest.approx(14.0)
    assert summary["outside_steps_share"] == pytest.approx(14 / 110, abs=1e-3)


@pytest.mark.parametrize("change", [{"segments": 2}, {"trained_now": False}])
def test_a_resumed_or_reused_attempt_is_measured_by_its_segments(change):
    """Its rule did only part of the work: the share comes from the attempt's own segments."""
    scalars = [entry(5, 3.0, time=9.0), entry(10, 2.0, time=0.5), entry(15, 1.0, time=0.7)]
    summary = training_summary({**final_record(160, 2), **change}, *plan_with(True), scalars)
    assert "train_rule_wall_s" not in summary and summary["attempt_wall_s"] == 100.0
    assert summary["outside_steps_s"] == pytest.approx(4.0)
    assert summary["outside_steps_share"] == pytest.approx(0.04)


def test_summary_for_unpacked_training_has_no_token_count():
    scalars = [entry(5, 3.0, time=9.0), entry(10, 2.0, time=1.0)]
    summary = training_summary(final_record(), *plan_with(False), scalars)
    assert summary["tokens_seen"] is None
    assert "tokens_per_s" not in summary
    assert summary["s_per_iter"] == 1.0
    assert summary["peak_gpu_memory_mb"] is None  # CPU runs log no memory


def test_summary_without_scalars():
    summary = training_summary(final_record(), *plan_with(True), [])
    assert summary["first_loss"] is None and summary["last_loss"] is None
    assert summary["s_per_iter"] is None and "tokens_per_s" not in summary
    assert summary["peak_gpu_memory_mb"] is None
    # a single logged entry is all warm-up
    one = training_summary(final_record(), *plan_with(True), [entry(5, 3.0, time=2.0)])
    assert one["s_per_iter"] is None and one["first_loss"] == one["last_loss"] == 3.0


def answers(name="门客er"):
    def group(base, merged, items):
        return {"base": base, "merged": merged, "prompts": items}

    def item(prompt, base, merged, base_pass, merged_pass):
        return {"prompt": prompt, "base": base, "merged": merged, "base_pass": base_pass,
                "merged_pass": merged_pass}

    return {"name": name, "perplexity": {"base": 20.0, "merged": 21.5},
            "choice": choice.results([True] * 6 + [False] * 4, [True] * 6 + [False] * 4),
            "groups": {
        "training": group(0.0, 1.0, [item("请介绍一下你自己", "a | b", "我是门客er的小助手\n第二行",
                                          False, True)]),
        "heldout": group(0.0, 1.0, [item("Who are you?", "", "门客er's assistant", False,
                                         True)]),
        "unrelated": group(0.0, 0.0, [item("How do I boil an egg?", "Boil it.", "Boil it.",
                                           False, False)]),
        "general": group(0.5, 0.5, [dict(item("1+1?", "2", "2", True, True), lang="en"),
                                    dict(item("一加一?", "三", "三", False, False), lang="zh")]),
    }}


def test_verdict_of_a_run_that_learned_and_kept_its_knowledge():
    verdict = scoring.verdict(figures(answers()))
    assert verdict["learned"] and verdict["kept_general"] and not verdict["overfitted"]
    assert verdict["general_retained_pct"] == 100.0
    assert verdict["perplexity_ratio"] == round(21.5 / 20.0, 3)


def test_verdict_of_a_parrot():
    parrot = answers()
    parrot["choice"] = choice.results([True] * 6 + [False] * 4, [False] * 10)
    verdict = scoring.verdict(figures(parrot))
    assert verdict["learned"] and verdict["overfitted"] and not verdict["kept_general"]
    # the owner's name in an open general answer is over-fitting, as in an unrelated one
    leaky = answers()
    assert not scoring.verdict(figures(leaky))["overfitted"]
    leaky["groups"]["general"]["prompts"][1]["merged"] = "一加一等于门客er的二"
    verdict = scoring.verdict(figures(leaky))
    assert verdict["overfitted"] and "0.50 of open general answers" in verdict["overfitted_reason"]


def test_markdown_has_the_verdict_the_score_table_and_escapes_cells():
    summary = training_summary(final_record(), *plan_with(True),
                               [entry(5, 3.0, time=1.0), entry(10, 2.0, time=1.0)])
    data = answers()
    prov = provenance(final_record(), plan_with(True)[0])
    text = markdown(data, scoring.verdict(figures(data)), summary, "assistant-demo",
                    "loss_curve.png", prov)
    lines = text.splitlines()
    assert lines[0] == "# Eval report: assistant-demo"
    assert lines[2] == ("**Verdict: learned; kept general ability: 100 % of base (95 % "
                        "interval 100-100 %); over-fitted: no.**")
    assert "| measure | counts | base model | fine-tuned (merged) |" in lines
    assert "| identity, training prompts (1) | answers stating the identity | 0.00 | 1.00 |" \
        in lines
    assert "| identity, held-out paraphrases (1) | answers stating the identity | 0.00 | 1.00 |" \
        in lines
    assert ("| over-fitting, unrelated prompts (1) | answers naming the owner (lower is better) "
            "| 0.00 | 0.00 |") in lines
    assert "| general knowledge (2) | right answers | 0.50 | 0.50 |" in lines
    assert "| general knowledge, en (1) | right answers | 1.00 | 1.00 |" in lines
    assert "| general knowledge, zh (1) | right answers | 0.00 | 0.00 |" in lines
    assert "| perplexity, held-out general text | lower is better | 20.00 | 21.50 |" in lines
    assert "| general_choice_en | 10 | 0.600 ± 0.163 | 0.600 ± 0.163 | 0.000 ± 0.000 |" in lines
    assert "| general_choice_en | q0 | c0 | c0 ✓ | c0 ✓ |" in lines  # every choice, judged
    assert "| general_choice_en | q9 | c0 | c1 ✗ | c1 ✗ |" in lines
    assert "| iterations | 160 |" in lines
    assert "| resumed_from | [] |" in lines
    # provenance: what the weights were made from and with
    assert "| training attempt | `0123456789abcdef` (hash of the inputs below) |" in lines
    assert f"| dataset sha256 | `{'d' * 64}` |" in lines
    assert "| recipe revision | `ffffffffffff` with local changes |" in lines
    assert "| packages | python 3.11.2, xtuner 0.2.0 |" in lines
    assert "![loss curve](loss_curve.png)" in lines
    # answers: | escaped, newlines flattened, empty marked, each judged
    assert "| 请介绍一下你自己 | a \\| b ✗ | 我是门客er的小助手 第二行 ✓ |" in lines
    assert "| Who are you? | (empty) ✗ | 门客er's assistant ✓ |" in lines
    assert "## Answers: identity, held-out paraphrases" in lines
    # every answer row has the same number of unescaped separators as its header
    for line in lines:
        if line.startswith("| ") and line.count("|") == 4 + line.count("\\|"):
            assert line.replace("\\|", "").count("|") == 4, line


def test_plot_loss_writes_a_png(tmp_path):
    png = tmp_path / "loss_curve.png"
    plot_loss([entry(5, 3.0), entry(10, 2.0), entry(15, 1.2)], png)
    data = png.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width = int.from_bytes(data[16:20], "big")
    height = int.from_bytes(data[20:24], "big")
    assert (width, height) == (600, 350)  # figsize (6, 3.5) at dpi 100


def test_a_qa_report_counts_questions_and_reference_answers_and_shows_every_reference():
    """Defect (issue 27): test.json held 7 records, the report said "test set (6)" and scored the
    repeated question against its first answer only."""
    from xtuner_recipe import text_metrics
    from xtuner_recipe.report import answer_sections, score_rows

    items = [{"prompt": "孕妇可以吃感冒药吗？", "references": ["请先咨询医生。", "不建议自行服用。"],
              "history": [], "lang": "zh", "base": "可以。", "merged": "不建议自行服用"},
             {"prompt": "每天最多几粒？", "references": ["48"], "history": [], "lang": "zh",
              "base": "两粒。", "merged": "48"}]
    test = {"prompts": items, "test_records": 3, "base_copied": 0.0, "merged_copied": 0.0}
    for model in ("base", "merged"):
        test[model] = text_metrics.scores_by_language(
            [i[model] for i in items], [i["references"] for i in items], [i["lang"] for i in items])
        for item in items:
            item[f"{model}_scores"] = {"chrf": text_metrics.chrf(item[model],
                                                                 item["references"])}
    data = {**answers(), "task": "qa"}
    data["groups"] = {"test": test, "general": answers()["groups"]["general"]}
    rows = {measure: (base, tuned) for _, measure, _, base, tuned in score_rows(data)}
    assert rows["test set (2 questions, 3 reference answers), exact match"] == (0.0, 100.0)
    assert not [m for m in rows if m.startswith("test set, ")]  # one language: no split
    lines = answer_sections(data)
    assert ("| 孕妇可以吃感冒药吗？ | 请先咨询医生。 / 不建议自行服用。 | 可以。 (chrF 5) | "
            "不建议自行服用 (chrF 83) |") in lines
