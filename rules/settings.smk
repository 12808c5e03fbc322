# settings/<stage>.json: each stage's slice of the resolved settings, the file its module reads.
# Written only when that slice changes (params: its sha256), so a new eval prompt reruns evaluate
# and report, not training.
rule settings:
    output:
        settings_path("{folder}", "{name}"),
    log:
        f"{LAYOUT.results_dir}/{{folder}}/logs/settings-{{name}}.log",
    wildcard_constraints:
        folder="[^/]+(/build)?",
    params:
        sha256=get_settings_digest,
    run:
        write_settings_file(wildcards, output[0], log[0])
