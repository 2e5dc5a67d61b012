# anomalyvfm workbench. `make help` lists the targets; CI runs `make lint test`.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision are installed first, pinned, so that pip never resolves a different
# (multi-GB) build while installing the package's other dependencies.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The speed benchmark's default: the RADIO paper config shrunk to a CPU-sized model of the same
# architecture. On a GPU, at full size (see experiments/benchmarks/RESULTS.md):
#   make bench BENCH_ARGS="--config experiments/configs/anomalyvfm_radio.yaml --infer-batch 32 ..."
SHARED ?= ../shared/data
BENCH_ARGS ?= --config experiments/configs/anomalyvfm_radio.yaml \
	--config experiments/benchmarks/tiny_overlay.yaml --normal-dir $(SHARED)/dtd \
	--eval-config experiments/configs/eval/shared_data.yaml --eval-batches 4

.PHONY: help setup lint format test test-slow demo bench clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch, torchvision" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)  ## Create .venv and install the package with dev tools (idempotent).

lint: $(STAMP)  ## ruff (lint + format check) and mypy on both packages.
	$(VENV)/bin/ruff check anomalyvfm data_synthesis tests
	$(VENV)/bin/ruff format --check anomalyvfm data_synthesis tests
	$(VENV)/bin/mypy anomalyvfm data_synthesis

format: $(STAMP)  ## Apply ruff fixes and formatting.
	$(VENV)/bin/ruff check --fix anomalyvfm data_synthesis tests
	$(VENV)/bin/ruff format anomalyvfm data_synthesis tests

test: $(STAMP)  ## The default test suite (CPU, offline, a few minutes).
	$(PY) -m pytest $(PYTEST_ARGS)

test-slow: $(STAMP)  ## Only the tests marked slow.
	$(PY) -m pytest -m slow $(PYTEST_ARGS)

demo: $(STAMP)  ## Build demo data, train, evaluate zero-shot; results in demo_output/.
	$(PY) -m anomalyvfm.demo --out demo_output

bench: $(STAMP)  ## Training/inference speed: reference fp32 eager vs our defaults, same run.
	$(PY) -m anomalyvfm.bench $(BENCH_ARGS)

clean:  ## Remove run outputs (keeps .venv).
	rm -rf runs demo_output wandb lightning_logs .pytest_cache .mypy_cache .ruff_cache
