"""Where every artifact of a run lives. The rules, the tests and bench/ all read these names from
here.

    <results_dir>/<run_name>/
        published -> .published/<attempt>   the last good result, one consistent set (a symlink,
                                            replaced in one rename when a newer run succeeded)
        build/                              what the current or last run is making: Snakemake's
                                            outputs, complete only once `publish` ran
        attempts/<attempt>/                 xtuner's work dirs, one per training attempt (named by
                                            the hash of everything that decides the weights)
        bundle/                             `snakemake bundle`: the published set made ready to push
                                            to a model hub (xtuner_recipe/bundle.py)
    <results_dir>/base_model/               models shared by every run of the results_dir
    <results_dir>/compile_cache/            torch.compile's kernels (train.compile), shared likewise
"""

import dataclasses
import hashlib
from pathlib import Path

# The run's deliverables, in the order the recipe makes them (relative to the build folder and to
# the published set: `publish` copies exactly these trees).
ARTIFACTS = (
    "data/assistant.json",
    "data/tokenized/summary.json",
    "config/xtuner_config.py",
    "config/xtuner_config.diff",
    "train/final_checkpoint.json",
    "hf_adapter/adapter_config.json",
    "merged/config.json",
    "report/report.md",
    "report/report.json",
    "report/loss_curve.png",
    "report/manifest.json",
)
MANIFEST = "report/manifest.json"
# The folders and files a published set holds (hard links to the build's files).
PUBLISHED = ("data", "config", "train/final_checkpoint.json", "train/scalars.jsonl", "hf_adapter",
             "merged", "eval", "report")


def build_dir_of(manifest_path):
    """The build folder a manifest (MANIFEST, inside it) belongs to; its parent is the run's."""
    return Path(manifest_path).parents[len(Path(MANIFEST).parts) - 1]


def model_name(model_path):
    """A file-name-safe name for a model folder: its own name plus a short hash of the path."""
    path = str(model_path).rstrip("/")
    return f"{path.rsplit('/', 1)[-1]}-{hashlib.sha1(path.encode()).hexdigest()[:8]}"


@dataclasses.dataclass(frozen=True)
class RunLayout:
    results_dir: str
    run_name: str

    def path(self, relative):
        return f"{self.build_dir}/{relative}"

    @property
    def run_dir(self):
        return f"{self.results_dir}/{self.run_name}"

    @property
    def build_dir(self):
        return f"{self.run_dir}/build"

    @property
    def attempts_dir(self):
        return f"{self.run_dir}/attempts"

    @property
    def published(self):
        return f"{self.run_dir}/published"

    @property
    def bundle(self):
        return f"{self.run_dir}/bundle"

    @property
    def tiny_model(self):
        """Shared by every run of this results_dir: a new owner never rebuilds it."""
        return f"{self.results_dir}/base_model/tiny-internlm2"

    @property
    def tiny_model_shape(self):
        return f"{self.results_dir}/base_model/settings/tiny-internlm2.json"

    def packaged_model(self, member):
        """A model converted from a file inside a pinned wheel, named after that file."""
        name = member.rsplit("/", 1)[-1].split(".")[0].lower()
        return f"{self.results_dir}/base_model/packaged/{name}"

    @property
    def compile_cache(self):
        """inductor's compiled kernels: a retrain, another run or a fresh container reuses them."""
        return f"{self.results_dir}/compile_cache"

    @property
    def wheel_cache(self):
        return f"{self.results_dir}/base_model/wheels"

    def replay(self, model_path, settings_digest):
        """The base model's own answers, cached beside the base models: one file per model and
        replay settings, so runs that ask differently never rewrite each other's."""
        return (f"{self.results_dir}/base_model/replay/{model_name(model_path)}-"
                f"{settings_digest[:8]}.json")

    def replay_settings(self, model_path, settings_digest):
        return (f"{self.results_dir}/base_model/settings/replay-{model_name(model_path)}-"
                f"{settings_digest[:8]}.json")

    def settings(self, stage):
        return self.path(f"settings/{stage}.json")

    def log(self, rule):
        return self.path(f"logs/{rule}.log")

    dataset = property(lambda self: self.path("data/assistant.json"))
    test_set = property(lambda self: self.path("data/test.json"))
    dataset_info = property(lambda self: self.path("data/dataset_info.json"))
    tokenized = property(lambda self: self.path("data/tokenized"))
    xtuner_config = property(lambda self: self.path("config/xtuner_config.py"))
    xtuner_config_diff = property(lambda self: self.path("config/xtuner_config.diff"))
    effective = property(lambda self: self.path("config/effective.json"))
    deepspeed_json = property(lambda self: self.path("config/deepspeed.json"))
    final = property(lambda self: self.path("train/final_checkpoint.json"))
    scalars = property(lambda self: self.path("train/scalars.jsonl"))
    adapter = property(lambda self: self.path("hf_adapter"))
    merged = property(lambda self: self.path("merged"))
    answers = property(lambda self: self.path("eval/answers.json"))
    report_md = property(lambda self: self.path("report/report.md"))
    report_json = property(lambda self: self.path("report/report.json"))
    loss_curve = property(lambda self: self.path("report/loss_curve.png"))
    manifest = property(lambda self: self.path(MANIFEST))
    # The receipt of the last promotion (in the build folder, so Snakemake may replace it freely).
    publish_receipt = property(lambda self: self.path("published.json"))
    # `snakemake bundle`'s output: the folder it made, its files and their total size.
    bundle_receipt = property(lambda self: self.path("bundle.json"))
