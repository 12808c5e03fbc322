import csv
import json
import re
import unicodedata
from pathlib import Path

import pytest

from xtuner_recipe import sample_data

COMMITTED = Path(__file__).resolve().parents[2] / "recipes" / "data"
FILES = (sample_data.QA_FILE, sample_data.CHAT_FILE, sample_data.NOTES_FILE)
CJK = re.compile(r"[\u4e00-\u9fff]")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sample-data")
    sample_data.write_all(folder)
    return folder


def normalised(text):
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def test_generation_is_byte_identical(generated, tmp_path):
    counts = sample_data.write_all(tmp_path / "again")
    assert set(counts) == set(FILES)
    for name in FILES:
        assert (tmp_path / "again" / name).read_bytes() == (generated / name).read_bytes()


@pytest.mark.parametrize("name", FILES)
def test_committed_data_matches_its_generator(generated, name):
    assert (COMMITTED / name).read_bytes() == (generated / name).read_bytes(), (
        "recipes/data is stale: run `python -m xtuner_recipe.sample_data recipes/data`")


def test_qa_csv(generated):
    with open(generated / sample_data.QA_FILE, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert 300 <= len(rows) <= 500
    assert all(row["question"].strip() and row["answer"].strip() for row in rows)
    assert any(CJK.search(row["question"]) for row in rows)
    assert any(not CJK.search(row["question"]) for row in rows)
    questions = [normalised(row["question"]) for row in rows]
    assert len(set(questions)) == len(questions)


def test_chat_records_alternate_and_end_with_the_assistant(generated):
    lines = (generated / sample_data.CHAT_FILE).read_text(encoding="utf-8").splitlines()
    for line in lines:
        messages = json.loads(line)["messages"]
        if messages[0]["role"] == "system":
            messages = messages[1:]
        roles = [message["role"] for message in messages]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        assert roles.count("user") >= 2
        assert all(message["content"].strip() for message in messages)


def test_notes_paragraphs(generated):
    text = (generated / sample_data.NOTES_FILE).read_text(encoding="utf-8")
    paragraphs = text.rstrip("\n").split("\n\n")
    assert 250 <= len(paragraphs) <= 350
    assert all(p.strip() for p in paragraphs)
    assert len(set(paragraphs)) == len(paragraphs)
    chinese = sum(1 for p in paragraphs if CJK.search(p)) / len(paragraphs)
    assert 0.15 <= chinese <= 0.4
