# HF adapter: xtuner's pth_to_hf on the chosen checkpoint (a .pth file or a DeepSpeed folder).
rule hf_adapter:
    input:
        config=rules.xtuner_config.output.config,
        final=rules.train.output.final,
    output:
        directory(f"{RUN_DIR}/hf_adapter"),
    params:
        checkpoint=config["convert"]["checkpoint"],
        method=TRAIN["method"],
    log:
        f"{RUN_DIR}/logs/hf_adapter.log",
    shell:
        "python -m xtuner_recipe.convert adapter --config {input.config:q} --final {input.final:q}"
        " --checkpoint {params.checkpoint} --method {params.method} --out {output:q} > {log:q} 2>&1"
