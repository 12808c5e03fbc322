"""The user's own data: every format read, every bad record named, the split seeded and leak-free."""

import csv
import json
from types import SimpleNamespace
from unittest.mock import ANY

import pytest

from xtuner_recipe import user_data
from xtuner_recipe.user_data import DatasetError, prepare, read_records, read_source

RECORD = {"conversation": [{"input": "你是谁", "output": "我是Ada的助手"}]}


def spec(path, **values):
    """The dataset.* fields with the schema's defaults, as settings.resolve_task passes them."""
    fields = {"path": str(path), "test_path": None, "test_size": 0.1, "split_seed": 0,
              "question_column": "question", "answer_column": "answer", "system_column": None,
              "sheet": None, "header_row": None, "encoding": "utf-8", "text_field": "text"}
    return SimpleNamespace(**{**fields, **values})


def write_csv(path, rows, header=("question", "answer")):
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_xlsx(path, rows, header=("question", "answer"), sheet="Sheet1"):
    import openpyxl

    book = openpyxl.Workbook()
    book.active.title = sheet
    book.active.append(list(header))
    for row in rows:
        book.active.append(list(row))
    book.save(path)
    return path


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("[]", "no records"),
    ("[{\"conversation\": [{\"input\": \"hi\"}]}]", "record 0 conversation\\[0\\].output must be"),
    ("[{\"conversation\": [{\"input\": \"hi\", \"output\": \"\"}]}]", "output must be a non-empty"),
    ("[{\"prompt\": \"hi\"}]", "record 0 has neither 'conversation'"),
    ("[1]", "record 0 is a int"),
    ("[{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}]", "no assistant message"),
    ("[{\"messages\": [{\"role\": \"bot\", \"content\": \"hi\"}]}]", "role must be"),
    ("[{\"conversation\": [{\"input\": \"a\", \"output\": \"b\"}]},\n"
     " {\"messages\": [{\"role\": \"assistant\", \"content\": \"b\"}]}]", "record 1 is in 'messages'"),
    ("[{\"conversation\": ", "read as one JSON array, which is not valid JSON at line 1"),
    ("{\"conversation\": [{\"input\": \"a\", \"output\": \"b\"}]}\n{oops}\n", "line 2 is not valid JSON"),
    ("[{\"text\": \"a\"}, {\"text\": \"\"}]", "record 1 has no non-empty 'text' string"),
])
def test_bad_json_records_are_named(tmp_path, content, message):
    source = tmp_path / "bad.json"
    source.write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_source(source, spec(source))


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path):
    """Defect: a BOM was refused with a Python-internal hint (and a JSON array was then read as
    JSONL)."""
    for name, text in (("array.json", json.dumps([RECORD], ensure_ascii=False, indent=1)),
                       ("lines.jsonl", json.dumps(RECORD, ensure_ascii=False) + "\n")):
        source = tmp_path / name
        source.write_bytes("\ufeff".encode() + text.encode("utf-8"))
        assert read_records(source) == [(ANY, RECORD)]


def test_files_that_are_not_utf8_are_refused_plainly(tmp_path):
    for name in ("gbk.jsonl", "gbk.csv", "gbk.txt"):
        source = tmp_path / name
        source.write_bytes("question,answer\n你是谁,a\n".encode("gbk"))
        with pytest.raises(DatasetError, match=f"{name}: not UTF-8 text .*save the file as UTF-8"):
            read_source(source, spec(source))


def test_missing_files_name_their_field(tmp_path):
    with pytest.raises(DatasetError, match="dataset.path = .*file not found"):
        prepare(spec(tmp_path / "nope.json"))
    source = write_csv(tmp_path / "qa.csv", [("q1", "a1"), ("q2", "a2")])
    with pytest.raises(DatasetError, match="dataset.test_path = .*file not found"):
        prepare(spec(source, test_path=str(tmp_path / "nope.csv")))


def test_unknown_suffix_lists_the_formats(tmp_path):
    source = tmp_path / "data.parquet"
    source.write_bytes(b"x")
    with pytest.raises(DatasetError, match="unknown format .parquet; use .json/.jsonl"):
        prepare(spec(source))


