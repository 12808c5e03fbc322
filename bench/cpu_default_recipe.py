"""The default recipe on this CPU machine, as a new user runs it: its verdict on several seeds,
the replay comparison, and the same run at another revision.

    python bench/cpu_default_recipe.py [--seeds 1 2] [--replay-shares 0] [--also-at REV]
    python bench/cpu_default_recipe.py --check    # rerun make run; compare with the committed figures

1. A fresh clone of this checkout's HEAD in a scratch folder; `make run` there, timed as a whole
   (install included; pip's cache is whatever this machine has) and per rule (Snakemake's own
   start and end times in its log). That is the recipe's own seed (train.seed, 42).
2. The default recipe again in that clone for each other seed (train.seed) and each replay share
   (assistant.replay_share), each in its own run folder, sharing the base model; then, with
   --also-at, the default again with the clone checked out at that revision.
3. `<out>.json` (every run's figures) and `<out>.md` (the table made from it, the spread over the
   seeds, the machine, the date); `--check` reruns step 1 only and exits 1 when a figure of the
   make run row differs from the committed JSON (training on one CPU is deterministic for a seed).
"""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command, cwd, log):
    started = time.time()
    with open(log, "w") as out:
        result = subprocess.run(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}; see {log}")
    return time.time() - started


def rule_times(snakemake_log):
    """Rule -> seconds, from the [date] lines that open and close each job in Snakemake's log."""
    text = Path(snakemake_log).read_text()
    stamps = [(datetime.datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y"), m.end())
              for m in re.finditer(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]", text, re.M)]
    started, seconds = {}, {}
    for (stamp, end), nxt in zip(stamps, stamps[1:] + [(None, len(text))]):
        block = text[end:nxt[1]]
        job = re.search(r"rule (\w+):.*?jobid: (\d+)", block, re.S)
        done = re.search(r"Finished jobid: (\d+) \(Rule: (\w+)\)", block)
        if job:
            started[job.group(2)] = (job.group(1), stamp)
        if done and done.group(1) in started:
            rule, begin = started[done.group(1)]
            seconds[rule] = seconds.get(rule, 0) + (stamp - begin).total_seconds()
    return seconds


RULES = ("train", "evaluate", "packaged_model", "replay", "merge", "hf_adapter")


def run_figures(run_dir, wall, rules):
    """One run's row: times, the verdict and the figures it comes from (report.json)."""
    report = json.loads((run_dir / "published" / "report" / "report.json").read_text("utf-8"))
    v, scores = report["verdict"], report["scores"]
    return {"wall_s": round(wall), "rules_s": {r: round(rules.get(r, 0)) for r in RULES},
            "learned": v["learned"], "kept_general": v["kept_general"],
            "overfitted": v["overfitted"], "retained_pct": v["general_retained_pct"],
            "retained_interval_pct": v["general_retained_interval_pct"],
            "heldout_identity": scores["heldout"]["merged"],
            "unrelated_naming_owner": scores["unrelated"]["merged"],
            "open_general": [scores["general"]["base"], scores["general"]["merged"]],
            "multiple_choice": report["multiple_choice"],
            "perplexity": [round(report["perplexity"]["base"], 2),
                           round(report["perplexity"]["merged"], 2)]}


def verdict_text(row):
    low, high = row["retained_interval_pct"] or (None, None)
    kept = ("n/a" if row["retained_pct"] is None
            else f"{row['retained_pct']:.0f}% ({low:.0f}-{high:.0f}%)")
    return (f"{'learned' if row['learned'] else 'NOT learned'}, "
            f"{'kept' if row['kept_general'] else 'LOST'} {kept}, over-fitted "
            f"{'YES' if row['overfitted'] else 'no'}")


def choice_cell(row, task):
    figures = row["multiple_choice"][task]
    return " -> ".join(f"{figures[m]['acc']:.3f} ± {figures[m]['stderr']:.3f}"
                       for m in ("base", "merged"))


def markdown(data):
    """The table of `data` (the JSON this script writes): one fact, one place."""
    tasks = list(next(iter(data["runs"].values()))["multiple_choice"])
    lines = [f"# The default recipe on a CPU ({data['date']})", "",
             f"Command: `{data['command']}` at revision {data['revision']}; machine: "
             f"{data['machine']}. Figures: `{data['json']}` (this table is made from it).", "",
             "| run | wall s | " + " | ".join(RULES) + " | verdict: learned, general ability "
             "kept (95% interval), over-fitted | held-out identity | unrelated answers naming "
             "the owner | " + " | ".join(f"{t} (base -> tuned)" for t in tasks)
             + " | open general questions | perplexity |",
             "|---" * (len(RULES) + 7 + len(tasks)) + "|"]
    for label, row in data["runs"].items():
        lines.append(
            f"| {label} | {row['wall_s']} | " + " | ".join(str(row["rules_s"][r]) for r in RULES)
            + f" | {verdict_text(row)} | {row['heldout_identity']:.2f} | "
            f"{row['unrelated_naming_owner']:.2f} | "
            + " | ".join(choice_cell(row, t) for t in tasks)
            + f" | {row['open_general'][0]:.2f} -> {row['open_general'][1]:.2f} | "
            f"{row['perplexity'][0]:.2f} -> {row['perplexity'][1]:.2f} |")
    seeds = [row for label, row in data["runs"].items()
             if re.fullmatch(r"seed \d+( \(make run\))?", label)]
    if len(seeds) > 1:
        kept = [r["retained_pct"] for r in seeds if r["retained_pct"] is not None]
        lines += ["", f"Over the {len(seeds)} seeds: verdicts "
                  f"{sum(r['learned'] and r['kept_general'] and not r['overfitted'] for r in seeds)}"
                  f" of {len(seeds)} 'learned, kept, not over-fitted'; general ability kept "
                  f"{min(kept):.0f}-{max(kept):.0f}%; held-out identity "
                  f"{min(r['heldout_identity'] for r in seeds):.2f}-"
                  f"{max(r['heldout_identity'] for r in seeds):.2f}; unrelated answers naming the "
                  f"owner {min(r['unrelated_naming_owner'] for r in seeds):.2f}-"
                  f"{max(r['unrelated_naming_owner'] for r in seeds):.2f}."]
    return "\n".join(lines + ["", "The make run report, with every raw answer: "
                              "`cpu-default-recipe.report.md` beside this file."]) + "\n"


def snakemake_run(clone, scratch, name, config):
    """The default recipe in `clone` under run_name `name` with --config `config`: (wall s, rule s)."""
    bin_dir = clone / ".venv" / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    command = [str(bin_dir / "snakemake"), "--profile", "profiles/local", "--config",
               f"run_name={name}", *config]
    started = time.time()
    with open(scratch / f"{name}.log", "w") as out:
        subprocess.run(command, cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
                       check=True)
    logs = sorted((clone / ".snakemake" / "log").glob("*.snakemake.log"))
    return time.time() - started, rule_times(logs[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="more train.seed values")
    parser.add_argument("--replay-shares", type=float, nargs="*", default=[])
    parser.add_argument("--also-at", help="a revision to run the default at too (same install)")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu-default-recipe"))
    args = parser.parse_args()
    out = Path(args.out)
    scratch = Path(tempfile.mkdtemp(prefix="xtuner-recipe-bench-"))
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                              capture_output=True, text=True).stdout.strip()
    make_s = timed(["make", "run"], clone, scratch / "make-run.log")
    logs = sorted((clone / ".snakemake" / "log").glob("*.snakemake.log"))
    results = clone / "results"
    # the default run's folder: <owner>_<model>_<method>_<hash> (xtuner_recipe.settings.run_name)
    default_run = next(p for p in results.iterdir() if "_smollm2-135m-instruct_" in p.name)
    label = "seed 42 (make run)"
    runs = {label: run_figures(default_run, make_s, rule_times(logs[-1]))}
    if args.check:
        committed = json.loads(out.with_suffix(".json").read_text())["runs"][label]
        keys = [k for k in runs[label] if not k.endswith("_s")]
        differ = {k: (committed[k], runs[label][k]) for k in keys if committed[k] != runs[label][k]}
        print(json.dumps(differ, indent=1) if differ else "the make run figures match")
        sys.exit(1 if differ else 0)
    for seed in args.seeds:
        wall, rules = snakemake_run(clone, scratch, f"seed-{seed}", [f"train={{seed: {seed}}}"])
        runs[f"seed {seed}"] = run_figures(results / f"seed-{seed}", wall, rules)
    for share in args.replay_shares:
        name = f"replay-{share:g}"
        wall, rules = snakemake_run(clone, scratch, name, [f"assistant={{replay_share: {share}}}"])
        runs[f"seed 42, replay_share {share:g}"] = run_figures(results / name, wall, rules)
    if args.also_at:
        subprocess.run(["git", "checkout", "--quiet", args.also_at], cwd=clone, check=True)
        name = f"at-{args.also_at}"
        wall, rules = snakemake_run(clone, scratch, name, [])
        runs[f"seed 42 at revision {args.also_at}"] = run_figures(results / name, wall, rules)
    options = (f"{' --seeds ' + ' '.join(map(str, args.seeds)) if args.seeds else ''}"
               f"{' --replay-shares ' + ' '.join(f'{s:g}' for s in args.replay_shares) if args.replay_shares else ''}"
               f"{' --also-at ' + args.also_at if args.also_at else ''}")
    data = {"date": str(datetime.date.today()), "revision": revision,
            "command": f"python bench/cpu_default_recipe.py{options}",
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                       f"Python {platform.python_version()}",
            "json": out.with_suffix(".json").name, "runs": runs}
    out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(data), encoding="utf-8")
    out.with_suffix(".report.md").write_text(
        (default_run / "published" / "report" / "report.md").read_text(encoding="utf-8"),
        encoding="utf-8")
    print(markdown(data))
    print(f"scratch: {scratch}")


if __name__ == "__main__":
    main()
