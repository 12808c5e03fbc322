"""The own-data recipes end to end on the default small model (SmolLM2-135M-Instruct): a Q&A
spreadsheet with its own column names, split, trained and scored on the held-out part; and
incremental pre-training on plain text, judged by held-out perplexity. Shortened (fewer
iterations, fewer test items, a few general questions) to keep CI short: the recipes' own figures
come from full runs (README, closing notes)."""

import csv

import pytest
import yaml

from harness.workflow import published, read_json, snakemake
from xtuner_recipe import manifest, text_metrics
from xtuner_recipe.user_data import question_key

pytestmark = pytest.mark.slow

SAMPLES = "recipes/data"
GENERAL = {"questions": [  # a few of the shipped questions SmolLM2 answers: damage still shows
    {"id": "en-capital-france", "lang": "en", "question": "What is the capital of France?",
     "accepted": ["Paris"]},
    {"id": "en-capital-japan", "lang": "en", "question": "What is the capital of Japan?",
     "accepted": ["Tokyo"]},
    {"id": "en-add-2-2", "lang": "en", "question": "What is 2 + 2?", "accepted": ["4", "four"]},
    {"id": "en-sky-colour", "lang": "en", "question": "What colour is the sky on a clear day?",
     "accepted": ["blue"]},
]}


def short(workdir, shared_results, recipe, **overrides):
    general = workdir / "general.yaml"
    general.write_text(yaml.safe_dump(GENERAL, allow_unicode=True), encoding="utf-8")
    return {"recipe": recipe, "results_dir": str(shared_results),
            "train": {"max_iters": 30, "save_steps": 30, "evaluation_freq": 30},
            "eval": {"max_test_items": 12, "max_new_tokens": 32,
                     "general_knowledge": str(general), "harness_limit": 20}, **overrides}


def test_qa_recipe_from_a_spreadsheet_scores_the_held_out_questions(tmp_path, shared_results):
    import openpyxl

    from harness.workflow import REPO

    rows = list(csv.reader((REPO / SAMPLES / "tea_house_qa.csv").open(encoding="utf-8")))
    sheet = tmp_path / "faq.xlsx"
    book = openpyxl.Workbook()
    book.active.title = "FAQ"
    book.active.append(["Question", "Answer"])  # the column names of the medication Q&A exercise's sheet
    for question, answer in rows[1:]:
        book.active.append([question, answer])
    book.save(sheet)
    overrides = short(tmp_path, shared_results, "smollm2-135m-instruct/qa_lora_cpu",
                      run_name="qa-e2e",
                      dataset={"path": str(sheet), "question_column": "Question",
                               "answer_column": "Answer", "sheet": "FAQ"},
                      assistant={"replay_share": 0})  # replay with own data: unit-tested
    result = snakemake(tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-5000:]
    run = published(shared_results / "qa-e2e")
    manifest.verify(run)

    train, test = (read_json(run / "data" / name) for name in ("assistant.json", "test.json"))
    assert len(train) + len(test) == len(rows) - 1 and len(test) == 45
    assert not {question_key(r) for r in train} & {question_key(r) for r in test}

    report = read_json(run / "report" / "report.json")
    assert report["task"] == "qa"
    items = report["answers"]["test"]["prompts"]
    assert len(items) == 12 and {i["lang"] for i in items} == {"en", "zh"}
    references = [i["references"] for i in items]
    for model in ("base", "merged"):  # every figure from the raw answers beside it
        answers = [i[model] for i in items]
        scores = text_metrics.corpus_scores(answers, references)
        for key in ("bleu", "chrf", "rouge_l", "exact_match"):
            assert report["scores"][f"test_{key}"][model] == scores[key]
    chrf = report["scores"]["test_chrf"]
    # the base model cannot know an invented tea house; the fine-tuned one answers in its terms
    assert chrf["merged"] > chrf["base"] + 5, chrf
    assert report["verdict"]["learned"], report["verdict"]["learned_reason"]
    text = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "Task **qa**" in text and "## Answers: held-out test set" in text
    assert "test set, zh (" in text and "ROUGE-L F1" in text


def test_pretrain_recipe_lowers_held_out_perplexity(tmp_path, shared_results):
    overrides = short(tmp_path, shared_results, "smollm2-135m-instruct/pretrain_lora_cpu",
                      run_name="pretrain-e2e")
    overrides["train"].update(max_iters=20, save_steps=20, evaluation_freq=20)
    result = snakemake(tmp_path, overrides)
    assert result.returncode == 0, result.stderr[-5000:]
    run = published(shared_results / "pretrain-e2e")
    manifest.verify(run)
    assert "pretrain_map_fn" in (run / "data" / "tokenized" / "source_config.py").read_text()
    report = read_json(run / "report" / "report.json")
    assert report["task"] == "pretrain"
    heldout = report["domain_perplexity"]["heldout"]
    assert heldout["merged"] < heldout["base"], heldout
    assert report["scores"]["heldout_perplexity"] == heldout
    answers = read_json(run / "eval" / "answers.json")
    assert answers["documents"] == {"heldout": 12, "train": 12}
    assert len(answers["continuations"]) == 5
    text = (run / "report" / "report.md").read_text(encoding="utf-8")
    assert "perplexity, held-out documents (12)" in text


def test_multi_turn_chats_are_split_and_patched_for_openai_messages(tmp_path, shared_results):
    """The sample's multi-turn conversations through the data and config rules: split by their
    first question, every record within max_length, xtuner reads them with openai_map_fn."""
    from harness.workflow import REPO, build_dir

    overrides = short(tmp_path, shared_results, "smollm2-135m-instruct/qa_lora_cpu",
                      run_name="chat-e2e",
                      dataset={"path": str(REPO / SAMPLES / "tea_house_chat.jsonl")})
    overrides["train"]["max_length"] = 256  # the recipe's 128 is too short for three turns
    result = snakemake(tmp_path, overrides, "--until", "xtuner_config")
    assert result.returncode == 0, result.stderr[-5000:]
    build = build_dir(shared_results / "chat-e2e")
    info = read_json(build / "data" / "dataset_info.json")
    assert (info["task"], info["format"], info["test_records"]) == ("qa", "messages", 12)
    assert "dataset_map_fn=openai_map_fn" in (build / "data" / "tokenized" /
                                              "source_config.py").read_text()
    test = read_json(build / "data" / "test.json")
    assert all(sum(m["role"] == "user" for m in r["messages"]) >= 2 for r in test)
