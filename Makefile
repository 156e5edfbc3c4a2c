# Two commands do all the set-up on a bare machine: `make bench` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-rnn-xp
TORCH  := torch==2.13.0
# Extra pip arguments for the torch peer. On an ordinary machine a plain `pip install torch==2.13.0` pulls the CUDA
# build (GBs); the CPU-only build: make bench TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=
# Where the user's runs go: git ignores it; the project's reference results are in bench/results/ (reference-*).
RUNS   := bench/runs

.PHONY: venv test bench bench-full bench-cpu bench-peers bench-pytest torch peers lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

# The peer that the CPU benchmark compares against (pinned: a CPU build of this release lies on the dev/CI disk).
torch: $(STAMP)
	@$(BIN)/python -c 'import torch' 2>/dev/null || $(BIN)/python -m pip install -q '$(TORCH)' $(TORCH_PIP_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest

# The other CPU peers, ONNX Runtime and JAX (the rnn-xp[peers] extra).
peers: $(STAMP)
	@$(BIN)/python -c 'import onnxruntime, onnx, jax' 2>/dev/null || $(BIN)/python -m pip install -q -e '.[peers]'

# The main job: a quick sweep of every device present against every peer (torch, ONNX Runtime, JAX; JSON, table,
# PNG plots into bench/runs/), ending with a verdict on this machine. It writes no tracked file.
bench: torch peers
	$(BIN)/rnn-xp bench --quick --out $(RUNS)

bench-full: torch peers
	$(BIN)/rnn-xp bench --out $(RUNS)

# rnn_xp vs torch.nn.RNN on the CPU at the sizes of the core issue (ratios, geometric means, GFLOP/s).
bench-cpu: torch
	$(BIN)/python bench/cpu_vs_torch.py --out $(RUNS)

# rnn_xp vs torch, ONNX Runtime and JAX on the CPU (issue 13's table: ratios in one run, B=1 per-step latency).
bench-peers: torch peers
	$(BIN)/python bench/cpu_vs_peers.py --out $(RUNS)

bench-pytest: torch
	mkdir -p $(RUNS)
	$(BIN)/python -m pytest bench/ --benchmark-only --benchmark-json=$(RUNS)/pytest-benchmark.json -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/python -m pip install -q ruff mypy
	$(BIN)/ruff check rnn_xp tests bench
	$(BIN)/mypy rnn_xp

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
