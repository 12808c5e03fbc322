# assistant.json: the tutorial's generated identity data, or the user's own data, checked; test.json:
# the held-out test records (tasks qa and pretrain).
rule data:
    input:
        get_user_dataset,
        settings=LAYOUT.settings("data"),
        replay=get_replay,
    output:
        dataset=LAYOUT.dataset,
        test=LAYOUT.test_set,
        info=LAYOUT.dataset_info,
    log:
        LAYOUT.log("data"),
    params:
        replay=lambda wildcards, input: (
            f"--replay {input.replay}" if input.replay else ""
        ),
    shell:
        "python -m xtuner_recipe.assistant_data --settings {input.settings:q}"
        " --out {output.dataset:q} --test-out {output.test:q} --info {output.info:q}"
        " {params.replay} > {log:q} 2>&1"
