# HF adapter: xtuner's pth_to_hf on the chosen checkpoint (a .pth file or a DeepSpeed folder).
rule hf_adapter:
    input:
        settings=LAYOUT.settings("convert"),
        config=rules.xtuner_config.output.config,
        final=rules.train.output.final,
    output:
        directory(LAYOUT.adapter),
    log:
        LAYOUT.log("hf_adapter"),
    shell:
        "python -m xtuner_recipe.convert adapter --settings {input.settings:q}"
        " --config {input.config:q} --final {input.final:q} --out {output:q} > {log:q} 2>&1"