@pytest.mark.parametrize("writer", [write_csv, write_xlsx])
def test_table_columns_are_configurable_and_cells_become_text(tmp_path, writer):
    source = writer(tmp_path / f"qa.{'csv' if writer is write_csv else 'xlsx'}",
                    [("How much?", 48, "Be brief."), ("多少钱？", "48元", "")],
                    header=("Frage", "Antwort", "System"))
    task, record_format, records = read_source(source, spec(
        source, question_column="Frage", answer_column="Antwort", system_column="System"))
    assert (task, record_format) == ("qa", "conversation")
    assert [r for _, r in records] == [
        {"conversation": [{"input": "How much?", "output": "48", "system": "Be brief."}]},
        {"conversation": [{"input": "多少钱？", "output": "48元"}]}]
    assert [where for where, _ in records] == ["row 2", "row 3"]


def test_a_csv_cell_may_hold_line_breaks_and_commas(tmp_path):
    source = write_csv(tmp_path / "qa.csv", [("Steps?", "First, warm the pot.\nThen pour.")])
    record = read_source(source, spec(source))[2][0][1]
    assert record["conversation"][0]["output"] == "First, warm the pot.\nThen pour."


@pytest.mark.parametrize("writer", [write_csv, write_xlsx])
def test_a_table_without_the_named_column_says_which_columns_it_has(tmp_path, writer):
    source = writer(tmp_path / f"qa.{'csv' if writer is write_csv else 'xlsx'}",
                    [("q", "a")], header=("Q", "A"))
    with pytest.raises(DatasetError, match="dataset.question_column = 'question'.*has no column "
                                           "'question'; no row names it \\(its first row names 'Q', 'A'\\)"):
        prepare(spec(source))


@pytest.mark.parametrize("writer", [write_csv, write_xlsx])
def test_empty_cells_are_named_by_row(tmp_path, writer):
    source = writer(tmp_path / f"qa.{'csv' if writer is write_csv else 'xlsx'}",
                    [("q1", "a1"), ("q2", None), ("q3", "a3"), ("q4", "")])
    with pytest.raises(DatasetError, match="rows 3, 5 have an empty 'answer' cell "
                                           "\\(config field dataset.answer_column"):
        prepare(spec(source))


def test_an_xlsx_sheet_is_chosen_by_name(tmp_path):
    source = write_xlsx(tmp_path / "qa.xlsx", [("q", "a")], sheet="FAQ")
    with pytest.raises(DatasetError, match="dataset.sheet = 'Other'.*its sheets are FAQ"):
        prepare(spec(source, sheet="Other"))
    assert read_source(source, spec(source, sheet="FAQ"))[2][0][1]["conversation"][0] == {
        "input": "q", "output": "a"}


def test_the_split_is_seeded_and_keeps_every_copy_of_a_question_on_one_side(tmp_path):
    rows = [(f"question {i}", f"answer {i}") for i in range(40)]
    rows += [("Question 3", "answer 3 again"), ("question  7", "answer 7")]  # normalised copies
    source = write_csv(tmp_path / "qa.csv", rows)
    first = prepare(spec(source, test_size=0.25))
    assert first == prepare(spec(source, test_size=0.25))  # the same seed, the same split
    assert first.test != prepare(spec(source, test_size=0.25, split_seed=1)).test
    assert len({user_data.question_key(r) for r in first.test}) == 10
    trained = {user_data.question_key(r) for r in first.train}
    assert not trained & {user_data.question_key(r) for r in first.test}
    assert len(first.train) + len(first.test) == 42
    assert first.warnings == ("2 questions occur more than once (1 of them with different "
                              "answers); every copy stays on one side of the train/test split",)
    assert len(prepare(spec(source, test_size=5)).test) == 5  # a count from 1 up


def test_test_size_must_leave_training_data_and_a_test(tmp_path):
    source = write_csv(tmp_path / "qa.csv", [("q1", "a1"), ("q2", "a2")])
    with pytest.raises(DatasetError, match="dataset.test_size = 2: that is 2 of 2 distinct"):
        prepare(spec(source, test_size=2))
    with pytest.raises(DatasetError, match="the qa evaluation needs held-out records"):
        prepare(spec(source, test_size=0))


