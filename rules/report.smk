# The eval report: Markdown, JSON and the loss curve from mmengine's scalars.json.
rule report:
    input:
        answers=rules.evaluate.output,
        final=rules.train.output.final,
        plan=rules.xtuner_config.output.plan,
    output:
        md=f"{RUN_DIR}/report/report.md",
        json=f"{RUN_DIR}/report/report.json",
        png=f"{RUN_DIR}/report/loss_curve.png",
    params:
        work_dir=rules.train.params.work_dir,
        run_name=RUN,
    log:
        f"{RUN_DIR}/logs/report.log",
    shell:
        "python -m xtuner_recipe.report --answers {input.answers:q} --final {input.final:q}"
        " --plan {input.plan:q} --work-dir {params.work_dir:q} --md {output.md:q}"
        " --json {output.json:q} --png {output.png:q} --run-name {params.run_name:q} > {log:q} 2>&1"
