"""Python that the recipe's Snakemake rules call: one module per stage, each unit-tested."""

import os

# The hub libraries must never reach for the network: every model and dataset is local. The MKL
# pair is what the tutorial sets for convert/merge; harmless elsewhere.
RUNTIME_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "MKL_SERVICE_FORCE_INTEL": "1", "MKL_THREADING_LAYER": "GNU"}


def use_runtime_env(environ=os.environ):
    """Called first by every module that loads a model; a value the user set wins."""
    for key, value in RUNTIME_ENV.items():
        environ.setdefault(key, value)
