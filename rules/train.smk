# xtuner train. The work dir is deliberately not an output: Snakemake would delete it before a
# rerun, and it holds the checkpoints an interrupted run resumes from. The outputs record which
# checkpoint is final and the scalars of every segment of the run. Under profiles/slurm this is
# one Slurm job of nodes x tasks_per_node tasks.
rule train:
    input:
        settings=LAYOUT.settings("train"),
        config=rules.xtuner_config.output.config,
        deepspeed=rules.xtuner_config.output.deepspeed,
        dataset=rules.data.output.dataset,
    output:
        final=LAYOUT.final,
        scalars=LAYOUT.scalars,
    log:
        LAYOUT.log("train"),
    resources:
        **get_train_resources(),
    params:
        deepspeed=f"--deepspeed {LAYOUT.deepspeed_json}" if SETTINGS.deepspeed else "",
    shell:
        "python -m xtuner_recipe.train --settings {input.settings:q} --config {input.config:q}"
        " --final {output.final:q} --scalars {output.scalars:q} {params.deepspeed}"
        " > {log:q} 2>&1"
