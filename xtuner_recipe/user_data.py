"""The user's own data: read it, check every record, and split it into train and test, seeded.

Formats, told apart by the file's suffix (dataset.path):
- .json / .jsonl: XTuner's {"conversation": [{"input", "output"}, ...]} or OpenAI's
  {"messages": [{"role", "content"}, ...]}, multi-turn included; for pre-training, objects with a
  text field (dataset.text_field).
- .csv / .xlsx: one question/answer pair per row, in the columns dataset.question_column and
  dataset.answer_column (and dataset.system_column, if set), under a header row that names them
  (dataset.header_row, or the first row that does: a title above it is skipped, with a warning).
  xlsx cells are read as the sheet shows them (xtuner_recipe.shown_cells), also with a warning.
- .txt, or a folder of .txt files: plain text for pre-training, one document per paragraph
  (paragraphs are separated by a blank line).

The split keeps every copy of a question (of a document) on one side, so no test item was trained
on; an explicit test file (dataset.test_path) must not share a question with the training data.
"The same question" is text_metrics.normalise of its first user turn, everywhere.
Everything here runs at parse time too (rules/common.smk): bad data stops before any job starts.
"""

import codecs
import collections
import csv
import dataclasses
import io
import json
import random
from pathlib import Path

from xtuner_recipe import shown_cells
from xtuner_recipe.text_metrics import normalise

TABLE_SUFFIXES = (".csv", ".xlsx")
JSON_SUFFIXES = (".json", ".jsonl")
SHOWN = 5  # how many bad rows or overlapping questions an error names


class DatasetError(ValueError):
    """A dataset record that xtuner cannot train on; the message says which one and why."""


@dataclasses.dataclass(frozen=True)
class Prepared:
    """The split data of a run: records in the format xtuner reads them in."""
    task: str  # qa (conversations) or pretrain (text)
    format: str  # conversation, messages or text
    train: list
    test: list
    warnings: tuple


def _field(spec, key):
    return f"config field dataset.{key} = {str(getattr(spec, key))!r}"


def _listed(items):
    shown = ", ".join(str(i) for i in items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _read_text(path, encoding="utf-8"):
    """A text file in dataset.encoding (UTF-8: a byte-order mark is allowed)."""
    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        raise DatasetError(f"config field dataset.encoding = {encoding!r}: no such text encoding; "
                           "use utf-8, gb18030, gbk or big5, say") from None
    try:
        return Path(path).read_text(encoding="utf-8-sig" if utf8 else encoding)
    except UnicodeDecodeError as e:
        byte = f"byte {e.start} is {e.object[e.start]:#x}"
        if utf8:
            raise DatasetError(
                f"{path}: not UTF-8 text ({byte}); save the file as UTF-8 (Excel: Save As, type "
                "'CSV UTF-8 (Comma delimited)'), or set dataset.encoding to the file's encoding "
                "(Excel's plain 'CSV' type on Chinese Windows writes gbk)") from None
        raise DatasetError(f"config field dataset.encoding = {encoding!r}: {path} is not "
                           f"{encoding} text ({byte}); set the file's own encoding, or save it "
                           "as UTF-8 and remove the field") from None


# ---- JSON and JSONL ---------------------------------------------------------------------

def _nonempty_str(value):
    return isinstance(value, str) and value.strip() != ""


def record_problem(record):
    """Why one record is unusable, or None. Returns (format, problem)."""
    if not isinstance(record, dict):
        return None, f"is a {type(record).__name__}, not an object"
    if "conversation" in record:
        turns = record["conversation"]
        if not isinstance(turns, list) or not turns:
            return "conversation", "'conversation' must be a non-empty list"
        for i, turn in enumerate(turns):
            if not isinstance(turn, dict):
                return "conversation", f"conversation[{i}] is not an object"
            for key in ("input", "output"):
                if not _nonempty_str(turn.get(key)):
                    return "conversation", f"conversation[{i}].{key} must be a non-empty string"
            if "system" in turn and not isinstance(turn["system"], str):
                return "conversation", f"conversation[{i}].system must be a string"
        return "conversation", None
    if "messages" in record:
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            return "messages", "'messages' must be a non-empty list"
        roles = []
        for i, message in enumerate(messages):
            if not isinstance(message, dict):
                return "messages", f"messages[{i}] is not an object"
            if message.get("role") not in ("system", "user", "assistant"):
                return "messages", f"messages[{i}].role must be system, user or assistant"
            if not _nonempty_str(message.get("content")):
                return "messages", f"messages[{i}].content must be a non-empty string"
            roles.append(message["role"])
        if "assistant" not in roles:
            return "messages", "has no assistant message to learn from"
        return "messages", None
    return None, "has neither 'conversation' (XTuner) nor 'messages' (OpenAI) key"


def read_records(path, encoding="utf-8"):
    """Read a JSON list or a JSONL file (UTF-8, a byte-order mark allowed); errors name the line
    and say which of the two the file was read as."""
    text = _read_text(path, encoding)
    if not text.strip():
        raise DatasetError(f"{path}: the dataset is empty")
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: it starts with '[', so it is read as one JSON array, "
                               f"which is not valid JSON at line {e.lineno}, column {e.colno} "
                               f"({e.msg})") from None
        return [(f"record {i}", r) for i, r in enumerate(records)]
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((f"line {lineno}", json.loads(line)))
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path}: line {lineno} is not valid JSON ({e.msg}); a JSONL file "
                               "holds one JSON object per line") from None
    return records


