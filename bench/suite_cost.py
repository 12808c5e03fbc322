"""Where `make test`'s time goes, on a fresh clone as CI runs it.

    python bench/suite_cost.py               # clone HEAD into a scratch folder, CI=true bash .ci/run
    python bench/suite_cost.py --from-json   # both files again from the committed JSON
    python bench/suite_cost.py --baseline OLD.json   # and a table comparing with an earlier run

The clone's whole `.ci/run` is timed (install included); tests/conftest.py writes every test
phase's seconds, worker and start to the file XTUNER_RECIPE_TEST_TIMES names. A shared fixture (a
recipe run, a daemon, an image build) costs its time in the setup of the first test that uses it,
so the setup column is where shared fixtures show. With parallel workers the phases' seconds add up
to more than the wall time; the workers' table shows how full each one was. Writes `<out>.json`
(every phase) and `<out>.md` (the tables made from it).
"""

import argparse
import ast
import datetime
import json
import os
import platform
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PHASES = ("setup", "call", "teardown")
LARGEST = 12


def assert_count(tests_dir):
    """The assert statements under tests/: how much the suite checks, besides how long it takes."""
    return sum(isinstance(node, ast.Assert)
               for path in Path(tests_dir).rglob("*.py")
               for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))))


def outcomes(phases):
    """test -> passed / failed / skipped (a failed phase fails the test; a skip is in setup)."""
    result = {}
    for p in phases:
        if p["outcome"] == "failed" or result.get(p["test"]) == "failed":
            result[p["test"]] = "failed"
        elif p["outcome"] == "skipped":
            result[p["test"]] = "skipped"
        else:
            result.setdefault(p["test"], "passed")
    return result


def file_seconds(phases):
    """test file -> {phase: seconds}, and test file -> its tests."""
    by_file = defaultdict(lambda: dict.fromkeys(PHASES, 0.0))
    tests = defaultdict(set)
    for p in phases:
        name = p["test"].split("::")[0]
        by_file[name][p["phase"]] += p["seconds"]
        tests[name].add(p["test"])
    return by_file, tests


def summary(data):
    """What a later run is compared with: wall time, outcomes, asserts, seconds per test file."""
    by_file, _ = file_seconds(data["phases"])
    return {"revision": data["revision"], "date": data["date"], "wall_s": data["wall_s"],
            "asserts": data["asserts"], "tests": dict(Counter(outcomes(data["phases"]).values())),
            "workers": len({p.get("worker", "main") for p in data["phases"]}),
            "files": {name: round(sum(seconds.values())) for name, seconds in by_file.items()}}


