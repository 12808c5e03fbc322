# A folder to push to a model hub or an app platform, made from the published set:
# `snakemake bundle` (not part of `all`: sharing is a choice). xtuner_recipe/bundle.py says what
# it holds; README.md shows the push commands.
rule bundle:
    input:
        LAYOUT.publish_receipt,
    output:
        # a receipt, not directory(bundle): Snakemake would add its own timestamp file to the
        # folder, a file SHA256SUMS does not list
        LAYOUT.bundle_receipt,
    log:
        LAYOUT.log("bundle"),
    params:
        published=LAYOUT.published,
        bundle=LAYOUT.bundle,
    shell:
        "python -m xtuner_recipe.bundle --published {params.published:q} --out {params.bundle:q}"
        " --receipt {output:q} > {log:q} 2>&1"