def check_records(records, source):
    """Return the dataset's format, or raise on the first bad record (with where it is)."""
    if not records:
        raise DatasetError(f"{source}: the dataset has no records")
    formats = set()
    for where, record in records:
        record_format, problem = record_problem(record)
        if problem:
            raise DatasetError(f"{source}: {where} {problem}")
        formats.add(record_format)
        if len(formats) > 1:
            raise DatasetError(f"{source}: {where} is in '{record_format}' format but earlier "
                               "records are not; use one format for the whole file")
    return formats.pop()


# ---- tables: CSV and xlsx --------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Table:
    """The rows of a CSV file or an xlsx sheet, as (row number, [cell text]), and what reading
    the sheet found, by (row number, column position)."""
    rows: list
    merged: dict  # a cell inside a merged range (its value is in the range's first cell): range
    shown: dict  # a cell read as the sheet shows it: (stored value, text, kind, number format)


def _csv_table(path, encoding):
    rows = csv.reader(io.StringIO(_read_text(path, encoding), newline=""))  # quoted line breaks
    return Table([(n, [c.strip() for c in row]) for n, row in enumerate(rows, start=1)], {}, {})


def _xlsx_table(path, sheet):
    import openpyxl

    try:
        # Fully loaded, not read-only: only then does openpyxl know the merged ranges.
        book = openpyxl.load_workbook(path, data_only=True)
    except Exception as error:  # zipfile, XML or openpyxl's own errors: not a workbook
        raise DatasetError(f"{path}: not an xlsx workbook ({error})") from None
    if sheet is not None and sheet not in book.sheetnames:
        raise DatasetError(f"config field dataset.sheet = {sheet!r}: {path} has no such sheet; "
                           f"its sheets are {', '.join(book.sheetnames)}")
    cells = book[sheet or book.sheetnames[0]]
    merged = {(row, column - 1): str(ranged.coord) for ranged in cells.merged_cells.ranges
              for row, column in list(ranged.cells)[1:]}
    rows, shown = [], {}
    for row in cells.iter_rows(min_row=1, min_col=1):
        texts = []
        for cell in row:
            text, kind = shown_cells.shown(cell)
            if kind:
                shown[(cell.row, cell.column - 1)] = (cell.value, text, kind, cell.number_format)
            texts.append(text)
        rows.append((row[0].row, texts))
    book.close()
    return Table(rows, merged, shown)


def _header_at(rows, wanted, spec, path):
    """The position in `rows` of the header row: dataset.header_row, else the first row that
    names every wanted column; a missing column is refused with what the header row names."""
    if spec.header_row is not None:
        at = next((i for i, (number, _) in enumerate(rows) if number == spec.header_row), None)
        if at is None:
            raise DatasetError(f"{_field(spec, 'header_row')}: row {spec.header_row} of {path} is "
                               "empty or past the table's end; set the number of the row that "
                               "names the columns")
    else:
        at = next((i for i, (_, cells) in enumerate(rows)
                   if all(c in cells for c in wanted.values())), 0)
    for key, column in wanted.items():
        if column not in rows[at][1]:
            names = ", ".join(repr(h) for h in rows[at][1] if h) or "nothing"
            where = (f"row {rows[at][0]} ({_field(spec, 'header_row')}) names {names}"
                     if spec.header_row is not None else
                     f"no row names it (its first row names {names}); set it to the header's "
                     "name for the column, and dataset.header_row to the header's row number "
                     "if other rows are above it")
            raise DatasetError(f"{_field(spec, key)}: {path} has no column {column!r}; {where}")
    return at


