# Set-up and the main jobs on a bare machine (python3 >= 3.10 and make): everything goes into ./.venv.
#   make bench   rnn_xp + the peers it times (torch, ONNX Runtime, JAX) + numba, matplotlib, tqdm; then a quick sweep
#   make test    rnn_xp + its test extras + torch; then the test suite
#   make docs    rnn_xp + Sphinx; then the documentation into docs/_build/html (warnings are errors)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install -q
# The torch release the benchmarks and the parity tests pin. By default its CPU build (about 200 MB) from PyTorch's
# CPU wheel index; `make bench TORCH_PIP_ARGS=` takes PyPI's default build instead (on Linux the CUDA one, GBs).
TORCH  := torch==2.13.0
TORCH_PIP_ARGS ?= --extra-index-url https://download.pytorch.org/whl/cpu
# Where the user's runs go (git ignores it); the project's own results are in bench/results/.
RUNS   := bench/runs

.PHONY: bench bench-full bench-cpu bench-peers bench-pytest test docs lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.torch: | $(BIN)/python
	@$(BIN)/python -c 'import torch' 2>/dev/null || $(PIP) '$(TORCH)' $(TORCH_PIP_ARGS)
	touch $@

$(VENV)/.bench: pyproject.toml $(VENV)/.torch
	$(PIP) -e '.[bench]'
	touch $@

$(VENV)/.test: pyproject.toml $(VENV)/.torch
	$(PIP) -e '.[test]'
	touch $@

$(VENV)/.docs: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[docs]'
	touch $@

# The main job: a quick sweep of every device present against every peer installed (JSON, Markdown table and PNG
# plots into bench/runs/), ending with a verdict on this machine. It writes no tracked file.
bench: $(VENV)/.bench
	$(BIN)/rnn-xp bench --quick --out $(RUNS)

bench-full: $(VENV)/.bench
	$(BIN)/rnn-xp bench --out $(RUNS)

# rnn_xp against torch.nn.RNN on the CPU at fixed sizes (ratios, geometric means, GFLOP/s).
bench-cpu: $(VENV)/.bench
	$(BIN)/python bench/cpu_vs_torch.py --out $(RUNS)

# rnn_xp against torch, ONNX Runtime and JAX on the CPU, each in a process of its own.
bench-peers: $(VENV)/.bench
	$(BIN)/python bench/cpu_vs_peers.py --out $(RUNS)

bench-pytest: $(VENV)/.bench
	$(PIP) pytest pytest-benchmark
	mkdir -p $(RUNS)
	$(BIN)/python -m pytest bench/ --benchmark-only --benchmark-json=$(RUNS)/pytest-benchmark.json -p no:cacheprovider

test: $(VENV)/.test
	$(BIN)/python -m pytest

docs: $(VENV)/.docs
	$(BIN)/python -m sphinx -W --keep-going -q -b html docs docs/_build/html
	@echo "docs: docs/_build/html/index.html"

lint: $(VENV)/.test
	$(PIP) ruff mypy
	$(BIN)/ruff check rnn_xp tests bench docs
	$(BIN)/mypy rnn_xp

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks docs/_build docs/generated docs/_generated
