import json

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


def data_settings(**values):
    from xtuner_recipe.settings import DataSettings

    fields = {"task": "identity", "name": "门客er", "pairs": PAIRS, "repeat": 1,
              "format": "conversation", "replay_share": 0.0, "path": None, "test_path": None,
              "test_size": 0.1, "split_seed": 0, "question_column": "question",
              "answer_column": "answer", "system_column": None, "sheet": None,
              "header_row": None, "encoding": "utf-8", "text_field": "text"}
    return DataSettings(**{**fields, **values})


def test_written_file_is_readable_utf8(tmp_path):
    out, test = tmp_path / "assistant.json", tmp_path / "test.json"
    info = data.build_dataset(data_settings(), out, test)
    assert info == {"task": "identity", "format": "conversation", "records": 4,
                    "test_records": 0, "warnings": []}
    assert "门客er" in out.read_text(encoding="utf-8")  # ensure_ascii=False
    assert len(json.loads(out.read_text(encoding="utf-8"))) == 4
    assert json.loads(test.read_text()) == []


def test_own_identity_jsonl_is_checked_and_copied_whole(tmp_path):
    source = tmp_path / "mine.jsonl"
    source.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in
                                data.generate_records("Ada", PAIRS, 0, "messages")) + "\n")
    out, test = tmp_path / "assistant.json", tmp_path / "test.json"
    info = data.build_dataset(data_settings(path=str(source)), out, test)
    assert info["format"] == "messages" and info["test_records"] == 0
    assert len(json.loads(out.read_text())) == 2


def test_own_qa_data_is_split_into_train_and_test(tmp_path):
    source = tmp_path / "qa.csv"
    source.write_text("question,answer\n" + "".join(f"q{i},a{i}\n" for i in range(20)))
    out, test = tmp_path / "assistant.json", tmp_path / "test.json"
    info = data.build_dataset(data_settings(task="qa", path=str(source), test_size=0.25), out,
                              test)
    assert (info["records"], info["test_records"]) == (15, 5)
    trained = {r["conversation"][0]["input"] for r in json.loads(out.read_text())}
    tested = {r["conversation"][0]["input"] for r in json.loads(test.read_text())}
    assert len(trained | tested) == 20 and not trained & tested


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


def test_replay_joins_own_qa_training_data_but_never_its_test(tmp_path):
    source = tmp_path / "qa.csv"
    source.write_text("question,answer\n" + "".join(f"q{i},a{i}\n" for i in range(20)))
    replay = tmp_path / "replay.json"
    replay.write_text(json.dumps([{"input": "p1", "output": "r1"}]))
    out, test = tmp_path / "assistant.json", tmp_path / "test.json"
    info = data.build_dataset(data_settings(task="qa", path=str(source), test_size=0.25,
                                            replay_share=0.25), out, test, replay)
    assert (info["records"], info["test_records"]) == (20, 5)  # 15 pairs + 5 replayed answers
    assert json.loads(out.read_text())[-1] == data.conversation_record("p1", "r1")
    assert data.conversation_record("p1", "r1") not in json.loads(test.read_text())