def read_table(path, spec):
    """Conversation records from the question/answer (and system) columns of a table, and notes
    (warnings) on how it was read."""
    table = (_csv_table(path, spec.encoding) if path.suffix.lower() == ".csv"
             else _xlsx_table(path, spec.sheet))
    rows = [(number, cells) for number, cells in table.rows if any(cells)]
    if not rows:
        raise DatasetError(f"{path}: the table is empty")
    wanted = {"question_column": spec.question_column, "answer_column": spec.answer_column}
    if spec.system_column:
        wanted["system_column"] = spec.system_column
    at = _header_at(rows, wanted, spec, path)
    notes = []
    if at and spec.header_row is None:
        notes.append(f"{path}: row {rows[at][0]} is read as the header row, the first that names "
                     f"the columns; the {at} non-empty row(s) above it are skipped (set "
                     f"dataset.header_row: {rows[at][0]} to choose the header yourself)")
    index = {key: rows[at][1].index(column) for key, column in wanted.items()}
    empty = {key: [] for key in wanted if key != "system_column"}
    merged, unreadable, shown = [], [], []
    records = []
    for number, cells in rows[at + 1:]:
        values = {key: cells[i] if i < len(cells) else "" for key, i in index.items()}
        for key, i in index.items():
            found = table.shown.get((number, i))
            if found:
                (unreadable if found[2] == shown_cells.UNREADABLE else shown).append(
                    (number, wanted[key], found))
            if key in empty and not values[key]:
                if (number, i) in table.merged:
                    merged.append(f"row {number}'s {wanted[key]!r} cell is inside the merged "
                                  f"cell {table.merged[(number, i)]}")
                else:
                    empty[key].append(number)
        turn = {"input": values["question_column"], "output": values["answer_column"]}
        if values.get("system_column"):
            turn["system"] = values["system_column"]
        records.append((f"row {number}", {"conversation": [turn]}))
    if merged:
        raise DatasetError(f"{path}: {_listed(merged)}, whose value only its first row holds; "
                           "unmerge those cells (Excel: Merge & Center off) and fill the value "
                           "into every row, or delete the rows")
    for key, numbers in empty.items():
        if numbers:
            which = (f"row {numbers[0]} has" if len(numbers) == 1
                     else f"rows {_listed(numbers)} have")
            raise DatasetError(f"{path}: {which} an empty {wanted[key]!r} cell "
                               f"({_field(spec, key)}); fill them in or delete those rows")
    if unreadable:
        cells = [f"row {n} {column!r} ({found[3]!r})" for n, column, found in unreadable]
        raise DatasetError(f"{path}: {_listed(cells)}: a number format this reader cannot show "
                           "as the sheet does (a fraction, scientific notation, a condition); "
                           "format those cells as Text and type the answer as it should read")
    if shown:
        kinds = collections.Counter(found[2] for _, _, found in shown)
        examples = [f"row {n} {column!r}: {found[0]} -> {found[1]}" for n, column, found in shown]
        notes.append(f"{path}: {len(shown)} cell(s) read as the sheet shows them, not as stored "
                     f"({', '.join(f'{kind}: {count}' for kind, count in kinds.items())}): "
                     f"{_listed(examples)}")
    if not records:
        raise DatasetError(f"{path}: the table has a header row but no records")
    return records, notes


# ---- plain text ------------------------------------------------------------------------------

def text_files(path):
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DatasetError(f"config field dataset.path = {str(path)!r}: the folder holds no "
                               ".txt file")
        return files
    return [path]


def read_documents(path, encoding="utf-8"):
    """(where, {"text": paragraph}) of every paragraph of a .txt file or a folder of them."""
    documents = []
    for file in text_files(path):
        paragraphs = _read_text(file, encoding).replace("\r\n", "\n").split("\n\n")
        documents += [(f"{file.name} paragraph {n}", {"text": p.strip()})
                      for n, p in enumerate(paragraphs, start=1) if p.strip()]
    if not documents:
        raise DatasetError(f"{path}: no text")
    return documents


def check_text_records(records, spec):
    """JSONL objects with a text field, as {"text": ...} records."""
    found = []
    for where, record in records:
        text = record.get(spec.text_field) if isinstance(record, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise DatasetError(f"{spec.path}: {where} has no non-empty {spec.text_field!r} string "
                               f"({_field(spec, 'text_field')})")
        found.append((where, {"text": text.strip()}))
    return found


# ---- any source ------------------------------------------------------------------------------

def read_source(path, spec, key="path"):
    """(task, format, [(where, record)]) of one data file (or folder of text files); `key` is
    the dataset field that named it."""
    return read_source_noted(path, spec, key)[:3]


def read_source_noted(path, spec, key="path"):
    """read_source, and the notes (warnings) on how a table was read."""
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"config field dataset.{key} = {str(path)!r}: file not found")
    suffix = "" if path.is_dir() else path.suffix.lower()
    if path.is_dir() or suffix == ".txt":
        return "pretrain", "text", read_documents(path, spec.encoding), []
    if suffix in TABLE_SUFFIXES:
        return ("qa", "conversation", *read_table(path, spec))
    if suffix not in JSON_SUFFIXES:
        raise DatasetError(f"config field dataset.{key} = {str(path)!r}: unknown format "
                           f"{suffix or '(no suffix)'}; use .json/.jsonl (conversations, or "
                           "text for pre-training), .csv/.xlsx (question and answer columns), "
                           ".txt or a folder of .txt files (pre-training)")
    records = read_records(path, spec.encoding)
    first = records[0][1] if records else None
    if (isinstance(first, dict) and spec.text_field in first
            and not {"conversation", "messages"} & first.keys()):
        return "pretrain", "text", check_text_records(records, spec), []
    return "qa", check_records(records, path), records, []


