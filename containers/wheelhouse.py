#!/usr/bin/env python3
"""Lock the image's package set with hashes, and keep an optional wheelhouse of exactly those files.

    python3 containers/wheelhouse.py lock    # resolve -> containers/cpu.lock.txt (with sha256 of
                                             # every file) and containers/cuda.lock.txt
    python3 containers/wheelhouse.py sync    # download the locked files into containers/wheelhouse/cpu
    python3 containers/wheelhouse.py check   # exit 1 when a lock is older than its inputs

One source of versions: requirements/cpu.txt and requirements/test.txt (the image carries its
tests), plus xtuner (installed --no-deps), the build tools and pyproject.toml's build requirements.
The CUDA lock is the CPU lock with the differences in CUDA_DIFFERENCES, each with its reason.

Run it with a CPython 3.11 on linux x86_64 (the image's interpreter and platform) whose pip finds
the CPU build of torch 2.13.0+cpu, through its own configuration (pip.conf or PIP_* variables: a
find-links folder, or an extra index that serves torch's CPU wheels).
The hashes are those of the files downloaded here, so a build without the wheelhouse (pip fetching
from PyPI and the CPU-wheel index) installs the very same files or stops on a hash mismatch.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from pip._vendor.packaging.utils import (InvalidSdistFilename, InvalidWheelFilename,
                                         canonicalize_name, canonicalize_version,
                                         parse_sdist_filename, parse_wheel_filename)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REQUIREMENTS = [ROOT / "requirements" / "cpu.txt", ROOT / "requirements" / "test.txt"]
PYPROJECT = ROOT / "pyproject.toml"
LOCK = HERE / "cpu.lock.txt"
CUDA_LOCK = HERE / "cuda.lock.txt"
WHEELHOUSE = HERE / "wheelhouse" / "cpu"
# Installed with --no-deps after the resolved set (it requires torchvision, which has no CPU wheel).
NO_DEPS = ["xtuner==0.2.0"]
# The image builds the sdists (deepspeed, transformers-stream-generator) and the project with
# --no-build-isolation: the build tools must be locked too.
TOOLS = ["pip", "setuptools", "wheel"]
# name -> (version in the CUDA image, why it differs from the CPU lock)
CUDA_DIFFERENCES = {
    "torch": ("2.13.0", "the same release, PyPI's Linux build (CUDA) instead of the +cpu build; "
                        "its nvidia-* runtime wheels are pinned exactly by torch's own metadata"),
    "bitsandbytes": ("0.50.2", "0.45.0 ships no library for CUDA 13 (seen on the H100 machines)"),
}


def build_requires() -> list[str]:
    data = tomllib.loads(PYPROJECT.read_text())
    return list(data.get("build-system", {}).get("requires", []))


def input_hash() -> str:
    h = hashlib.sha256()
    for path in REQUIREMENTS:
        h.update(path.read_bytes() + b"\0")
    for item in (*NO_DEPS, *TOOLS, *build_requires(), json.dumps(CUDA_DIFFERENCES, sort_keys=True)):
        h.update(b"\0" + item.encode())
    return h.hexdigest()


def recorded_hash(lock_file: Path = LOCK) -> str | None:
    if not lock_file.exists():
        return None
    for line in lock_file.read_text().splitlines():
        if line.startswith("# input-sha256: "):
            return line.split(": ", 1)[1].strip()
    return None


def read_lock(lock_file: Path = LOCK) -> dict[str, tuple[str, str | None]]:
    """{canonical name: (version, sha256 or None)}."""
    pins = {}
    for line in lock_file.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        spec, _, digest = line.partition(" --hash=sha256:")
        name, version = spec.split("==")
        pins[canonicalize_name(name)] = (version.strip(), digest.strip() or None)
    return pins


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def check_interpreter() -> None:
    if sys.version_info[:2] != (3, 11) or sys.platform != "linux" or os.uname().machine != "x86_64":
        sys.exit(f"run this with CPython 3.11 on linux x86_64 (the image's), not {sys.version.split()[0]} "
                 f"on {sys.platform}/{os.uname().machine}: set PYTHON=python3.11")


def resolve() -> dict[str, str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        requirements = [arg for path in REQUIREMENTS for arg in ("-r", str(path))]
        pip("install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
            *requirements, *TOOLS, *build_requires())
        items = json.loads(report.read_text())["install"]
    pins = {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in items}
    for spec in NO_DEPS:
        name, version = spec.split("==")
        pins[canonicalize_name(name)] = version
    return pins


def file_key(path: Path) -> tuple[str, str] | None:
    try:
        if path.name.endswith(".whl"):
            name, version, _, _ = parse_wheel_filename(path.name)
        else:
            name, version = parse_sdist_filename(path.name)
    except (InvalidWheelFilename, InvalidSdistFilename):
        return None
    return canonicalize_name(name), canonicalize_version(version)


def sync_folder(pins: dict[str, str], wheelhouse: Path = WHEELHOUSE) -> dict[str, Path]:
    """Exactly one file per pin in `wheelhouse` (downloading what is missing); {name: file}."""
    wanted = {(n, canonicalize_version(v)): f"{n}=={v}" for n, v in pins.items()}
    wheelhouse.mkdir(parents=True, exist_ok=True)
    present: dict[tuple[str, str], list[Path]] = {}
    for f in sorted(wheelhouse.iterdir()):
        if f.name.startswith("."):
            continue
        key = file_key(f)
        if key not in wanted:
            print(f"removing {f.name} (not in the lock)")
            f.unlink()
            continue
        present.setdefault(key, []).append(f)
    missing = [spec for key, spec in wanted.items() if key not in present]
    if missing:
        print(f"downloading {len(missing)} of {len(wanted)} locked packages")
        pip("download", "--no-deps", "--dest", str(wheelhouse), *missing)
    files: dict[tuple[str, str], list[Path]] = {}
    for f in wheelhouse.iterdir():
        key = file_key(f)
        if key is not None:
            files.setdefault(key, []).append(f)
    bad = [spec for key, spec in wanted.items() if len(files.get(key, [])) != 1]
    if bad:
        sys.exit(f"wheelhouse incomplete or ambiguous for: {bad}")
    size = sum(f.stat().st_size for f in wheelhouse.iterdir() if f.is_file())
    print(f"wheelhouse {wheelhouse.relative_to(ROOT)}: {len(wanted)} files, {size / 2**20:.0f} MiB")
    return {key[0]: found[0] for key, found in files.items()}


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def lock() -> None:
    check_interpreter()
    pins = resolve()
    files = sync_folder(pins)
    digest = input_hash()
    header = [
        "# Generated by `containers/build.sh lock` (containers/wheelhouse.py): do not edit by hand.",
        f"# input-sha256: {digest}",
    ]
    cpu = header[:1] + [
        "# The CPU image's complete package set, CPython 3.11 on linux x86_64: requirements/cpu.txt and",
        f"# requirements/test.txt resolved, plus {', '.join(NO_DEPS)} (no dependencies) and the build",
        "# tools. The Dockerfile installs it with --no-deps --require-hashes.",
    ] + header[1:] + [f"{n}=={v} --hash=sha256:{sha256_file(files[n])}" for n, v in sorted(pins.items())]
    LOCK.write_text("\n".join(cpu) + "\n")
    cuda = header[:1] + [
        "# The CUDA image's versions: containers/cpu.lock.txt with these differences",
        *(f"#   {n} {v} (CPU: {pins.get(n)}): {why}" for n, (v, why) in sorted(CUDA_DIFFERENCES.items())),
        "# No hashes: the CUDA wheels cannot be fetched where this lock is made.",
    ] + header[1:] + [f"{n}=={CUDA_DIFFERENCES.get(n, (v,))[0]}" for n, v in sorted(pins.items())]
    CUDA_LOCK.write_text("\n".join(cuda) + "\n")
    print(f"wrote {LOCK.relative_to(ROOT)} and {CUDA_LOCK.relative_to(ROOT)}: {len(pins)} packages")


def sync() -> None:
    check_interpreter()
    if recorded_hash() != input_hash():
        print("lock missing or stale (requirements or build requirements changed): re-locking")
        lock()
        return
    pins = read_lock()
    files = sync_folder({n: v for n, (v, _) in pins.items()})
    wrong = [f.name for n, f in files.items() if sha256_file(f) != pins[n][1]]
    if wrong:
        sys.exit(f"these wheelhouse files differ from the lock's sha256: {wrong}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["lock", "sync", "check"])
    a = ap.parse_args()
    if a.command == "lock":
        lock()
    elif a.command == "sync":
        sync()
    else:
        sys.exit(0 if recorded_hash() == input_hash() == recorded_hash(CUDA_LOCK) else 1)


if __name__ == "__main__":
    main()
