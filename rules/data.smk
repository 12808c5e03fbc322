# assistant.json: the tutorial's generated identity data, or the user's own dataset, checked.
rule data:
    output:
        dataset=f"{RUN_DIR}/data/assistant.json",
        info=f"{RUN_DIR}/data/dataset_info.json",
    params:
        # a function: the pairs hold "{name}", which params strings would expand as a wildcard
        assistant=lambda wildcards: json.dumps(config["assistant"], ensure_ascii=False),
    input:
        # A user's dataset is an input: editing it rebuilds everything downstream.
        lambda wildcards: [config["assistant"]["dataset"]] if config["assistant"]["dataset"] else [],
    log:
        f"{RUN_DIR}/logs/data.log",
    shell:
        "python -m xtuner_recipe.assistant_data --assistant {params.assistant:q}"
        " --out {output.dataset:q} --info {output.info:q} > {log:q} 2>&1"
