# The eval report: Markdown, JSON and the loss curve from the training scalars, then the manifest
# (sha256 of every file the run publishes, and its provenance).
rule report:
    input:
        settings=LAYOUT.settings("report"),
        answers=rules.evaluate.output,
        final=rules.train.output.final,
        scalars=rules.train.output.scalars,
        effective=rules.xtuner_config.output.effective,
        adapter=rules.hf_adapter.output,
        merged=rules.merge.output,
    output:
        md=LAYOUT.report_md,
        json=LAYOUT.report_json,
        png=LAYOUT.loss_curve,
        manifest=LAYOUT.manifest,
    log:
        LAYOUT.log("report"),
    shell:
        "python -m xtuner_recipe.report --settings {input.settings:q} --answers {input.answers:q}"
        " --final {input.final:q} --scalars {input.scalars:q} --effective {input.effective:q}"
        " --md {output.md:q} --json {output.json:q} --png {output.png:q}"
        " --manifest {output.manifest:q} > {log:q} 2>&1"
