# The tokenised, packed training set (xtuner's process_hf_dataset, saved to disk), made once per
# data, tokenizer, template and max_length: training loads it as it is, so a retrain with other
# hyperparameters does not tokenise again. Pre-flight (tokenizer, max_length) runs here.
rule tokenized_data:
    input:
        get_base_model_input,
        settings=LAYOUT.settings("tokenized_data"),
        dataset=rules.data.output.dataset,
        dataset_info=rules.data.output.info,
    output:
        directory(LAYOUT.tokenized),
    log:
        LAYOUT.log("tokenized_data"),
    shell:
        "python -m xtuner_recipe.tokenized_data --settings {input.settings:q}"
        " --dataset {input.dataset:q} --dataset-info {input.dataset_info:q}"
        " --out {output:q} > {log:q} 2>&1"
