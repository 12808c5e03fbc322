# Promotion: only a build that finished every step and matches its manifest replaces the run's
# published set (`<run>/published`, one symlink renamed in one step). A failed or half-made
# build never touches it.
rule publish:
    input:
        manifest=rules.report.output.manifest,
        md=rules.report.output.md,
    output:
        LAYOUT.publish_receipt,
    log:
        LAYOUT.log("publish"),
    shell:
        "python -m xtuner_recipe.manifest publish --manifest {input.manifest:q}"
        " --receipt {output:q} > {log:q} 2>&1"