def question_key(record):
    """What makes two records the same item: the normalised first user turn (or the text)."""
    if "text" in record:
        return normalise(record["text"])
    if "conversation" in record:
        return normalise(record["conversation"][0]["input"])
    return normalise(next(m["content"] for m in record["messages"] if m["role"] == "user"))


def held_out_count(test_size, items):
    """test_size below 1 is a share of the items (at least one), else a count."""
    if test_size == 0:
        return 0
    count = max(1, round(test_size * items)) if test_size < 1 else int(test_size)
    if count >= items:
        raise DatasetError(f"config field dataset.test_size = {test_size}: that is {count} of "
                           f"{items} distinct items, which leaves nothing to train on; lower it")
    return count


def split(records, test_size, seed):
    """(train, test): distinct items drawn at random (seeded) for the test set; every copy of an
    item goes where its first copy goes. Order within each side is the file's order."""
    keys = list(dict.fromkeys(question_key(r) for r in records))
    shuffled = keys[:]
    random.Random(seed).shuffle(shuffled)
    test_keys = set(shuffled[:held_out_count(test_size, len(keys))])
    train = [r for r in records if question_key(r) not in test_keys]
    test = [r for r in records if question_key(r) in test_keys]
    return train, test


def answer_key(record):
    """The normalised last answer of a conversation (the text of a document)."""
    if "text" in record:
        return normalise(record["text"])
    if "conversation" in record:
        return normalise(record["conversation"][-1]["output"])
    return normalise([m["content"] for m in record["messages"] if m["role"] == "assistant"][-1])


def duplicate_warning(records, unit):
    """A warning when an item occurs more than once (the same question_key: '孕妇 可以吃感冒药吗？' and
    '孕妇可以吃感冒药吗?' are one question), naming how many disagree in their answer."""
    answers = {}
    for record in records:
        answers.setdefault(question_key(record), []).append(answer_key(record))
    repeated = [found for found in answers.values() if len(found) > 1]
    if not repeated:
        return None
    differing = sum(len(set(found)) > 1 for found in repeated)
    return (f"{len(repeated)} {unit}s occur more than once ({differing} of them with different "
            "answers); every copy stays on one side of the train/test split")


def prepare(spec):
    """Read, check and split the user's data; `spec` has the dataset.* fields (path, test_path,
    test_size, split_seed, the columns, sheet, header_row, encoding, text_field), as
    DataSettings does. Raises DatasetError naming the field and the fix."""
    task, record_format, found, warnings = read_source_noted(spec.path, spec)
    records = [r for _, r in found]
    unit = "document" if task == "pretrain" else "question"
    warnings += [w for w in [duplicate_warning(records, unit)] if w]
    if spec.test_path:
        test_task, test_format, test_found, test_notes = read_source_noted(spec.test_path, spec,
                                                                          "test_path")
        warnings += test_notes
        if (test_task, test_format) != (task, record_format):
            raise DatasetError(f"{_field(spec, 'test_path')}: it holds {test_format} records, the "
                               f"training data {record_format} records; use one format for both")
        train, test = records, [r for _, r in test_found]
        trained = {question_key(r) for r in train}
        overlap = [where for where, r in test_found if question_key(r) in trained]
        if overlap:
            raise DatasetError(f"{_field(spec, 'test_path')}: {_listed(overlap)} also occur in the "
                               f"training data {spec.path}, so the test would score what was "
                               "trained on; remove them from one of the two files")
    else:
        train, test = split(records, spec.test_size, spec.split_seed)
    if not test:
        raise DatasetError(f"{_field(spec, 'test_size')}: the {task} evaluation needs held-out "
                           "records; set dataset.test_size above 0 or name a dataset.test_path")
    return Prepared(task=task, format=record_format, train=train, test=test,
                    warnings=tuple(warnings))

