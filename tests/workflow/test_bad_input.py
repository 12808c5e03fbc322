"""Bad input stops the real workflow before any job runs, with a message that names the field and
the fix, and leaves what was already built untouched."""

import pytest

from harness.workflow import snakemake, variant


@pytest.fixture
def built_artifact(tmp_path):
    """Something a previous run left, which a failed run must not remove or rewrite."""
    artifact = tmp_path / "results" / "kept" / "data" / "assistant.json"
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
    assert_refused(run_bad(tmp_path, {"assistant": {"dataset": str(dataset)}}), *fragments)
    assert built_artifact.stat().st_mtime_ns == before


def test_missing_dataset_file(tmp_path):
    assert_refused(run_bad(tmp_path, {"assistant": {"dataset": str(tmp_path / "none.json")}}),
                   "assistant.dataset", "file not found")
