# The patched xtuner config: the built-in config with the tutorial's edits, training on the
# tokenised set, its diff against the original, the values training will really use, and the
# DeepSpeed JSON when DeepSpeed is on.
rule xtuner_config:
    input:
        get_base_model_input,
        settings=LAYOUT.settings("xtuner_config"),
        tokenized=rules.tokenized_data.output[0],
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
        " --tokenized {input.tokenized:q}"
        " --out {output.config:q} --diff {output.diff:q}"
        " --effective {output.effective:q} {params.deepspeed} > {log:q} 2>&1"
