# xtuner train. The work dir is deliberately not an output: Snakemake would delete it before a
# rerun, and it holds the checkpoints an interrupted run resumes from. The output records which
# checkpoint is final. Under profiles/slurm this is one Slurm job of nodes x tasks_per_node tasks.
rule train:
    input:
        config=rules.xtuner_config.output.config,
        plan=rules.xtuner_config.output.plan,
        deepspeed=rules.xtuner_config.output.deepspeed,
        dataset=rules.data.output.dataset,
    output:
        final=f"{RUN_DIR}/train/final_checkpoint.json",
    params:
        work_dir=f"{RUN_DIR}/train/work_dir",
        deepspeed=f"--deepspeed {DEEPSPEED_JSON}" if DEEPSPEED_JSON else "",
        launcher=LAUNCHER,
        # processes in all: torchrun's per machine, or every srun task of the Slurm job
        nproc=settings.slurm_tasks(config["slurm"]) if LAUNCHER == "slurm" else NPROC,
        srun=settings.train_srun(config["slurm"]),
    resources:
        **(settings.slurm_train_resources(config["slurm"]) if LAUNCHER == "slurm" else {}),
    log:
        f"{RUN_DIR}/logs/train.log",
    shell:
        "python -m xtuner_recipe.train --config {input.config:q} --plan {input.plan:q}"
        " --work-dir {params.work_dir:q} --final {output.final:q} {params.deepspeed}"
        " --launcher {params.launcher} --nproc {params.nproc} --srun={params.srun:q}"
        " > {log:q} 2>&1"
