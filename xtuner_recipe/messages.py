"""How the recipe speaks to its user: one log prefix, a progress line for the terminal, and the
error a bad config value raises."""

import os

LOG_PREFIX = "[xtuner-recipe]"
# A rule whose step runs for minutes hands the module the terminal (or, under Slurm, the job's
# log) as this file descriptor, while everything else goes to the rule's log file:
#   XTUNER_RECIPE_PROGRESS_FD=3 python -m ... 3>&2 > {log} 2>&1
# Taken at import, so no process this one starts sees a descriptor it does not have.
PROGRESS_FD = "XTUNER_RECIPE_PROGRESS_FD"
_progress = (os.fdopen(int(os.environ.pop(PROGRESS_FD)), "w", buffering=1, encoding="utf-8")
             if os.environ.get(PROGRESS_FD) else None)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the field and the fix."""


def log(message):
    print(f"{LOG_PREFIX} {message}", flush=True)


def progress(message):
    """One compact line where the user runs the workflow, also kept in the rule's log."""
    log(message)
    if _progress:
        _progress.write(f"{LOG_PREFIX} {message}\n")


def fail(message):
    """Stop a rule's module with one clear line (exit status 1), not a traceback."""
    raise SystemExit(f"{LOG_PREFIX} {message}")


def schema_error_message(error):
    """One line for a jsonschema ValidationError: the field, what is wrong, and the allowed values."""
    field = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        return f"config field {field}: {error.message}; allowed keys: {', '.join(allowed)}"
    if error.validator == "enum":
        allowed = ", ".join("null" if v is None else str(v) for v in error.validator_value)
        return f"config field {field} = {error.instance!r}: must be one of {allowed}"
    return f"config field {field} = {error.instance!r}: {error.message}"


def check_schema(config, schema, where="configuration"):
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config),
                    key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"invalid {where}:\n  " +
                          "\n  ".join(schema_error_message(e) for e in errors))
