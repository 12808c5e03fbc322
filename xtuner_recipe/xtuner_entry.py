"""Run one of xtuner's tool modules with a real exit status.

`xtuner <cmd>` exits 0 even when the command inside fails, and it starts whatever `python` is first
on PATH. Running the tool module in this interpreter instead propagates failures, and lets the CPU
compatibility patches load before xtuner does. Usage:

    python -m xtuner_recipe.xtuner_entry train CONFIG [xtuner train options]
    python -m xtuner_recipe.xtuner_entry pth_to_hf CONFIG PTH SAVE_DIR [options]
    python -m xtuner_recipe.xtuner_entry merge BASE ADAPTER SAVE_DIR [options]
    python -m xtuner_recipe.xtuner_entry chat MODEL [options]

The same line works under torchrun and srun (one process per rank).
"""

import runpy
import sys

from xtuner_recipe import cpu_compat, use_runtime_env

TOOL_MODULES = {
    "train": "xtuner.tools.train",
    "pth_to_hf": "xtuner.tools.model_converters.pth_to_hf",
    "merge": "xtuner.tools.model_converters.merge",
    "chat": "xtuner.tools.chat",
    "copy_cfg": "xtuner.tools.copy_cfg",
    "list_cfg": "xtuner.tools.list_cfg",
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in TOOL_MODULES:
        sys.exit(f"usage: python -m xtuner_recipe.xtuner_entry {{{','.join(TOOL_MODULES)}}} ARGS...")
    tool, args = argv[0], argv[1:]
    use_runtime_env()
    cpu_compat.apply_if_no_cuda()
    if tool == "train":
        import datasets

        # the tokenised set is the tokenized_data rule's output: map's cache files would land
        # in it and change its bytes (and so the next attempt's hash)
        datasets.disable_caching()
    module = TOOL_MODULES[tool]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