def test_a_test_file_that_overlaps_the_training_data_is_refused(tmp_path):
    source = write_csv(tmp_path / "train.csv", [("q1", "a1"), ("q2", "a2")])
    test = write_csv(tmp_path / "test.csv", [("q3", "a3"), ("Q2 ", "another answer")])
    with pytest.raises(DatasetError, match="dataset.test_path = .*row 3 also occur in the "
                                           "training data"):
        prepare(spec(source, test_path=str(test)))
    write_csv(test, [("q3", "a3")])
    prepared = prepare(spec(source, test_path=str(test)))
    assert (len(prepared.train), len(prepared.test)) == (2, 1)


def test_multi_turn_messages_are_split_by_their_first_question(tmp_path):
    records = [{"messages": [{"role": "user", "content": f"tea {i}?"},
                             {"role": "assistant", "content": "green"},
                             {"role": "user", "content": "and the price?"},
                             {"role": "assistant", "content": f"{i} yuan"}]} for i in range(10)]
    source = tmp_path / "chat.jsonl"
    source.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    prepared = prepare(spec(source, test_size=0.2))
    assert (prepared.task, prepared.format) == ("qa", "messages")
    assert (len(prepared.train), len(prepared.test)) == (8, 2)


def test_text_for_pretraining_from_a_file_a_folder_or_jsonl(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "a.txt").write_text("First document.\n\nSecond\ndocument.\n\n\n")
    (folder / "b.txt").write_text("\ufeffThird document.\r\n\r\nFourth one.\r\n")
    task, record_format, docs = read_source(folder, spec(folder))
    assert (task, record_format) == ("pretrain", "text")
    assert [d["text"] for _, d in docs] == ["First document.", "Second\ndocument.",
                                            "Third document.", "Fourth one."]
    lines = tmp_path / "docs.jsonl"
    lines.write_text('{"body": "one"}\n{"body": "two"}\n')
    assert read_source(lines, spec(lines, text_field="body"))[2][1][1] == {"text": "two"}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="the folder holds no .txt file"):
        prepare(spec(empty))


def test_the_committed_sample_data_splits_cleanly():
    """The recipes' own datasets (recipes/data/) read without warnings and split as documented."""
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "recipes" / "data"
    qa = prepare(spec(data / "tea_house_qa.csv"))
    assert (qa.task, len(qa.train) + len(qa.test), qa.warnings) == ("qa", 448, ())
    notes = prepare(spec(data / "tea_house_notes.txt"))
    assert (notes.task, len(notes.test), notes.warnings) == ("pretrain", 30, ())
    chat = prepare(spec(data / "tea_house_chat.jsonl"))
    assert chat.format == "messages"


# ---- issue 27: the same question, however typed; sheets as people export them --------------

def tempting_questions():
    """(concept, question) rows: every concept typed two or three ways that are one question to
    a reader (spaces between CJK characters, an in-cell line break, full-width letters and
    punctuation, CJK quotes, case, a space before the question mark), in a shuffled order."""
    import random

    spellings = [
        ("孕妇可以吃感冒药{i}吗？", "孕妇 可以吃感冒药{i}吗?", "孕妇\n可以吃感冒药{i} 吗？"),
        ("“板蓝根{i}”能预防流感吗？", "「板蓝根{i}」 能 预防流感吗?"),
        ("儿童每天最多吃几粒{i}号药？", "儿童每天最多吃几粒 {i} 号药 ？"),
        ("Can I take tablet {i} with milk?", "can i take  TABLET {i} with milk ?",
         "Ｃａｎ I take tablet {i} with milk？"),
        ("饭后服用{i}，还是饭前？", "饭后服用{i}, 还是饭前?"),
    ]
    rows = [(f"{t}-{i}", form.format(i=i)) for t, forms in enumerate(spellings) for i in range(8)
            for form in forms]
    random.Random(27).shuffle(rows)
    return rows


