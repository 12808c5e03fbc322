# xtuner-recipe: config.yaml + recipes/<name>.yaml -> assistant.json -> tokenised set
#                -> patched xtuner config -> iter_*.pth -> HF adapter -> merged model
#                -> eval report -> published set
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


# The repository's config.yaml, wherever --directory points; --configfile and --config go on top.
configfile: Path(workflow.basedir) / "config.yaml"


include: "rules/common.smk"


# The image every rule runs in when Snakemake is started with `--sdm apptainer`
# (containers/README.md); ignored otherwise. A global `container:` applies to the rules after it.
container: SETTINGS.config["container"]["image"]


include: "rules/settings.smk"
include: "rules/base_model.smk"
include: "rules/data.smk"
include: "rules/tokenized_data.smk"
include: "rules/xtuner_config.smk"
include: "rules/train.smk"
include: "rules/convert.smk"
include: "rules/merge.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/publish.smk"
include: "rules/bundle.smk"


# Cheap steps run where Snakemake runs, also under profiles/slurm.
localrules:
    all,
    settings,
    data,
    xtuner_config,
    report,
    publish,
    bundle,


rule all:
    input:
        LAYOUT.publish_receipt,
