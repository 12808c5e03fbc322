"""The training data: generate the tutorial's assistant.json from config, or check a user's own
JSON/JSONL dataset record by record."""

import json
from pathlib import Path


class DatasetError(ValueError):
    """A dataset record that xtuner cannot train on; the message says which one and why."""


def conversation_record(question, answer):
    return {"conversation": [{"input": question, "output": answer}]}


def messages_record(question, answer):
    return {"messages": [{"role": "user", "content": question},
                         {"role": "assistant", "content": answer}]}


def generate_records(name, pairs, repeat, record_format):
    """The tutorial's generator: the pairs once, then `repeat` more copies (n=4650 there)."""
    make = conversation_record if record_format == "conversation" else messages_record
    base = [make(p["input"], p["output"].replace("{name}", name)) for p in pairs]
    return base * (repeat + 1)


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


def read_records(path):
    """Read a JSON list or a JSONL file (UTF-8, a byte-order mark allowed); errors name the line
    and say which of the two the file was read as."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"config field assistant.dataset = {str(path)!r}: file not found")
    try:
        text = path.read_text(encoding="utf-8-sig")  # editors on Windows add a BOM
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path}: not UTF-8 text (byte {e.start} is {e.object[e.start]:#x}); "
                           "save the file as UTF-8") from None
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


def write_dataset(out_path, records):
    """As the tutorial writes it: UTF-8, ensure_ascii=False, indent=4."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False, indent=4)


def with_replay(records, replay_pairs, share, record_format):
    """`records` plus the base model's own answers, cycled until they are `share` of the whole
    (share 0: none)."""
    if not share or not replay_pairs:
        return records
    make = conversation_record if record_format == "conversation" else messages_record
    count = round(share / (1 - share) * len(records))
    replay = [make(p["input"], p["output"]) for p in replay_pairs]
    return records + [replay[i % len(replay)] for i in range(count)]


def build_dataset(assistant, out_path, replay_path=None):
    """Write assistant.json for the run; return its record format."""
    if assistant.get("dataset"):
        source = assistant["dataset"]
        records = read_records(source)
        record_format = check_records(records, source)
        write_dataset(out_path, [r for _, r in records])
        return record_format
    records = generate_records(assistant["name"], assistant["pairs"], assistant["repeat"],
                               assistant["format"])
    if replay_path:
        replay = json.loads(Path(replay_path).read_text(encoding="utf-8"))
        records = with_replay(records, replay, assistant["replay_share"], assistant["format"])
    write_dataset(out_path, records)
    return assistant["format"]


def main(argv=None):
    import argparse
    import dataclasses

    from xtuner_recipe.messages import fail, log
    from xtuner_recipe.settings import read_stage

    parser = argparse.ArgumentParser(description="Write the run's assistant.json.")
    parser.add_argument("--settings", required=True, help="settings/data.json")
    parser.add_argument("--out", required=True)
    parser.add_argument("--info", required=True, help="where to write the record format and count")
    parser.add_argument("--replay", help="the base model's own answers to mix in (rule replay)")
    args = parser.parse_args(argv)
    assistant = dataclasses.asdict(read_stage(args.settings, "data"))
    try:
        record_format = build_dataset(assistant, args.out, args.replay)
    except DatasetError as error:
        fail(error)
    count = len(json.loads(Path(args.out).read_text(encoding="utf-8")))
    Path(args.info).write_text(json.dumps({"format": record_format, "records": count}) + "\n")
    log(f"{args.out}: {count} records, format {record_format}")


if __name__ == "__main__":
    main()
