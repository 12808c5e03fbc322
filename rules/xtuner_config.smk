# The patched xtuner config: the built-in config with the tutorial's edits, its diff against the
# original, the values training will really use, and the DeepSpeed JSON when DeepSpeed is on.
rule xtuner_config:
    input:
        get_base_model_input,
        settings=LAYOUT.settings("xtuner_config"),
        dataset=rules.data.output.dataset,
        dataset_info=rules.data.output.info,
    output:
        config=LAYOUT.xtuner_config,
        diff=LAYOUT.xtuner_config_diff,
        effective=LAYOUT.effective,
        deepspeed=[LAYOUT.deepspeed_json] if SETTINGS.deepspeed else [],
    log:
        LAYOUT.log("xtuner_config"),
    params:
        deepspeed=(
            f"--deepspeed-out {LAYOUT.deepspeed_json}" if SETTINGS.deepspeed else ""
        ),
    shell:
        "python -m xtuner_recipe.xtuner_config --settings {input.settings:q}"
        " --dataset {input.dataset:q} --dataset-info {input.dataset_info:q}"
        " --out {output.config:q} --diff {output.diff:q}"
        " --effective {output.effective:q} {params.deepspeed} > {log:q} 2>&1"
