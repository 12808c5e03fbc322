# Quick start: `make run` (install, then the default recipe: SmolLM2-135M-Instruct, LoRA) and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
# Rules call `python -m xtuner_recipe...`: the venv must come first on PATH.
export PATH := $(abspath $(BIN)):$(PATH)
export DS_BUILD_OPS := 0

.PHONY: install run test test-fast clean-results

install: $(VENV)/.installed

# torch first and alone, from its exact pin, so no resolver ever pulls a CUDA build; deepspeed
# builds from its sdist against that torch; xtuner without its deps (it requires torchvision,
# which has no CPU wheel for this torch: see xtuner_recipe/cpu_compat.py).
$(VENV)/.installed: requirements/cpu.txt requirements/slurm.txt requirements/test.txt requirements/test-workers.txt requirements/lint.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==25.3 setuptools==84.2.1 wheel==0.48.0
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet --no-build-isolation -r requirements/cpu.txt -r requirements/slurm.txt \
		-r requirements/test.txt -r requirements/test-workers.txt -r requirements/lint.txt
	$(BIN)/pip install --quiet --no-deps xtuner==0.2.0
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

run: install
	$(BIN)/snakemake --profile profiles/local

# Parallel workers (pytest-xdist; tests sharing a daemon or a recipe run stay in one worker):
# while one waits on Slurm, an image build or a download, another trains. `make test` keeps one
# process (0) until a fresh clone's parallel run is measured (bench/suite_cost.py); TEST_WORKERS=2
# runs it in two. The slowest phases are printed at the end, so every CI log shows the time.
TEST_WORKERS ?= 0
XDIST := --dist loadgroup

test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(XDIST) --durations=25

# The quick loop: unit tests and bad-input checks, no end-to-end runs.
test-fast: install
	$(BIN)/python -m pytest -n 2 $(XDIST) -m "not slow"
