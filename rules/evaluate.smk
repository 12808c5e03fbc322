# The same prompts to the base and the merged model: training prompts, held-out paraphrases of
# the identity question, and general prompts that show over-fitting.
rule evaluate:
    input:
        base_model_input,
        merged=rules.merge.output,
        plan=rules.xtuner_config.output.plan,
        dataset=rules.data.output.dataset,
    output:
        f"{RUN_DIR}/eval/answers.json",
    params:
        base=BASE_MODEL,
        name=config["assistant"]["name"],
        heldout=config["eval"]["heldout_identity_prompts"],
        general=config["eval"]["general_prompts"],
        max_new_tokens=config["eval"]["max_new_tokens"],
    log:
        f"{RUN_DIR}/logs/evaluate.log",
    shell:
        "python -m xtuner_recipe.evaluate --base {params.base:q} --merged {input.merged:q}"
        " --plan {input.plan:q} --dataset {input.dataset:q} --name {params.name:q}"
        " --heldout {params.heldout:q} --general {params.general:q}"
        " --max-new-tokens {params.max_new_tokens} --out {output:q} > {log:q} 2>&1"
