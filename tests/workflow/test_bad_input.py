"""Bad input stops the real workflow before any job runs, with a message that names the field and
the fix, and leaves what was already built untouched."""

import pytest

from harness.workflow import snakemake, variant


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
