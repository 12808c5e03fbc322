"""The train step's time and loss, from the runs of bench/gpu_train_step.sh.

    python bench/train_step.py OUT [OUT ...]      (folders holding the runs' <name>.tgz)

The runs log every iteration (log_interval 1), and the recipe sets mmengine's LogProcessor window
to the log interval, so each logged loss and time is that iteration's own. Per run, with the
report's own function (xtuner_recipe.report.training_summary): the train rule's wall time, the
time in training iterations (steady s/iter, the first iteration left out, x iterations), the share
outside them, tokens/s. Per run pair, the loss per optimizer step: each iteration's loss averaged
over the iterations of each optimizer step (16 packs: 16 iterations of the stock recipe, 4 of the
tuned one).
"""

import json
import re
import sys
import tarfile
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from xtuner_recipe.report import training_summary  # noqa: E402



def read_run(folder):
    def load(name):
        path = folder / name
        return json.loads(path.read_text()) if path.is_file() else None

    scalars = sorted((json.loads(line) for line in (folder / "train_scalars.jsonl").read_text()
                      .splitlines() if line.strip()), key=lambda s: s["step"])
    config = (folder / "config_xtuner_config.py").read_text()
    if ([s["step"] for s in scalars] != list(range(1, len(scalars) + 1))
            or not re.search(r"^log_processor = dict\(.*window_size=1\b", config, re.M)):
        sys.exit(f"{folder.name}: needs every iteration logged as itself (log_interval 1, "
                 "log_processor.window_size 1: the recipe sets both from train.log_interval)")
    return {"final": load("train_final_checkpoint.json"), "effective": load("config_effective.json"),
            "tokenized": load("data_tokenized_summary.json"), "scalars": scalars}


def per_step(run):
    """Mean loss over the iterations of each optimizer step."""
    per = run["effective"]["accumulative_counts"]
    raw = [s["loss"] for s in run["scalars"]]
    return [sum(raw[i:i + per]) / per for i in range(0, len(raw) - per + 1, per)]


def compare(a, b):
    """Mean and largest relative difference of two per-step loss curves (steps 2 on: the first
    is the random model's loss, the same for all)."""
    diffs = [abs(x - y) / y for x, y in zip(a[1:], b[1:])]
    return sum(diffs) / len(diffs), max(diffs)


def summary_row(name, run):
    meta = types.SimpleNamespace(method="qlora", device="cuda")
    s = training_summary(run["final"], meta, run["effective"], run["scalars"])
    steps = s["s_per_iter"] * s["iterations"]
    wall = s.get("train_rule_wall_s") or s.get("attempt_wall_s")
    tok = run["tokenized"]
    return (f"| {name} | {s['iterations']} | {tok['samples']} ({tok['records']} records, "
            f"{tok['seconds']:.0f} s once) | {wall:.0f} | {steps:.0f} | {s['outside_steps_s']:.0f} | "
            f"{s['outside_steps_share']:.2f} | {s['tokens_per_s']:,} |")


def main(argv=None):
    folders = [Path(p) for p in (argv if argv is not None else sys.argv[1:])]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in folders:
            for archive in sorted(folder.glob("*.tgz")):
                with tarfile.open(archive) as tar:
                    tar.extractall(Path(tmp) / folder.name, filter="data")
                name = archive.name[:-4]
                label = name if len(folders) == 1 else f"{name} ({folder.name})"
                runs[label] = read_run(Path(tmp) / folder.name / name)
    print("| run | iterations | training samples | train rule s | in iterations s | outside s "
          "| outside share | tokens/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, run in runs.items():
        print(summary_row(name, run))
    curves = {name: per_step(run) for name, run in runs.items()
              if run["effective"]["max_length"] == 2048}
    if len(curves) > 1:
        print("\nLoss per optimizer step (16 packs), relative difference over steps 2 on:\n")
        print("| pair | mean | largest |")
        print("|---|---|---|")
        names = list(curves)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                mean, largest = compare(curves[a], curves[b])
                print(f"| {a} vs {b} | {mean:.3f} | {largest:.3f} |")
        print("\n| step | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for k in range(min(len(c) for c in curves.values())):
            print(f"| {k + 1} | " + " | ".join(f"{curves[n][k]:.3f}" for n in names) + " |")


if __name__ == "__main__":
    main()
