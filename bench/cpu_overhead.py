"""The recipe's overhead on a CPU: its train, convert and merge rules against the same three xtuner
commands run by hand in sequence, and a no-op rerun (issue: speed and scale).

    python bench/cpu_overhead.py [--recipe tiny-internlm2/lora_cpu] [--rounds 3] [--out FILE]

1. Untimed, shared by both sides: `snakemake --until xtuner_config` builds the base model, the
   data, the tokenised set (once per data: a retrain does not repeat it) and the patched config.
2. By hand, in that order, on those files: `xtuner train CFG --work-dir W`, `xtuner convert
   pth_to_hf CFG W/iter_N.pth ADAPTER`, `xtuner convert merge BASE ADAPTER MERGED` (each through
   `python -m xtuner_recipe.xtuner_entry`, which is `xtuner <cmd>` with a real exit status and the
   CPU shim, as the rules call it).
3. The recipe: `snakemake --until merge` from the same state (the train, hf_adapter and merge
   rules: Snakemake, the content-addressed attempt, the checks).
4. The rest of the recipe (evaluate, report, publish), then a no-op rerun of the whole recipe.

Overhead = recipe / by hand - 1 (step 3 against step 2), per round and the median of the
rounds (each in a fresh folder), in wall time and in CPU time (user + system seconds of every
process each side started: steadier on a shared 2-core machine, where a round's wall time moves
by several seconds). Steps 2 and 3 swap places every other round: whichever ran
first was about 11 points slower (bench/results/cpu-overhead.md; the cause is not isolated). Run
it on an otherwise idle machine.
"""

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xtuner_recipe import settings as recipe_settings  # noqa: E402


def cpu_seconds():
    """User + system seconds of this process's finished children (and theirs, as each waited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(command, cwd, log):
    """Seconds `command` took; stops the benchmark if it fails."""
    started = time.monotonic()
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ {' '.join(map(str, command))}\n")
        out.flush()
        code = subprocess.call([str(c) for c in command], cwd=cwd, stdout=out,
                               stderr=subprocess.STDOUT)
    seconds = time.monotonic() - started
    if code != 0:
        sys.exit(f"{' '.join(map(str, command))} exited {code}; see {log}")
    return seconds


RECIPE = "the recipe: `snakemake --until merge` (train, hf_adapter, merge rules)"


def one_round(recipe, work, recipe_first):
    """Seconds of each step of one round, in a fresh folder."""
    log = work / "commands.log"
    user = {"recipe": recipe, "results_dir": str(work / "results"), "run_name": "bench"}
    configfile = work / "config.yaml"
    configfile.write_text(json.dumps(user))
    snakemake = [sys.executable, "-m", "snakemake", "--snakefile", REPO / "Snakefile",
                 "--directory", work, "--configfile", configfile,
                 "--profile", REPO / "profiles" / "local"]
    built = recipe_settings.build(user, REPO)
    layout, hand_dir = built.layout, work / "by-hand"
    iterations = built.xtuner_config.train["max_iters"]
    entry = [sys.executable, "-m", "xtuner_recipe.xtuner_entry"]
    timed([*snakemake, "--until", "xtuner_config"], work, log)

    cpu = {}

    def on_cpu(side, run):
        """run(), with the CPU seconds of what it started kept as cpu[side]."""
        before = cpu_seconds()
        result = run()
        cpu[side] = cpu_seconds() - before
        return result

    def by_hand():
        return {
            "by hand: xtuner train": timed([*entry, "train", layout.xtuner_config, "--work-dir",
                                            hand_dir, "--launcher", "none"], work, log),
            "by hand: xtuner convert pth_to_hf": timed(
                [*entry, "pth_to_hf", layout.xtuner_config,
                 hand_dir / f"iter_{iterations}.pth", hand_dir / "adapter"], work, log),
            "by hand: xtuner convert merge": timed(
                [*entry, "merge", built.base_model, hand_dir / "adapter", hand_dir / "merged",
                 "--device", "cpu"], work, log),
        }

    def the_recipe():
        return timed([*snakemake, "--until", "merge"], work, log)

    if recipe_first:
        recipe_s, hand = on_cpu("recipe", the_recipe), on_cpu("hand", by_hand)
    else:
        hand, recipe_s = on_cpu("hand", by_hand), on_cpu("recipe", the_recipe)
    steps = {**hand, "by hand, total": sum(hand.values()), RECIPE: recipe_s}
    steps["recipe overhead, % (target <= 10)"] = 100 * (steps[RECIPE] / steps["by hand, total"] - 1)
    steps["by hand, CPU seconds (user + system)"] = cpu["hand"]
    steps["the recipe, CPU seconds (user + system)"] = cpu["recipe"]
    steps["recipe overhead in CPU time, %"] = 100 * (cpu["recipe"] / cpu["hand"] - 1)
    steps["the rest of the recipe (evaluate, report, publish)"] = timed(snakemake, work, log)
    steps["no-op rerun of the whole recipe (target < 3 s)"] = timed(snakemake, work, log)
    return steps, built


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="tiny-internlm2/lora_cpu")
    parser.add_argument("--rounds", type=int, default=3,
                        help="single rounds vary by several seconds: report each and the median")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu-overhead.md"))
    args = parser.parse_args()
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    rounds = []
    firsts = [number % 2 == 1 for number in range(args.rounds)]
    for recipe_first in firsts:
        work = Path(tempfile.mkdtemp(prefix="xtuner-recipe-overhead-"))
        steps, built = one_round(args.recipe, work, recipe_first)
        rounds.append(steps)
    names = " | ".join(f"round {i + 1}" for i in range(len(rounds)))
    lines = [
        "# Recipe overhead on a CPU against the same xtuner commands by hand",
        "",
        f"Measured {datetime.date.today()} with `python bench/cpu_overhead.py --recipe "
        f"{args.recipe} --rounds {args.rounds}` on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores ({built.xtuner_config.train['max_iters']} iterations, "
        f"{built.train.device}). "
        "Seconds, except the overhead; each round in a fresh folder.",
        "",
        f"| step | {names} | median |",
        "|---|" + "---|" * (len(rounds) + 1),
        "| first in this round | " + " | ".join("the recipe" if f else "by hand" for f in firsts)
        + " | |",
    ]
    for step in rounds[0]:
        values = [r[step] for r in rounds]
        lines.append(f"| {step} | " + " | ".join(f"{v:.1f}" for v in values)
                     + f" | **{statistics.median(values):.1f}** |")
    lines += ["", "Both sides of a round start from the same base model, data and patched config "
              "(built first, untimed); the commands and their output: each round's `commands.log`.",
              ""]
    Path(args.out).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
