# settings/<stage>.json: each stage's slice of the resolved settings, the file its module reads.
# Written only when that slice changes (params), so a new eval prompt reruns evaluate and report,
# not training.
rule settings:
    output:
        settings_path("{folder}", "{name}"),
    log:
        f"{LAYOUT.results_dir}/{{folder}}/logs/settings-{{name}}.log",
    wildcard_constraints:
        folder="[^/]+",
    params:
        content=get_settings_file,
    run:
        Path(output[0]).write_text(params.content, encoding="utf-8")
        Path(log[0]).write_text(f"wrote {output[0]}\n", encoding="utf-8")
