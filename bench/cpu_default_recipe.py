"""The default recipe on this CPU machine, as a new user runs it, and the replay comparison.

    python bench/cpu_default_recipe.py [--replay-shares 0 0.25] [--out bench/results/cpu-default-recipe.md]

1. A fresh clone of this checkout's HEAD in a scratch folder; `make run` there, timed as a whole
   (install included; pip's cache is whatever this machine has) and per rule (Snakemake's own
   start and end times in its log).
2. The default recipe again in that clone for each replay share (assistant.replay_share), each in
   its own run folder, sharing the base model.
3. A Markdown table of times, the report's verdict and figures per run, the machine, the date.
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


def report_figures(run_dir):
    report = json.loads((run_dir / "published" / "report" / "report.json").read_text(
        encoding="utf-8"))
    return report


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replay-shares", type=float, nargs="*", default=[0.25])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "cpu-default-recipe.md"))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="xtuner-recipe-bench-"))
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                              capture_output=True, text=True).stdout.strip()
    make_s = timed(["make", "run"], clone, scratch / "make-run.log")
    logs = sorted((clone / ".snakemake" / "log").glob("*.snakemake.log"))
    runs = {"default (make run)": (make_s, rule_times(logs[-1]), None)}
    bin_dir = clone / ".venv" / "bin"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    for share in args.replay_shares:
        name = f"replay-{share:g}"
        command = [str(bin_dir / "snakemake"), "--profile", "profiles/local", "--config",
                   f"run_name={name}", f"assistant={{replay_share: {share}}}"]
        started = time.time()
        with open(scratch / f"{name}.log", "w") as out:
            subprocess.run(command, cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT,
                           check=True)
        logs = sorted((clone / ".snakemake" / "log").glob("*.snakemake.log"))
        runs[f"replay_share {share:g}"] = (time.time() - started, rule_times(logs[-1]), name)

    results = clone / "results"
    # the default run's folder: <owner>_<model>_<method>_<hash> (xtuner_recipe.settings.run_name)
    default_run = next(p for p in results.iterdir() if "_smollm2-135m-instruct_" in p.name)
    lines = [f"# The default recipe on a CPU ({datetime.date.today()})", "",
             f"Command: `python bench/cpu_default_recipe.py --replay-shares "
             f"{' '.join(f'{s:g}' for s in args.replay_shares)}` at revision {revision}; "
             f"machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
             f"Python {platform.python_version()}.", "",
             "| run | wall s | " + " | ".join(["train", "evaluate", "packaged_model", "replay",
                                                 "merge", "hf_adapter"]) + " | verdict | "
             "held-out identity | over-fitting | general (base -> tuned) | perplexity (base -> tuned) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, (wall, rules, name) in runs.items():
        report = report_figures(results / name if name else default_run)
        v, scores, ppl = report["verdict"], report["scores"], report["perplexity"]
        cells = [f"{rules.get(r, 0):.0f}" for r in ("train", "evaluate", "packaged_model",
                                                     "replay", "merge", "hf_adapter")]
        verdict = (f"{'learned' if v['learned'] else 'not learned'}, kept "
                   f"{v['general_retained_pct']}%, over-fitted {'yes' if v['overfitted'] else 'no'}")
        lines.append(
            f"| {label} | {wall:.0f} | " + " | ".join(cells) + f" | {verdict} | "
            f"{scores['heldout']['merged']:.2f} | {scores['unrelated']['merged']:.2f} | "
            f"{scores['general']['base']:.2f} -> {scores['general']['merged']:.2f} | "
            f"{ppl['base']:.2f} -> {ppl['merged']:.2f} |")
    lines += ["", "The default run's whole report: `cpu-default-recipe.report.md` beside this file."]
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (Path(args.out).with_suffix(".report.md")).write_text(
        (default_run / "published" / "report" / "report.md").read_text(encoding="utf-8"),
        encoding="utf-8")
    print("\n".join(lines))
    print(f"scratch: {scratch}")


if __name__ == "__main__":
    main()
