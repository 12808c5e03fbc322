"""containers/cpu.lock.txt and cuda.lock.txt: one source of versions, every CPU file hashed."""

import importlib.util

from harness.workflow import REPO

spec = importlib.util.spec_from_file_location("wheelhouse", REPO / "containers" / "wheelhouse.py")
wheelhouse = importlib.util.module_from_spec(spec)
spec.loader.exec_module(wheelhouse)


def test_both_locks_are_made_from_the_current_requirements():
    """A changed requirements file without `containers/build.sh lock` fails here, not in a build."""
    assert wheelhouse.recorded_hash(wheelhouse.LOCK) == wheelhouse.input_hash()
    assert wheelhouse.recorded_hash(wheelhouse.CUDA_LOCK) == wheelhouse.input_hash()


def test_every_cpu_file_is_pinned_by_sha256():
    pins = wheelhouse.read_lock(wheelhouse.LOCK)
    assert pins["torch"][0] == "2.13.0+cpu"  # never PyPI's CUDA build
    assert {"pytest", "snakemake", "xtuner", "deepspeed", "pip"} <= set(pins)
    unhashed = [name for name, (_, digest) in pins.items()
                if not (digest and len(digest) == 64 and int(digest, 16) >= 0)]
    assert not unhashed


def test_the_cuda_lock_is_the_cpu_lock_but_for_the_listed_differences():
    cpu, cuda = wheelhouse.read_lock(wheelhouse.LOCK), wheelhouse.read_lock(wheelhouse.CUDA_LOCK)
    assert set(cpu) == set(cuda)
    differ = {name: cuda[name][0] for name in cpu if cpu[name][0] != cuda[name][0]}
    assert differ == {name: v for name, (v, _) in wheelhouse.CUDA_DIFFERENCES.items()}
    text = wheelhouse.CUDA_LOCK.read_text()
    for name, (_, why) in wheelhouse.CUDA_DIFFERENCES.items():
        assert why in text, name  # each difference says why in the lock itself
