# Merged model: the adapter folded into the base model (on the CPU by default, so a small GPU is
# never asked to hold the whole model), sharded by max_shard_size.
rule merge:
    input:
        base_model_input,
        adapter=rules.hf_adapter.output,
    output:
        directory(f"{RUN_DIR}/merged"),
    params:
        base=BASE_MODEL,
        max_shard_size=config["convert"]["max_shard_size"],
        device=config["convert"]["merge_device"],
        method=TRAIN["method"],
    log:
        f"{RUN_DIR}/logs/merge.log",
    shell:
        "python -m xtuner_recipe.convert merge --base {params.base:q} --adapter {input.adapter:q}"
        " --out {output:q} --max-shard-size {params.max_shard_size} --device {params.device}"
        " --method {params.method} > {log:q} 2>&1"
