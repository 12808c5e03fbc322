"""The training data (rule data): generate the tutorial's identity data from config, or write the
user's own data, checked and split (xtuner_recipe.user_data)."""

import json
from pathlib import Path

from xtuner_recipe import user_data


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


def build_dataset(data, out_path, test_path, replay_path=None):
    """Write the run's training records and its test records (none for task identity); return
    the dataset's info: task, record format, counts and the data's warnings."""
    warnings, test = (), []
    if data.task in ("qa", "pretrain"):
        prepared = user_data.prepare(data)
        record_format, records, test = prepared.format, prepared.train, prepared.test
        warnings = prepared.warnings
    elif data.path:  # the user's own identity data: all of it is training data
        _, record_format, found = user_data.read_source(data.path, data)
        records = [r for _, r in found]
    else:
        record_format = data.format
        records = generate_records(data.name, data.pairs, data.repeat, record_format)
    if replay_path:  # never for pre-training text (settings: replay_share 0)
        replay = json.loads(Path(replay_path).read_text(encoding="utf-8"))
        records = with_replay(records, replay, data.replay_share, record_format)
    write_dataset(out_path, records)
    write_dataset(test_path, test)
    return {"task": data.task, "format": record_format, "records": len(records),
            "test_records": len(test), "warnings": list(warnings)}


def main(argv=None):
    import argparse

    from xtuner_recipe.messages import fail, log
    from xtuner_recipe.settings import read_stage

    parser = argparse.ArgumentParser(description="Write the run's training and test data.")
    parser.add_argument("--settings", required=True, help="settings/data.json")
    parser.add_argument("--out", required=True)
    parser.add_argument("--test-out", required=True, help="the held-out test records")
    parser.add_argument("--info", required=True, help="where to write the task, format and counts")
    parser.add_argument("--replay", help="the base model's own answers to mix in (rule replay)")
    args = parser.parse_args(argv)
    try:
        info = build_dataset(read_stage(args.settings, "data"), args.out, args.test_out,
                             args.replay)
    except user_data.DatasetError as error:
        fail(error)
    Path(args.info).write_text(json.dumps(info, ensure_ascii=False) + "\n", encoding="utf-8")
    for warning in info["warnings"]:
        log(f"warning: {warning}")
    log(f"{args.out}: {info['records']} training records ({info['format']}), "
        f"{info['test_records']} test records, task {info['task']}")


if __name__ == "__main__":
    main()