def markdown(data):
    """The tables of `data` (the JSON this script writes): one fact, one place."""
    phases = data["phases"]
    by_file, tests = file_seconds(phases)
    in_tests = sum(p["seconds"] for p in phases)
    now = summary(data)
    counts = Counter(outcomes(phases).values())
    workers = defaultdict(list)
    for p in phases:
        workers[p.get("worker", "main")].append(p)
    lines = [f"# Where make test's time goes ({data['date']})", "",
             f"Command: `{data['command']}` at revision {data['revision']}; machine: "
             f"{data['machine']}. Figures: `{data['json']}` (these tables are made from it).", "",
             f"`CI=true bash .ci/run` on a fresh clone: {data['wall_s'] / 60:.1f} min, exit "
             f"{data['exit_code']}; tests {counts['passed']} passed, {counts['failed']} failed, "
             f"{counts['skipped']} skipped; {data['asserts']} assert statements under tests/. "
             f"{in_tests / 60:.1f} min in test phases, run by {len(workers)} "
             f"worker{'s' * (len(workers) > 1)}"
             + (f"; outside them (install, collection) {(data['wall_s'] - in_tests) / 60:.1f} min."
                if len(workers) == 1 else ".")]
    if "baseline" in data:
        before = data["baseline"]
        lines += ["", f"Against the run at {before['revision']} ({before['date']}, "
                      f"{before['workers']} worker{'s' * (before['workers'] > 1)}):", "",
                  "| | before | now |", "|---|---|---|",
                  f"| wall, min | {before['wall_s'] / 60:.1f} | {data['wall_s'] / 60:.1f} |",
                  f"| tests passed | {before['tests'].get('passed', 0)} | {counts['passed']} |",
                  f"| assert statements | {before['asserts']} | {data['asserts']} |"]
        for name in sorted(set(before["files"]) | set(now["files"]),
                           key=lambda n: -before["files"].get(n, 0)):
            if max(before["files"].get(name, 0), now["files"].get(name, 0)) >= 30:
                lines.append(f"| {name}, s | {before['files'].get(name, 0)} | "
                             f"{now['files'].get(name, 0)} |")
    if len(workers) > 1:
        lines += ["", "Each worker's share (from: its first phase's start; to: its last phase's "
                      "end; minutes from the start of the test session):", "",
                  "| worker | tests | busy min | from | to |", "|---|---|---|---|---|"]
        for worker, own in sorted(workers.items()):
            end = max(p["start"] + p["seconds"] for p in own)
            lines.append(f"| {worker} | {len({p['test'] for p in own})} | "
                         f"{sum(p['seconds'] for p in own) / 60:.1f} | "
                         f"{min(p['start'] for p in own) / 60:.1f} | {end / 60:.1f} |")
    lines += ["", "| test file | tests | setup s | call s | teardown s | total s | share |",
              "|---|---|---|---|---|---|---|"]
    for name, seconds in sorted(by_file.items(), key=lambda kv: -sum(kv[1].values())):
        total = sum(seconds.values())
        lines.append(f"| {name} | {len(tests[name])} | "
                     + " | ".join(f"{seconds[phase]:.0f}" for phase in PHASES)
                     + f" | {total:.0f} | {total / in_tests:.0%} |")
    for phase, title in (("setup", "setups (the shared fixtures: recipe runs, daemons, images)"),
                         ("call", "test bodies")):
        lines += ["", f"The {LARGEST} largest {title}:", "", "| seconds | test |", "|---|---|"]
        largest = sorted((p for p in phases if p["phase"] == phase), key=lambda p: -p["seconds"])
        lines += [f"| {p['seconds']:.0f} | `{p['test']}` |" for p in largest[:LARGEST]]
    return "\n".join(lines) + "\n"


def dumps(data):
    """`data` as JSON, one test phase a line: diffs of the file stay readable."""
    head = json.dumps({k: v for k, v in data.items() if k != "phases"}, indent=1)
    phases = ",\n".join(json.dumps(p, ensure_ascii=False) for p in data["phases"])
    return f'{head[:-2]},\n "phases": [\n{phases}\n ]\n}}\n'


def measure(out):
    scratch = Path(tempfile.mkdtemp(prefix="xtuner-recipe-suite-"))
    clone = scratch / "clone"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone,
                              capture_output=True, text=True, check=True).stdout.strip()
    times = scratch / "phases.jsonl"
    env = {**os.environ, "CI": "true", "XTUNER_RECIPE_TEST_TIMES": str(times)}
    started = time.time()
    with open(scratch / "ci.log", "w") as log:
        code = subprocess.run(["bash", ".ci/run"], cwd=clone, env=env, stdout=log,
                              stderr=subprocess.STDOUT).returncode
    wall = time.time() - started
    phases = [json.loads(line) for line in times.read_text(encoding="utf-8").splitlines()]
    print(f"log: {scratch / 'ci.log'}")
    return {"date": str(datetime.date.today()), "revision": revision,
            "command": "python bench/suite_cost.py",
            "machine": f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
                       f"Python {platform.python_version()}",
            "json": out.with_suffix(".json").name, "wall_s": round(wall), "exit_code": code,
            "asserts": assert_count(clone / "tests"), "phases": phases}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-json", action="store_true",
                        help="no run: write both files again from the JSON")
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "suite-cost"))
    parser.add_argument("--baseline", metavar="JSON",
                        help="an earlier run's JSON: its summary is kept in this one and compared")
    args = parser.parse_args()
    out = Path(args.out)
    data = (json.loads(out.with_suffix(".json").read_text(encoding="utf-8")) if args.from_json
            else measure(out))
    if args.baseline:
        data["baseline"] = summary(json.loads(Path(args.baseline).read_text(encoding="utf-8")))
    out.with_suffix(".json").write_text(dumps(data), encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(data), encoding="utf-8")
    print(markdown(data))


if __name__ == "__main__":
    main()
