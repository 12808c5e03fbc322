"""Provenance and promotion: the manifest of a run, the published set, and the check of one
against the other.

    python -m xtuner_recipe.manifest publish --manifest BUILD/report/manifest.json
        --receipt BUILD/published.json
    python -m xtuner_recipe.manifest verify results/<run>/published

The manifest (written by the report rule, `build_manifest`) lists the sha256 of every file of the
published set (data, patched config, training record, adapter, merged model, answers, report)
and its provenance: the training attempt's input hashes (base model files included), the package
versions, the git revision, the container and the devices that trained. `publish` promotes a build only when it matches its
manifest: hard links into a new folder, then one rename of the `published` symlink, so a reader
sees either the old set or the new one, never a mixture.
"""

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from xtuner_recipe.layout import MANIFEST, PUBLISHED, build_dir_of
from xtuner_recipe.messages import fail, log

PACKAGES = ("xtuner", "torch", "transformers", "peft", "mmengine", "deepspeed", "bitsandbytes",
            "datasets", "accelerate", "tokenizers", "snakemake")


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Snakemake's marker in directory outputs: bookkeeping, not content.
SKIPPED = {".snakemake_timestamp"}


def tree_hashes(root, names=None):
    """Relative path -> sha256 and size of every file under `root` (or under its `names`),
    sorted by path."""
    root = Path(root)
    tops = [root / n for n in names] if names else [root]
    files = sorted(p for top in tops for p in ([top] if top.is_file() else top.rglob("*"))
                   if p.is_file() and p.name not in SKIPPED)
    return {str(p.relative_to(root)): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
            for p in files}


def software_versions():
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def container():
    """The image this process runs in, as far as it can see: an Apptainer image file is hashed;
    a Docker container cannot see its image's digest, only what the image declares about itself."""
    sif = os.environ.get("APPTAINER_CONTAINER") or os.environ.get("SINGULARITY_CONTAINER")
    if sif:
        path = Path(sif)
        return {"runtime": "apptainer", "image": sif,
                "image_sha256": sha256_of(path) if path.is_file() else None}
    if Path("/.dockerenv").exists() or os.environ.get("XTUNER_RECIPE_IMAGE"):
        return {"runtime": "docker", "image": os.environ.get("XTUNER_RECIPE_IMAGE"),
                "image_sha256": None}
    return None


def git_revision(folder):
    """The workflow's commit, and whether its tracked files differ from it (None outside git)."""
    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=30)
    try:
        head = git("rev-parse", "HEAD")
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    return {"revision": head.stdout.strip(), "modified": bool(dirty)}


def environment():
    """What the training was made with, recorded by the training job itself (on its node, in its
    image): package versions, the container, and the recipe's own revision (of the installed
    package's checkout; an image records its revision in XTUNER_RECIPE_IMAGE)."""
    return {"software": software_versions(), "container": container(),
            "recipe_revision": git_revision(Path(__file__).parent)}


def build_manifest(build_dir, provenance):
    """`provenance` (the report's) plus the sha256 of every file of the set to publish."""
    files = {name: entry for name, entry in tree_hashes(build_dir, PUBLISHED).items()
             if name != MANIFEST}
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {**provenance, "created": created, "files": files}


def check(folder, manifest):
    """Problems of `folder` against `manifest`: files missing, changed, or not listed."""
    listed = manifest["files"]
    found = {name: entry for name, entry in tree_hashes(folder, PUBLISHED).items()
             if name != MANIFEST}
    problems = [f"missing: {name}" for name in listed if name not in found]
    problems += [f"changed: {name} (sha256 {found[name]['sha256'][:12]}, manifest "
                 f"{listed[name]['sha256'][:12]})" for name in listed
                 if name in found and found[name]["sha256"] != listed[name]["sha256"]]
    problems += [f"not in the manifest: {name}" for name in found if name not in listed]
    return problems


def follow_umask(path):
    """Give `path` (and what a folder holds) the modes the umask asks for: safetensors writes its
    files 0600 and mkdtemp its folders 0700, which would hide a result from everyone but its owner."""
    umask = os.umask(0)
    os.umask(umask)
    for item in [Path(path), *(Path(path).rglob("*") if Path(path).is_dir() else [])]:
        if not item.is_symlink():
            os.chmod(item, (0o777 if item.is_dir() else 0o666) & ~umask)


def write_folder(out, build):
    """Run build(tmp) in a temporary sibling of `out`, then put it at `out` in one rename
    (replacing an older `out`); return what build returned. On any error the temporary folder is
    removed and `out` is as it was: a killed or failed step never leaves half a folder behind."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a killed (SIGKILL) build
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        result = build(tmp)
        follow_umask(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def publish(manifest_path, receipt):
    """Promote the build: check it against its manifest, link it into a new folder under
    `.published/`, point `published` at it in one rename, then drop older sets."""
    build_dir = build_dir_of(manifest_path)
    run_dir = build_dir.parent
    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    problems = check(build_dir, manifest)
    if problems:
        fail(f"the build in {build_dir} does not match its manifest, nothing published:\n  "
             + "\n  ".join(problems))
    store = Path(run_dir) / ".published"
    stamp = f"{manifest['attempt']}-{time.strftime('%Y%m%d-%H%M%S')}"
    name = next(n for n in (f"{stamp}-{i}" if i else stamp for i in range(1000))
                if not (store / n).exists())

    def link_files(folder):
        for relative in [*manifest["files"], MANIFEST]:
            target = folder / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(Path(build_dir) / relative, target)  # no copy: same bytes, new name
            except OSError:
                shutil.copy2(Path(build_dir) / relative, target)

    write_folder(store / name, link_files)
    link = Path(run_dir) / "published"
    swap = Path(run_dir) / ".published.new"
    swap.unlink(missing_ok=True)
    swap.symlink_to(Path(".published") / name)
    os.replace(swap, link)  # atomic: readers see the old set or the new one
    for old in store.iterdir():
        if old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    Path(receipt).write_text(json.dumps({"published": str(link), "set": name,
                                         "attempt": manifest["attempt"]}, indent=2) + "\n")
    log(f"published {link} -> .published/{name}")


def verify(folder):
    folder = Path(folder)
    path = folder / MANIFEST
    if not path.is_file():
        fail(f"{path} not found: give a run's published folder (results/<run>/published)")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    problems = check(folder, manifest)
    if problems:
        fail(f"{folder} does not match its manifest:\n  " + "\n  ".join(problems))
    log(f"{folder}: all {len(manifest['files'])} files match the manifest "
        f"(attempt {manifest['attempt']})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("publish", help="promote a build that matches its manifest")
    for name in ("manifest", "receipt"):
        p.add_argument(f"--{name}", required=True)
    v = sub.add_parser("verify", help="check a published folder against its manifest")
    v.add_argument("folder")
    args = parser.parse_args(argv)
    if args.command == "publish":
        publish(args.manifest, args.receipt)
    else:
        verify(args.folder)


if __name__ == "__main__":
    main()
