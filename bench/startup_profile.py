"""Where xtuner's start-up goes: Python's own import profile of the train rule's xtuner process.

    python bench/startup_profile.py BUILD OUT.md [--seconds 90]

BUILD is a run's build folder (from bench/gpu_train_step.sh, or any recipe run: its train
settings, patched config and DeepSpeed JSON). This starts the command and environment the train
rule starts (xtuner_recipe.train.train_command and launch_env, into a scratch work dir) with
PYTHONPROFILEIMPORTTIME=1, stops it at its first training
iteration (or after --seconds), and writes to OUT.md, from the `import time:` lines of its
output: the seconds to mmengine's first log line, to the first iteration, and in imports, with
the imports' own time summed per top-level package. The whole output goes to OUT.log beside it.
"""

import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xtuner_recipe.settings import read_stage  # noqa: E402
from xtuner_recipe.train import launch_env, train_command  # noqa: E402

IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+\d+ \| *(\S+)")
MMENGINE_LOG = re.compile(r"^\d\d/\d\d \d\d:\d\d:\d\d - mmengine")


def parse_imports(lines):
    """Self microseconds per top-level package and the total, from `-X importtime` lines."""
    per_package = collections.Counter()
    for line in lines:
        match = IMPORT_LINE.match(line)
        if match:
            per_package[match.group(2).split(".")[0]] += int(match.group(1))
    return per_package


def profile(build, seconds):
    run = read_stage(build / "settings/train.json", "train")
    deepspeed = build / "config/deepspeed.json"
    deepspeed = str(deepspeed) if deepspeed.is_file() else None
    command = train_command(run, str(build / "config/xtuner_config.py"), deepspeed, None,
                            tempfile.mkdtemp(prefix="startup-profile-"))
    env = dict(launch_env(run.launcher, deepspeed, run.compile_cache), PYTHONPROFILEIMPORTTIME="1")
    start = time.monotonic()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
    lines, marks = [], {}
    for line in child.stdout:
        now = time.monotonic() - start
        lines.append(line)
        if MMENGINE_LOG.match(line):
            marks.setdefault("mmengine's first log line", now)
        if "Iter(train)" in line or now > seconds:
            marks["first iteration logged" if "Iter(train)" in line else "stopped"] = now
            break
    os.killpg(child.pid, signal.SIGTERM)
    child.wait()
    return lines, marks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--seconds", type=float, default=90)
    args = parser.parse_args()
    lines, marks = profile(args.build, args.seconds)
    per_package = parse_imports(lines)
    total = sum(per_package.values()) / 1e6
    rows = ["| package | s (own import time) | share of imports |", "|---|---|---|"]
    for name, us in per_package.most_common(15):
        rows.append(f"| {name} | {us / 1e6:.2f} | {us / 1e6 / total:.0%} |")
    others = sum(us for _, us in per_package.most_common()[15:]) / 1e6
    rows.append(f"| {len(per_package) - 15} others | {others:.2f} | {others / total:.0%} |")
    text = ["| mark | s after launch |", "|---|---|"]
    text += [f"| {mark} | {at:.1f} |" for mark, at in marks.items()]
    text += [f"| all imports (sum of own times) | {total:.1f} |", "", *rows, ""]
    args.out.write_text("\n".join(text))
    (args.out.with_suffix(".log")).write_text("".join(lines))
    print("\n".join(text))


if __name__ == "__main__":
    main()
