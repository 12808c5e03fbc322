# xtuner train, in the attempt named by the hash of everything that decides the weights (config,
# tokenised dataset, base model files, DeepSpeed JSON, world size): the same inputs resume or
# reuse their attempt, other inputs train in a new one. The attempts are deliberately not
# outputs: Snakemake would delete them before a rerun. The outputs record which checkpoint is
# final and the scalars of every segment. Under profiles/slurm this is one Slurm job of nodes x
# tasks_per_node tasks.
rule train:
    input:
        get_base_model_input,
        settings=LAYOUT.settings("train"),
        config=rules.xtuner_config.output.config,
        deepspeed=rules.xtuner_config.output.deepspeed,
        effective=rules.xtuner_config.output.effective,
        tokenized=rules.tokenized_data.output[0],
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
        # fd 3 is the terminal (the job's log under Slurm): a progress line per logged iteration
        "XTUNER_RECIPE_PROGRESS_FD=3 python -m xtuner_recipe.train --settings {input.settings:q}"
        " --config {input.config:q}"
        " --tokenized {input.tokenized:q} --effective {input.effective:q}"
        " --final {output.final:q} --scalars {output.scalars:q}"
        " {params.deepspeed} 3>&2 > {log:q} 2>&1"
