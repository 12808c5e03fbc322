# The embedded default model: a tiny random-init InternLM2 built locally (no download). Shared by
# every run, so changing the assistant's data never rebuilds it.
rule base_model:
    output:
        directory(TINY_MODEL),
    params:
        shape=json.dumps(config["model"]["tiny"]),
    log:
        f"{RESULTS}/base_model/tiny-internlm2.log",
    shell:
        "python -m xtuner_recipe.tiny_model --out {output:q} --shape {params.shape:q} > {log:q} 2>&1"
