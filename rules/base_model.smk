# The tiny random-init InternLM2 that the tiny recipes train, built locally (no download). Shared
# by every run of the results_dir, so changing the assistant's data never rebuilds it.
rule base_model:
    input:
        shape=LAYOUT.tiny_model_shape,
    output:
        directory(LAYOUT.tiny_model),
    log:
        f"{LAYOUT.results_dir}/base_model/tiny-internlm2.log",
    shell:
        "python -m xtuner_recipe.tiny_model --out {output:q} --shape {input.shape:q} > {log:q} 2>&1"
