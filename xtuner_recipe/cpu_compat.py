"""Everything the CPU path needs to run xtuner 0.2.0 on a CPU build of torch, in one place.

Applied only when CUDA is absent (`apply_if_no_cuda`); a GPU run never touches it.
Each patch names the failure it prevents:

- xtuner.dataset imports torchvision (for its InternVL dataset) at import time, and there is no
  CPU wheel of torchvision for this torch: a placeholder module satisfies the import; any real use
  of it raises.
- xtuner.model.sft calls torch.cpu.is_bf16_supported(), which torch 2.13 no longer has.
- mmengine calls torch.cuda.set_device(local_rank) for distributed runs, which a CPU build lacks.

The config side of the CPU path (OptimWrapper instead of AmpOptimWrapper, float32, LoRA instead of
4-bit QLoRA, the gloo backend) is written into the patched xtuner config by `xtuner_config`.
"""

import importlib.machinery
import sys
import types


def _torchvision_placeholder():
    def refuse(*_args, **_kwargs):
        raise RuntimeError("torchvision is not installed (CPU build of the recipe); "
                           "image datasets need the CUDA environment")

    class _Anything(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            return refuse

    root = _Anything("torchvision")
    root.__path__ = []
    # A spec keeps importlib.util.find_spec working; with no installed distribution behind it,
    # transformers still reports torchvision as unavailable.
    root.__spec__ = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    root.__version__ = "not installed (xtuner-recipe CPU placeholder)"  # mmengine logs it
    modules = {"torchvision": root}
    for name in ("transforms", "transforms.functional"):
        module = _Anything(f"torchvision.{name}")
        module.__path__ = []
        module.__spec__ = importlib.machinery.ModuleSpec(f"torchvision.{name}", None,
                                                         is_package=True)
        modules[f"torchvision.{name}"] = module
    root.transforms = modules["torchvision.transforms"]
    root.transforms.functional = modules["torchvision.transforms.functional"]
    root.transforms.functional.InterpolationMode = types.SimpleNamespace(BICUBIC="bicubic")
    return modules


def apply():
    import torch

    try:
        import torchvision  # noqa: F401
    except ImportError:
        sys.modules.update(_torchvision_placeholder())
    if not hasattr(torch.cpu, "is_bf16_supported"):
        # CPU training in the recipe runs float32; answering False keeps xtuner off bf16.
        torch.cpu.is_bf16_supported = lambda *_a, **_k: False
    torch.cuda.set_device = lambda *_a, **_k: None


def apply_if_no_cuda():
    import torch

    if not torch.cuda.is_available():
        apply()