def test_the_same_question_typed_differently_never_leaks_into_the_test_set(tmp_path):
    """Defect (issue 27): '孕妇 可以吃感冒药吗？' and '孕妇可以吃感冒药吗？' were two questions, so a
    split could train on one and test the other (26 of 200 seeds leaked on a 65-row sheet)."""
    rows = tempting_questions()
    concept = {question: c for c, question in rows}
    source = write_csv(tmp_path / "qa.csv", [(q, f"答案 {c}") for c, q in rows])
    leaks = []
    for seed in range(200):
        prepared = prepare(spec(source, split_seed=seed, test_size=0.2))
        trained = {concept[r["conversation"][0]["input"]] for r in prepared.train}
        tested = {concept[r["conversation"][0]["input"]] for r in prepared.test}
        leaks += [(seed, c) for c in trained & tested]
        assert len(tested) == 8  # a fifth of the 40 concepts
    assert leaks == []


def test_questions_that_differ_only_in_cjk_spacing_are_one_repeated_question(tmp_path):
    source = write_csv(tmp_path / "qa.csv", [("孕妇 可以吃感冒药吗？", "不建议自行服用。"),
                                             ("孕妇可以吃感冒药吗?", "请先咨询医生。"),
                                             ("Is it safe?", "Yes."), ("儿童用量？", "减半。")])
    assert prepare(spec(source, test_size=1)).warnings == (
        "1 questions occur more than once (1 of them with different answers); every copy stays "
        "on one side of the train/test split",)
    test = write_csv(tmp_path / "test.csv", [("孕妇可以吃 感冒药吗", "不建议。")])
    with pytest.raises(DatasetError, match="row 2 also occur in the training data"):
        prepare(spec(source, test_path=str(test)))


def write_messy_xlsx(path, rows, merge=None):
    """A sheet as people keep them: a merged title row and a blank row above the header."""
    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["药品问答 2026"])
    sheet.merge_cells("A1:B1")
    sheet.append([])
    sheet.append(["问题", "答案"])
    for row in rows:
        sheet.append([value for value, _ in row])
        for cell, (_, number_format) in zip(sheet[sheet.max_row], row):
            cell.number_format = number_format
    if merge:
        sheet.merge_cells(merge)
    book.save(path)
    return path


GENERAL = "General"


def messy_spec(path, **values):
    return spec(path, question_column="问题", answer_column="答案", **values)


def test_xlsx_cells_are_read_as_the_sheet_shows_them_and_the_conversions_are_listed(tmp_path):
    """Defect (issue 27): a date trained as '2027-06-30 00:00:00', 5 % as 0.05, ¥12.50 as 12.5."""
    import datetime

    source = write_messy_xlsx(tmp_path / "qa.xlsx", [
        [("有效期到哪天？", GENERAL), (datetime.datetime(2027, 6, 30), 'yyyy"年"m"月"d"日"')],
        [("含量是多少？", GENERAL), (0.05, "0%")],
        [("多少钱一盒？", GENERAL), (12.5, '"¥"#,##0.00')],
        [("一箱多少粒？", GENERAL), (12000, "#,##0")],
        [("每次几粒？", GENERAL), (2, GENERAL)],
        [("几点服用？", GENERAL), (datetime.time(8, 30), "h:mm")],
    ])
    task, _, found, notes = user_data.read_source_noted(source, messy_spec(source))
    assert [r["conversation"][0]["output"] for _, r in found] == [
        "2027年6月30日", "5%", "¥12.50", "12,000", "2", "8:30"]
    assert [where for where, _ in found] == ["row 4", "row 5", "row 6", "row 7", "row 8", "row 9"]
    assert notes[1] == (
        f"{source}: 5 cell(s) read as the sheet shows them, not as stored (date: 2, percentage: 1, "
        "currency: 1, thousands separator: 1): row 4 '答案': 2027-06-30 00:00:00 -> 2027年6月30日, "
        "row 5 '答案': 0.05 -> 5%, row 6 '答案': 12.5 -> ¥12.50, row 7 '答案': 12000 -> 12,000, "
        "row 9 '答案': 08:30:00 -> 8:30")


