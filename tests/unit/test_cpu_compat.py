"""cpu_compat patches process-wide state (sys.modules, torch): it is applied in fresh interpreters
so this test process stays clean."""

import importlib.util
import json
import subprocess
import sys

import pytest

from harness.workflow import REPO
from xtuner_recipe import cpu_compat

pytestmark = pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None,
                                reason="a real torchvision is installed: no placeholder is used")

PROBE = r"""
import importlib.util, json, sys
from xtuner_recipe import cpu_compat
cpu_compat.apply()
result = {}
import xtuner.dataset  # imports torchvision for its InternVL dataset
from xtuner.dataset import process_hf_dataset
result["xtuner_dataset"] = callable(process_hf_dataset)
spec = importlib.util.find_spec("torchvision")
result["spec_name"] = spec.name
result["sub_spec_name"] = importlib.util.find_spec("torchvision.transforms").name
import torchvision
import torchvision.transforms as T
result["version"] = torchvision.__version__
result["bicubic"] = T.functional.InterpolationMode.BICUBIC
from transformers.utils import is_torchvision_available
result["transformers_sees_torchvision"] = is_torchvision_available()
errors = []
for call in (lambda: T.Compose([]), lambda: torchvision.read_image("x.png"),
             lambda: T.functional.resize(None, 3)):
    try:
        call()
        errors.append(None)
    except RuntimeError as error:
        errors.append(str(error))
result["errors"] = errors
try:
    torchvision.__wrapped__
    result["dunder"] = "no error"
except AttributeError:
    result["dunder"] = "AttributeError"
import torch
result["bf16"] = torch.cpu.is_bf16_supported()
torch.cuda.set_device(0)
result["set_device"] = "ok"
print("RESULT " + json.dumps(result))
"""


def run_python(code):
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def probe():
    proc = run_python(PROBE)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_xtuner_dataset_imports_without_torchvision(probe):
    assert probe["xtuner_dataset"] is True
    assert "placeholder" in probe["version"]


def test_find_spec_works_on_the_placeholder(probe):
    assert probe["spec_name"] == "torchvision"
    assert probe["sub_spec_name"] == "torchvision.transforms"


def test_transformers_does_not_see_torchvision(probe):
    assert probe["transformers_sees_torchvision"] is False


def test_using_the_placeholder_raises_naming_torchvision(probe):
    assert len(probe["errors"]) == 3
    for error in probe["errors"]:
        assert error is not None and "torchvision" in error
    assert probe["bicubic"] == "bicubic"
    assert probe["dunder"] == "AttributeError"


def test_bf16_is_off_and_set_device_is_harmless(probe):
    assert probe["bf16"] is False
    assert probe["set_device"] == "ok"


def test_placeholder_modules_without_touching_sys_modules():
    before = sys.modules.get("torchvision")
    modules = cpu_compat._torchvision_placeholder()
    assert sys.modules.get("torchvision") is before
    assert set(modules) == {"torchvision", "torchvision.transforms",
                            "torchvision.transforms.functional"}
    root = modules["torchvision"]
    assert root.transforms is modules["torchvision.transforms"]
    assert root.transforms.functional is modules["torchvision.transforms.functional"]
    for name, module in modules.items():
        assert module.__spec__.name == name and module.__path__ == []
    with pytest.raises(RuntimeError, match="torchvision is not installed"):
        root.anything(1, key=2)
    with pytest.raises(RuntimeError, match="torchvision"):
        modules["torchvision.transforms"].ToTensor()
    assert not hasattr(root, "__file__")
