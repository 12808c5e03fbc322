# xtuner-recipe: config.yaml -> assistant.json -> patched xtuner config -> iter_*.pth
#                -> HF adapter -> merged model -> eval report
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "rules/common.smk"
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
