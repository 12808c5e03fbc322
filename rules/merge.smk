# Merged model: the adapter folded into the base model (on the CPU by default, so a small GPU is
# never asked to hold the whole model), sharded by max_shard_size.
rule merge:
    input:
        get_base_model_input,
        settings=LAYOUT.settings("convert"),
        adapter=rules.hf_adapter.output,
    output:
        directory(LAYOUT.merged),
    log:
        LAYOUT.log("merge"),
    shell:
        "python -m xtuner_recipe.convert merge --settings {input.settings:q}"
        " --adapter {input.adapter:q} --out {output:q} > {log:q} 2>&1"
