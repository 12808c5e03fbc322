# The same prompts to the base and the merged model: training prompts, held-out paraphrases of
# the identity question, and general prompts that show over-fitting (task identity); the held-out
# test split (qa); held-out documents' perplexity (pretrain).
rule evaluate:
    input:
        get_base_model_input,
        settings=LAYOUT.settings("evaluate"),
        merged=rules.merge.output,
        dataset=rules.data.output.dataset,
        test_set=rules.data.output.test,
    output:
        LAYOUT.answers,
    log:
        LAYOUT.log("evaluate"),
    shell:
        # fd 3 is the terminal (the job's log under Slurm): prompts answered so far
        "XTUNER_RECIPE_PROGRESS_FD=3 python -m xtuner_recipe.evaluate"
        " --settings {input.settings:q} --merged {input.merged:q}"
        " --dataset {input.dataset:q} --test-set {input.test_set:q} --out {output:q}"
        " 3>&2 > {log:q} 2>&1"
