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

.PHONY: help setup lint format test test-slow demo bench gpu-pack gpu-check gpu-check-dry clean

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

# Packages the GPU machine's Python (3.12) lacks, as wheels for it; same versions as the dev venv.
GPU_WHEELS ?= jsonargparse==4.53.0 omegaconf==2.4.0 typeshed_client==2.15.0 docstring_parser==0.18.0 \
	timm==1.0.31 diffusers==0.42.1 importlib_metadata==10.2.0 lazy-importer==0.1.0
GPU_PY ?= 3.12

gpu-pack:  ## Prepare .gpu/ (wheels + a copy of $(SHARED)) to carry to a GPU machine.
	rm -rf .gpu && mkdir -p .gpu/whl .gpu/data
	python3 -m pip download -q --no-deps --only-binary=:all: --python-version $(GPU_PY) \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
		-d .gpu/whl $(GPU_WHEELS)
	cp -r $(SHARED)/mtd $(SHARED)/mpdd $(SHARED)/headct $(SHARED)/dtd .gpu/data/
	du -sh .gpu

gpu-check:  ## On a CUDA machine: the full-size proof (experiments/benchmarks/gpu_check.py).
	bash experiments/benchmarks/gpu_check.sh $(GPU_OUT)

gpu-check-dry: $(STAMP)  ## The same command on CPU with tiny models (checks that it runs).
	PYTHON=$(PY) bash experiments/benchmarks/gpu_check.sh bench_output/gpu_check_dry --dry

clean:  ## Remove run outputs (keeps .venv).
	rm -rf runs demo_output wandb lightning_logs .pytest_cache .mypy_cache .ruff_cache
