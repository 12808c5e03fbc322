"""The manifest, the promotion of a build and the check of a published set."""

import json
import os

import pytest

from xtuner_recipe import manifest
from xtuner_recipe.layout import MANIFEST


def make_build(run_dir, weights=b"weights-1"):
    build = run_dir / "build"
    for relative, content in {"data/assistant.json": b"[]", "merged/model.safetensors": weights,
                              "merged/.snakemake_timestamp": b"",
                              "report/report.md": b"# report",
                              "logs/train.log": b"not published"}.items():
        (build / relative).parent.mkdir(parents=True, exist_ok=True)
        (build / relative).write_bytes(content)
    built = manifest.build_manifest(build, {"attempt": "a1", "run_name": "r"})
    (build / MANIFEST).write_text(json.dumps(built))
    return build


def test_a_folder_is_written_whole_or_not_at_all(tmp_path):
    out = tmp_path / "models" / "m"

    def broken(folder):
        (folder / "config.json").write_text("{}")
        raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError):
        manifest.write_folder(out, broken)
    assert not out.exists() and list(out.parent.iterdir()) == []

    assert manifest.write_folder(out, lambda folder: (folder / "config.json").write_text("{}")) == 2
    assert [p.name for p in out.iterdir()] == ["config.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask
    # a failed rebuild keeps the old folder; a good one replaces it whole
    with pytest.raises(RuntimeError):
        manifest.write_folder(out, broken)
    assert [p.name for p in out.iterdir()] == ["config.json"]
    (out.parent / ".m.partial-killed").mkdir()  # what a SIGKILL mid-build leaves
    manifest.write_folder(out, lambda folder: (folder / "weights.bin").write_bytes(b"w"))
    assert [p.name for p in out.iterdir()] == ["weights.bin"]
    assert [p.name for p in out.parent.iterdir()] == ["m"]


def test_the_manifest_hashes_the_published_files_only(tmp_path):
    build = make_build(tmp_path)
    files = json.loads((build / MANIFEST).read_text())["files"]
    assert sorted(files) == ["data/assistant.json", "merged/model.safetensors",
                             "report/report.md"]
    assert files["merged/model.safetensors"] == {
        "sha256": manifest.sha256_of(build / "merged/model.safetensors"), "bytes": 9}


def test_publish_swaps_the_whole_set_and_verify_checks_it(tmp_path, capsys):
    build = make_build(tmp_path)
    os.chmod(build / "merged/model.safetensors", 0o600)  # as safetensors writes it
    manifest.publish(build / MANIFEST, build / "published.json")
    published = tmp_path / "published"
    assert published.is_symlink() and (published / "merged/model.safetensors").read_bytes() == \
        b"weights-1"
    assert os.stat(published / "merged/model.safetensors").st_ino == \
        os.stat(build / "merged/model.safetensors").st_ino  # a link, not a copy
    assert not (published / "logs").exists()
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(published / "merged/model.safetensors").st_mode & 0o777 == 0o666 & ~umask
    manifest.verify(published)
    first = os.readlink(published)

    # a newer build replaces the set; the build's later rewrite never reaches the published files
    (build / "merged/model.safetensors").unlink()
    make_build(tmp_path, weights=b"weights-2")
    manifest.publish(build / MANIFEST, build / "published.json")
    assert os.readlink(published) != first
    assert not (tmp_path / first).exists()  # the older set is dropped once replaced
    assert (published / "merged/model.safetensors").read_bytes() == b"weights-2"

    (build / "merged/model.safetensors").unlink()
    (build / "merged/model.safetensors").write_bytes(b"half-written")
    with pytest.raises(SystemExit, match="does not match its manifest, nothing published"):
        manifest.publish(build / MANIFEST, build / "published.json")
    assert (published / "merged/model.safetensors").read_bytes() == b"weights-2"


def test_verify_names_changed_missing_and_unlisted_files(tmp_path):
    build = make_build(tmp_path)
    manifest.publish(build / MANIFEST, build / "published.json")
    published = tmp_path / "published"
    target = published / "data/assistant.json"
    target.unlink()
    target.write_text("[1]")
    (published / "report/report.md").unlink()
    (published / "merged/extra.bin").write_bytes(b"x")
    with pytest.raises(SystemExit) as error:
        manifest.verify(published)
    message = str(error.value)
    assert "changed: data/assistant.json" in message and "missing: report/report.md" in message
    assert "not in the manifest: merged/extra.bin" in message
