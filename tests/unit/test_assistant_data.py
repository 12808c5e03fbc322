import json
from unittest.mock import ANY

import pytest

from xtuner_recipe import assistant_data as data

PAIRS = [{"input": "请介绍一下你自己", "output": "我是{name}的小助手"},
         {"input": "你在实战营做什么", "output": "我在这里帮助{name}完成任务"}]


def test_generate_like_the_tutorial():
    records = data.generate_records("门客er", PAIRS, 4650, "conversation")
    assert len(records) == 2 * 4651  # the pairs once, then n more copies
    assert records[0] == {"conversation": [{"input": "请介绍一下你自己", "output": "我是门客er的小助手"}]}
    assert records[3]["conversation"][0]["output"] == "我在这里帮助门客er完成任务"


def test_generate_openai_messages():
    record = data.generate_records("Ada", PAIRS, 0, "messages")[0]
    assert record == {"messages": [{"role": "user", "content": "请介绍一下你自己"},
                                   {"role": "assistant", "content": "我是Ada的小助手"}]}


def test_written_file_is_readable_utf8(tmp_path):
    out = tmp_path / "assistant.json"
    fmt = data.build_dataset({"name": "门客er", "pairs": PAIRS, "repeat": 1,
                              "format": "conversation", "dataset": None}, out)
    assert fmt == "conversation"
    assert "门客er" in out.read_text(encoding="utf-8")  # ensure_ascii=False
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 4


def test_user_jsonl_dataset_is_checked_and_copied(tmp_path):
    source = tmp_path / "mine.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in
                                data.generate_records("Ada", PAIRS, 0, "messages")) + "\n")
    out = tmp_path / "assistant.json"
    assert data.build_dataset({"dataset": str(source)}, out) == "messages"
    assert len(json.loads(out.read_text())) == 2


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("[]", "no records"),
    ("[{\"conversation\": [{\"input\": \"hi\"}]}]", "record 0 conversation\\[0\\].output must be"),
    ("[{\"conversation\": [{\"input\": \"hi\", \"output\": \"\"}]}]", "output must be a non-empty"),
    ("[{\"text\": \"hi\"}]", "record 0 has neither 'conversation'"),
    ("[1]", "record 0 is a int"),
    ("[{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}]", "no assistant message"),
    ("[{\"messages\": [{\"role\": \"bot\", \"content\": \"hi\"}]}]", "role must be"),
    ("[{\"conversation\": [{\"input\": \"a\", \"output\": \"b\"}]},\n"
     " {\"messages\": [{\"role\": \"assistant\", \"content\": \"b\"}]}]", "record 1 is in 'messages'"),
    ("[{\"conversation\": ", "read as one JSON array, which is not valid JSON at line 1"),
    ("{\"conversation\": [{\"input\": \"a\", \"output\": \"b\"}]}\n{oops}\n", "line 2 is not valid JSON"),
])
def test_bad_records_are_named(tmp_path, content, message):
    source = tmp_path / "bad.json"
    source.write_text(content)
    with pytest.raises(data.DatasetError, match=message):
        data.build_dataset({"dataset": str(source)}, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path):
    """Defect: a BOM was refused with a Python-internal hint (and a JSON array was then read as
    JSONL)."""
    record = {"conversation": [{"input": "你是谁", "output": "我是Ada的助手"}]}
    for name, text in (("array.json", json.dumps([record], ensure_ascii=False, indent=1)),
                       ("lines.jsonl", json.dumps(record, ensure_ascii=False) + "\n")):
        source = tmp_path / name
        source.write_bytes("\ufeff".encode() + text.encode("utf-8"))
        assert data.read_records(source) == [(ANY, record)]


def test_a_file_that_is_not_utf8_is_refused_plainly(tmp_path):
    source = tmp_path / "gbk.jsonl"
    source.write_bytes('{"conversation": [{"input": "你是谁", "output": "a"}]}'.encode("gbk"))
    with pytest.raises(data.DatasetError, match="not UTF-8 text .*save the file as UTF-8"):
        data.read_records(source)


def test_missing_dataset_file_names_the_field(tmp_path):
    with pytest.raises(data.DatasetError, match="assistant.dataset.*file not found"):
        data.read_records(tmp_path / "nope.json")


def test_replay_pairs_become_the_asked_share_of_the_records():
    from xtuner_recipe.assistant_data import with_replay

    records = [data.conversation_record("q", "a")] * 30
    replay = [{"input": "p1", "output": "r1"}, {"input": "p2", "output": "r2"}]
    mixed = with_replay(records, replay, 0.25, "conversation")
    assert len(mixed) == 40 and mixed[:30] == records  # 10 of 40 = 0.25
    assert mixed[30:33] == [data.conversation_record("p1", "r1"),
                            data.conversation_record("p2", "r2"),
                            data.conversation_record("p1", "r1")]
    assert with_replay(records, replay, 0, "conversation") == records
    assert with_replay(records, replay, 0.5, "messages")[-1] == \
        data.messages_record("p2", "r2")
