"""Bad input stops the real workflow before any job runs, with a message that names the field and
the fix, and leaves what was already built untouched."""

import json
import re

import pytest

from harness.workflow import another_run_holding, snakemake, variant


@pytest.fixture
def built_artifact(tmp_path):
    """Something a previous run left, which a failed run must not remove or rewrite."""
    artifact = tmp_path / "results" / "kept" / "published" / "data" / "assistant.json"
    artifact.parent.mkdir(parents=True)
    artifact.write_text("[]")
    return artifact


def run_bad(tmp_path, overrides):
    overrides = {"run_name": "kept", "results_dir": "results", **overrides}
    return snakemake(tmp_path, overrides, "--dry-run")


def assert_refused(result, *fragments):
    assert result.returncode != 0, result.stdout + result.stderr
    output = result.stdout + result.stderr
    for fragment in fragments:
        assert fragment in output, output[-3000:]
    assert "Job stats" not in output  # stopped while parsing: no job was scheduled
    # the recipe's own line leads, not Snakemake's 'WorkflowError in file .../common.smk, line N:'
    assert "WorkflowError" not in output and re.search(r"^\[xtuner-recipe\] (?!warning)",
                                                       output, re.M), output


@pytest.mark.parametrize("case", variant("bad-config"), ids=lambda case: str(case["config"]))
def test_bad_config_is_refused_early(tmp_path, built_artifact, case):
    before = built_artifact.stat().st_mtime_ns
    assert_refused(run_bad(tmp_path, case["config"]), *case["expect"])
    assert built_artifact.read_text() == "[]" and built_artifact.stat().st_mtime_ns == before


@pytest.mark.parametrize("content, fragments", [
    ('[{"conversation": [{"input": "hi", "output": "hello"}]},\n {"conversation": [{"input": "hi"}]}]',
     ["record 1 conversation[0].output must be a non-empty string"]),
    ("", ["the dataset is empty"]),
    ("[]", ["the dataset has no records"]),
    ('{"conversation": [{"input": "a", "output": "b"}]}\nnot json\n', ["line 2 is not valid JSON"]),
])
def test_bad_dataset_is_refused_early(tmp_path, built_artifact, content, fragments):
    dataset = tmp_path / "mine.jsonl"
    dataset.write_text(content)
    before = built_artifact.stat().st_mtime_ns
    assert_refused(run_bad(tmp_path, {"dataset": {"path": str(dataset)}}), *fragments)
    assert built_artifact.stat().st_mtime_ns == before


