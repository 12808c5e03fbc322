#!/usr/bin/env bash
# The image's entry point (installed as /usr/local/bin/xtuner-recipe). `--help` says what it does.
set -euo pipefail

RECIPE=/opt/xtuner-recipe
RUNS=${XTUNER_RECIPE_RUNS:-/runs}

usage() {
    cat <<EOF
xtuner-recipe ${XTUNER_RECIPE_IMAGE:-} : the fine-tuning recipe, its tests and its pinned stack.

  docker run --rm --user "\$(id -u):\$(id -g)" -v "\$PWD/out:/runs" IMAGE [SNAKEMAKE OPTIONS]
      runs the recipe (the default one, or the one your config names) into /runs:
      the result is /runs/results/<run_name>/published. Options go to Snakemake, e.g.
        --configfile /cfg/mine.yaml   a config of yours, mounted (-v "\$PWD/cfg:/cfg:ro")
        --config recipe=tiny-internlm2/lora_cpu    --dry-run    --until data
  docker run --rm --network none IMAGE test [PYTEST OPTIONS]
      runs the tests baked into the image (default: -m "not slow", the unit and bad-input tests)
  docker run --rm -it -v "\$PWD/out:/runs" IMAGE chat results/<run_name> [--base] [--prompt TEXT]
      chat with a run's fine-tuned model (or its base model), streamed; --help lists the options
  docker run --rm -p 127.0.0.1:8501:8501 -v "\$PWD/out:/runs" IMAGE webapp
      the web demo of the runs in /runs/results, at http://127.0.0.1:8501 on your machine
  docker run --rm IMAGE COMMAND [ARGS]
      any command inside the image (bash, python, snakemake, xtuner, ...)
  docker run --rm IMAGE --help        this text

Any uid works (no passwd entry needed; HOME falls back to a folder under /tmp); files are
written with umask 022, so the invoking user can read everything. /runs must be writable by
that uid: mkdir out first, then pass --user "\$(id -u):\$(id -g)". A read-only root file system
works (--read-only --tmpfs /tmp). The image is offline: models come from /runs or a mount
(model.path), the default recipe's model wheel is in the image. The workflow is in $RECIPE.
EOF
}

# Any uid: a HOME it can write (Docker gives an unknown uid HOME=/), a user name for
# getpass.getuser() (no passwd entry), files readable by the invoking user.
umask 0022
if [[ -z ${HOME:-} || $HOME == / || ! -w $HOME ]]; then
    export HOME=/tmp/xtuner-recipe-home-$(id -u)
fi
mkdir -p "$HOME"
if ! id -un >/dev/null 2>&1; then
    export USER=${USER:-uid$(id -u)} LOGNAME=${LOGNAME:-uid$(id -u)}
fi
export XDG_CACHE_HOME=${XDG_CACHE_HOME:-$HOME/.cache}
# DeepSpeed's CPU add-on is built into the image once; torch takes a lock file beside it, so each
# user gets a writable copy (timestamps kept, so ninja finds nothing to rebuild).
if [[ -z ${TORCH_EXTENSIONS_DIR:-} && -d /opt/torch-extensions ]]; then
    export TORCH_EXTENSIONS_DIR=$XDG_CACHE_HOME/torch_extensions
    [[ -d $TORCH_EXTENSIONS_DIR ]] || { mkdir -p "$XDG_CACHE_HOME"; cp -a /opt/torch-extensions "$TORCH_EXTENSIONS_DIR"; }
fi

case ${1:-} in
    -h | --help | help)
        usage
        ;;
    test)
        shift
        cd "$RECIPE"
        marker=(-m "not slow")
        for arg in "$@"; do [[ $arg == -m ]] && marker=(); done
        exec python -m pytest -p no:cacheprovider --basetemp "${TMPDIR:-/tmp}/xtuner-recipe-tests" \
            "${marker[@]}" "$@"
        ;;
    chat)
        shift
        cd "$RUNS" 2>/dev/null || true  # run folders are named relative to /runs
        exec python -m xtuner_recipe.chat "$@"
        ;;
    webapp)
        shift
        # 0.0.0.0 inside the container; `-p 127.0.0.1:8501:8501` keeps it on the host's localhost
        exec python -m xtuner_recipe.webapp "$RUNS/results" --host 0.0.0.0 "$@"
        ;;
    "" | -*)
        # The image's own /runs is thrown away with the container (--rm): refuse to train there.
        if [[ $RUNS == /runs ]] && ! awk '$5 == "/runs" { found = 1 } END { exit !found }' \
            /proc/self/mountinfo; then
            echo "[xtuner-recipe] /runs is not a mount: the run would be lost with the container." \
                "Add a folder of yours: mkdir -p out && docker run --user \"\$(id -u):\$(id -g)\"" \
                "-v \"\$PWD/out:/runs\" IMAGE (--help lists the rest)" >&2
            exit 2
        fi
        if [[ ! -d $RUNS || ! -w $RUNS ]]; then
            echo "[xtuner-recipe] $RUNS is not a folder that uid $(id -u) can write." \
                "Mount one: mkdir -p out && docker run --user \"\$(id -u):\$(id -g)\" -v \"\$PWD/out:$RUNS\" IMAGE" >&2
            exit 2
        fi
        exec snakemake --snakefile "$RECIPE/Snakefile" --directory "$RUNS" \
            --profile "$RECIPE/profiles/local" "$@"
        ;;
    *)
        exec "$@"
        ;;
esac