def test_a_number_format_the_reader_cannot_show_is_refused_by_cell(tmp_path):
    source = write_messy_xlsx(tmp_path / "qa.xlsx", [
        [("每次多少片？", GENERAL), (0.5, "# ?/?")], [("浓度？", GENERAL), (12345.0, "0.00E+00")]])
    with pytest.raises(DatasetError, match="row 4 '答案' \\('# \\?/\\?'\\), row 5 '答案' "
                                           "\\('0.00E\\+00'\\): a number format this reader cannot "
                                           "show .* format those cells as Text"):
        prepare(messy_spec(source))


@pytest.mark.parametrize("suffix", ["xlsx", "csv"])
def test_a_title_and_a_blank_row_above_the_header_are_skipped_and_said(tmp_path, suffix):
    """Defect (issue 27): "has no column '问题'; its first row names '药品问答 2026'", and no key to
    name the header row."""
    rows = [[(f"问题{i}", GENERAL), (f"答案{i}", GENERAL)] for i in range(4)]
    if suffix == "xlsx":
        source = write_messy_xlsx(tmp_path / "qa.xlsx", rows)
    else:
        source = tmp_path / "qa.csv"
        source.write_text("药品问答 2026,\n,\n问题,答案\n"
                          + "".join(f"问题{i},答案{i}\n" for i in range(4)), encoding="utf-8-sig")
    prepared = prepare(messy_spec(source, test_size=1))
    assert len(prepared.train) + len(prepared.test) == 4
    assert prepared.warnings == (f"{source}: row 3 is read as the header row, the first that "
                                 "names the columns; the 1 non-empty row(s) above it are skipped "
                                 "(set dataset.header_row: 3 to choose the header yourself)",)
    assert prepare(messy_spec(source, test_size=1, header_row=3)).warnings == ()
    with pytest.raises(DatasetError, match="dataset.header_row = '2': row 2 of .* is empty or "
                                           "past the table's end"):
        prepare(messy_spec(source, header_row=2))
    with pytest.raises(DatasetError, match="dataset.question_column = '问题': .* has no column "
                                           "'问题'; row 1 \\(config field dataset.header_row = "
                                           "'1'\\) names '药品问答 2026'"):
        prepare(messy_spec(source, header_row=1))


def test_an_empty_cell_inside_a_merged_cell_is_named_as_merged_with_the_fix(tmp_path):
    """Defect (issue 27): "row 69 has an empty '答案' cell", no word that it is merged."""
    rows = [[("感冒药能和酒一起吗？", GENERAL), ("不能，服药期间禁酒。", GENERAL)],
            [("头孢能和酒一起吗？", GENERAL), (None, GENERAL)], [("q", GENERAL), ("a", GENERAL)]]
    source = write_messy_xlsx(tmp_path / "qa.xlsx", rows, merge="B4:B5")
    with pytest.raises(DatasetError, match="row 5's '答案' cell is inside the merged cell B4:B5, "
                                           "whose value only its first row holds; unmerge those "
                                           "cells .* fill the value into every row"):
        prepare(messy_spec(source))


def test_a_csv_in_another_encoding_is_read_with_dataset_encoding(tmp_path):
    """Defect (issue 27): GBK was refused with no `encoding` key and no word of 'CSV UTF-8'."""
    source = tmp_path / "qa.csv"
    source.write_bytes("问题,答案\r\n孕妇可以吃感冒药吗？,请先咨询医生。\r\n儿童用量？,减半。\r\n"
                       .encode("gbk"))
    with pytest.raises(DatasetError, match="not UTF-8 text .*'CSV UTF-8 \\(Comma delimited\\)'.*"
                                           "set dataset.encoding to the file's encoding"):
        prepare(messy_spec(source))
    found = read_source(source, messy_spec(source, encoding="gbk"))[2]
    assert found[0][1]["conversation"][0] == {"input": "孕妇可以吃感冒药吗？", "output": "请先咨询医生。"}
    with pytest.raises(DatasetError, match="dataset.encoding = 'gkb': no such text encoding"):
        prepare(messy_spec(source, encoding="gkb"))
    with pytest.raises(DatasetError, match="dataset.encoding = 'ascii': .* is not ascii text "
                                           "\\(byte 0 is 0xce\\)"):
        prepare(messy_spec(source, encoding="ascii"))
