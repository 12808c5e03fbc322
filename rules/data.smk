# assistant.json: the tutorial's generated identity data, or the user's own dataset, checked.
rule data:
    input:
        get_user_dataset,
        settings=LAYOUT.settings("data"),
    output:
        dataset=LAYOUT.dataset,
        info=LAYOUT.dataset_info,
    log:
        LAYOUT.log("data"),
    shell:
        "python -m xtuner_recipe.assistant_data --settings {input.settings:q}"
        " --out {output.dataset:q} --info {output.info:q} > {log:q} 2>&1"
