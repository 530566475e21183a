# `make run`: set up (.venv, install, data) and run the default experiment.  `make test`: set up, run the tests.
# `make test-gpu`: the GPU checks (skipped without CUDA).  `make bench-gpu`: scripts/bench_gpu.py.
# Both are idempotent: once set up, set-up takes seconds.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch/torchvision are installed first, pinned, so pip never picks a different (multi-GB) build.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
EXPERIMENT ?= gan_mnist
ARGS   ?=
DATASET ?= mnist
STAMP  := $(VENV)/.installed

.PHONY: run test test-gpu cluster-test bench-cluster bench-gpu setup browser data lint format bench bench-rl clean docs docs-serve

run: setup data
	$(BIN)/python -m lab experiment=$(EXPERIMENT) $(ARGS)

# The docs site (mkdocs.yml, docs/): strict, so a broken link or a docstring griffe cannot read fails the build,
# and `make test` with it. Offline: no web fonts, no plugin that downloads. `make docs-serve`: live preview.
MKDOCS_BUILD = NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

docs: setup
	$(MKDOCS_BUILD)

docs-serve: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# The cluster tests need SLURM and PostgreSQL: scripts/cluster.sh starts them around pytest (installing the Debian
# packages the first time) and stops them after, even when tests fail; ones that were already up are left up.
# scripts/pytest_lanes.sh runs tests/cluster (mostly waiting on SLURM's clocks), then tests/unit, beside the rest.
test: setup browser
	$(BIN)/ruff check .
	$(MKDOCS_BUILD)
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/cluster.sh run -- scripts/pytest_lanes.sh $(BIN)/python $(PYTEST_ARGS)

# Only the tests marked `cluster`: SLURM jobs (sweeps, DDP, multi-node, preemption), Optuna on PostgreSQL.
cluster-test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/cluster.sh run -- $(BIN)/python -m pytest -q -m cluster $(PYTEST_ARGS)

bench-cluster: setup data
	PATH="$(CURDIR)/$(BIN):$$PATH" scripts/cluster.sh run -- $(BIN)/python scripts/bench_cluster.py

# The GPU checks (tests marked `gpu`, tests/gpu): every family on accelerator=gpu, 16-mixed / bf16-mixed, DDP,
# an Optuna sweep. They skip, saying why, where CUDA is absent; `make test` never runs them.
test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu -p no:cacheprovider $(PYTEST_ARGS)

setup: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian's chromium renders lab.report's HTML in a test; without it (no apt) that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
	  echo "chromium not installed: the report's browser test will be skipped"

data: setup
	$(BIN)/python -m lab.data fetch $(DATASET)

lint: setup
	$(BIN)/ruff check .

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup data
	$(BIN)/python scripts/bench.py cnn_mnist --seeds 0 1 2
	$(BIN)/python scripts/bench_overhead.py

bench-gpu: setup
	$(BIN)/python -m lab.data fetch all
	$(BIN)/python scripts/bench_gpu.py --with-cpu

bench-rl: setup
	$(BIN)/python scripts/profile_rl.py ppo_cartpole
	$(BIN)/python scripts/profile_rl.py dqn_cartpole --iterations 30
	$(BIN)/python scripts/bench_rl.py ppo_cartpole dqn_cartpole --seeds 0 1 2
	$(BIN)/python scripts/bench_rl.py ppo_lunarlander ppo_pendulum dqn_lunarlander --seeds 0

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
