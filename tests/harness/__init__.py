"""The tests' harness: the workflow runner, and the daemons some tests need (a one-node Slurm,
a private Docker engine, the Apptainer stand-in). Loaded as a pytest plugin (tests/conftest.py)."""
