# The patched xtuner config: the built-in config with the tutorial's edits, its diff against the
# original, the plan it was made from, and the DeepSpeed JSON when DeepSpeed is on.
from xtuner_recipe import xtuner_config

DEEPSPEED_JSON = f"{RUN_DIR}/config/deepspeed.json" if DEEPSPEED_SOURCE else None


rule xtuner_config:
    input:
        base_model_input,
        dataset_info=rules.data.output.info,
    output:
        config=f"{RUN_DIR}/config/xtuner_config.py",
        diff=f"{RUN_DIR}/config/xtuner_config.diff",
        plan=f"{RUN_DIR}/config/plan.json",
        deepspeed=[DEEPSPEED_JSON] if DEEPSPEED_JSON else [],
    params:
        plan=lambda wildcards: json.dumps(
            xtuner_config.plan_for(config, TRAIN, DEVICE, BASE_MODEL, rules.data.output.dataset),
            ensure_ascii=False,
        ),
        deepspeed=(
            f"--deepspeed-source {DEEPSPEED_SOURCE} --deepspeed-out {DEEPSPEED_JSON}"
            if DEEPSPEED_SOURCE
            else ""
        ),
    log:
        f"{RUN_DIR}/logs/xtuner_config.log",
    shell:
        "python -m xtuner_recipe.xtuner_config --plan {params.plan:q}"
        " --dataset-info {input.dataset_info:q} --out {output.config:q} --diff {output.diff:q}"
        " --plan-out {output.plan:q} {params.deepspeed} > {log:q} 2>&1"