def write_table(path, rows):
    path.write_text("".join(",".join(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("rows, extra, fragments", [
    ([("Q", "A"), ("q1", "a1")], {},
     ["config field dataset.question_column = 'question'", "has no column 'question'",
      "its first row names 'Q', 'A'"]),
    ([("question", "answer"), ("q1", "a1"), ("q2", ""), ("q3", "a3")], {},
     ["row 3 has an empty 'answer' cell", "fill them in or delete those rows"]),
    ([("question", "answer"), ("q1", "a1"), ("q2", "a2")], {"task": "pretrain"},
     ["config field task = 'pretrain'", "make a 'qa' run; set task: qa"]),
])
def test_bad_own_data_is_refused_before_any_job(tmp_path, built_artifact, rows, extra,
                                                fragments):
    path = write_table(tmp_path / "faq.csv", rows)
    result = run_bad(tmp_path, {"recipe": "smollm2-135m-instruct/qa_lora_cpu",
                                "dataset": {"path": path}, **extra})
    assert_refused(result, *fragments)


def test_a_test_file_that_overlaps_the_training_data(tmp_path):
    train = write_table(tmp_path / "train.csv", [("question", "answer"), ("q1", "a1"),
                                                 ("q2", "a2")])
    test = write_table(tmp_path / "test.csv", [("question", "answer"), ("Q2", "a2")])
    result = run_bad(tmp_path, {"recipe": "smollm2-135m-instruct/qa_lora_cpu",
                                "dataset": {"path": train, "test_path": test}})
    assert_refused(result, "config field dataset.test_path", "row 2 also occur in the training "
                   "data", "remove them from one of the two files")


def test_text_that_is_not_utf8_is_refused(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_bytes("茶馆的笔记。\n\n第二段。".encode("gb18030"))
    result = run_bad(tmp_path, {"recipe": "smollm2-135m-instruct/pretrain_lora_cpu",
                                "dataset": {"path": str(notes)}})
    assert_refused(result, "notes.txt: not UTF-8 text", "save the file as UTF-8")


def test_a_gbk_csv_names_excels_utf8_save_type_and_reads_with_dataset_encoding(tmp_path):
    """Issue 27: GBK was refused with no `encoding` key and no word of Excel's 'CSV UTF-8'."""
    sheet = tmp_path / "faq.csv"
    sheet.write_bytes(("question,answer\r\n" + "".join(f"问题{i},答案{i}\r\n" for i in range(20)))
                      .encode("gbk"))
    recipe = {"recipe": "smollm2-135m-instruct/qa_lora_cpu"}
    assert_refused(run_bad(tmp_path, {**recipe, "dataset": {"path": str(sheet)}}),
                   "faq.csv: not UTF-8 text", "'CSV UTF-8 (Comma delimited)'",
                   "set dataset.encoding to the file's encoding")
    result = run_bad(tmp_path, {**recipe, "dataset": {"path": str(sheet), "encoding": "gbk"}})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_a_messy_sheet_names_its_merged_cell_then_says_which_row_is_its_header(tmp_path):
    """Issue 27: a title row above the header was refused with no key to fix it, and an empty
    cell of a merged answer was not called merged."""
    import openpyxl

    def save(merge):
        book = openpyxl.Workbook()
        for row in [["药品问答 2026"], [], ["问题", "答案"]] + [[f"问题{i}", f"答案{i}"]
                                                                 for i in range(20)]:
            book.active.append(row)
        if merge:
            book.active["B5"] = None
            book.active.merge_cells("B4:B5")
        book.save(tmp_path / "faq.xlsx")
        return {"recipe": "smollm2-135m-instruct/qa_lora_cpu",
                "dataset": {"path": str(tmp_path / "faq.xlsx"), "question_column": "问题",
                            "answer_column": "答案"}}

    assert_refused(run_bad(tmp_path, save(merge=True)),
                   "row 5's '答案' cell is inside the merged cell B4:B5", "unmerge those cells")
    result = run_bad(tmp_path, save(merge=False))
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "row 3 is read as the header row" in result.stdout + result.stderr


def test_duplicate_questions_are_a_warning_and_stay_on_one_side(tmp_path):
    rows = [("question", "answer")] + [(f"q{i}", f"a{i}") for i in range(20)] + [("q3", "other")]
    result = run_bad(tmp_path, {"recipe": "smollm2-135m-instruct/qa_lora_cpu",
                                "dataset": {"path": write_table(tmp_path / "faq.csv", rows)}})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert ("warning: 1 questions occur more than once (1 of them with different answers); "
            "every copy stays on one side") in result.stdout + result.stderr


def test_a_model_folder_without_a_tokenizer(tmp_path):
    """Defect: config.json and weights but no tokenizer passed, then failed inside training."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "internlm2"}')
    (model / "model.safetensors").write_bytes(b"weights")
    result = run_bad(tmp_path, {"recipe": "internlm2-chat-1_8b/qlora",
                                "model": {"path": str(model)}})
    assert_refused(result, "config field model.path", "has no tokenizer",
                   "AutoTokenizer.save_pretrained")


def test_a_results_dir_that_cannot_be_written(tmp_path):
    """Defect: a results_dir that cannot be written was found only when a job failed."""
    (tmp_path / "a-file").write_text("in the way")
    assert_refused(run_bad(tmp_path, {"results_dir": "a-file/results"}),
                   "config field results_dir = 'a-file/results'", "choose a folder")


def test_an_over_long_record_is_named_before_any_job(tmp_path):
    """Defect: 20,000 records with one 10 MB answer passed the pre-job checks; the tokenising job
    failed minutes later naming no record, and asked for a max_length the model cannot read."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 512}')
    vocab = {chr(c): c for c in range(33, 127)}  # one byte per token at most
    (model / "tokenizer.json").write_text(json.dumps({"model": {"vocab": vocab}}))
    pairs = [(f"q{i}", "x" * 1_000_000 if i == 57 else f"a{i}") for i in range(200)]
    path = tmp_path / "chats.jsonl"
    path.write_text("".join(json.dumps({"conversation": [{"input": q, "output": a}]}) + "\n"
                            for q, a in pairs))
    result = run_bad(tmp_path, {"recipe": "internlm-chat-7b/qa_qlora_zero2",
                                "train": {"method": "lora", "deepspeed": None},
                                "model": {"path": str(model)}, "dataset": {"path": str(path)}})
    assert_refused(result, f"config field dataset.path: line 58 of {path} holds 1,000,003 bytes",
                   "at least 1,000,003 tokens", "the model reads at most 512 positions",
                   "shorten or remove it")


def test_an_owner_name_with_a_line_break_is_refused(tmp_path):
    """Defect: the newline was written into every training answer."""
    assert_refused(run_bad(tmp_path, {"assistant": {"name": "Ada\nLovelace"}}),
                   "config field assistant.name = 'Ada\\nLovelace'",
                   "character 4 is a control character or line break")


def test_a_results_dir_that_is_a_file(tmp_path):
    """Defect: said 'the folder is not writable by this user' (as root too)."""
    (tmp_path / "a-file").write_text("in the way")
    assert_refused(run_bad(tmp_path, {"results_dir": "a-file"}),
                   "config field results_dir = 'a-file'", "is a file, not a folder")


def test_a_second_run_in_the_same_folder_names_the_live_one_and_waits(tmp_path):
    """Defect: Snakemake's lock message named the checkout and advised --unlock, which would
    break the live run."""
    with another_run_holding(tmp_path) as other:
        result = snakemake(tmp_path, {"recipe": "tiny-internlm2/lora_cpu", "run_name": "mine",
                                      "results_dir": "results"}, "--until", "data")
        planned = run_bad(tmp_path, {})
    assert planned.returncode == 0, planned.stderr[-3000:]  # a dry run writes nothing: let through
    assert_refused(result, f"another run is using this folder ({tmp_path}): pid {other.pid}",
                   "run_name other", "Wait for it to finish", "Do not use --unlock")


def test_a_config_value_snakemake_cannot_hand_to_its_jobs(tmp_path):
    """An owner name with both quote characters breaks Snakemake's own job command line: refused
    naming the key (the same name in a --configfile works: test_pipeline)."""
    result = snakemake(tmp_path, {"run_name": "kept", "results_dir": "results"}, "--dry-run",
                       "--config", "assistant={name: \"{x} O'Neil\"}")
    assert_refused(result, "--config assistant=...", "put it in a --configfile")


def test_missing_dataset_file(tmp_path):
    assert_refused(run_bad(tmp_path, {"dataset": {"path": str(tmp_path / "none.json")}}),
                   "config field dataset.path", "file not found")


def test_nested_config_values_take_the_schema_types(tmp_path):
    """Defect: `--config train='{max_iters: 480}'` (the README's style) was refused with
    "'480' is not of type 'integer'": Snakemake reads nested values as strings."""
    result = snakemake(tmp_path, {"run_name": "kept", "results_dir": "results"}, "--dry-run",
                       "--config", "train={max_iters: 480, lr: 2e-4, deepspeed: null}")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "Job stats" in result.stdout + result.stderr


def test_coercion_keeps_strings_where_the_schema_wants_strings():
    from harness.workflow import REPO
    from xtuner_recipe import settings

    schema = settings.load_schema(REPO)
    coerced = settings.coerce_to_schema(
        {"train": {"max_iters": "480", "lr": "2e-4", "deepspeed": "null"},
         "assistant": {"name": "123"}, "run_name": "007"}, schema, schema)
    assert coerced == {"train": {"max_iters": 480, "lr": 2e-4, "deepspeed": None},
                       "assistant": {"name": "123"}, "run_name": "007"}
