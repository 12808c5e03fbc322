# xtuner-recipe: config.yaml -> assistant.json -> patched xtuner config -> iter_*.pth
#                -> HF adapter -> merged model -> eval report
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"


# The image every rule runs in when Snakemake is started with `--sdm apptainer` (config.yaml's
# `container.image`; containers/README.md). Without --sdm apptainer Snakemake ignores it. It must
# come after common.smk (which merges the config defaults) and before the rules: a global
# `container:` applies only to the rules defined after it.
container: config["container"]["image"]


include: "rules/base_model.smk"
include: "rules/data.smk"
include: "rules/xtuner_config.smk"
include: "rules/train.smk"
include: "rules/convert.smk"
include: "rules/merge.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


# Cheap steps run where Snakemake runs, also under profiles/slurm.
localrules:
    all,
    data,
    xtuner_config,
    report,


rule all:
    input:
        final_outputs(),
