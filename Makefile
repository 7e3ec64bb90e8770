# walkstream developer commands. `make help` lists them.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=
DEMO_ARGS ?=

.DEFAULT_GOAL := help
BENCH_VENV := .walkstream/bench-venv
.PHONY: help setup up down status demo test test-unit lint docs format bench bench-replay clean

help: ## list every target
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "walkstream needs Python >= 3.11; set PYTHON=python3.11")'
	@echo "setup: creating $(VENV) and installing Python packages (first run downloads ~400 MB)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

setup: $(INSTALLED) ## install everything (venv, Python packages, Maven jars, Redis 8); fast when current
	$(BIN)/walkstream setup

up: setup ## set up, start local Kafka + Redis on loopback, print their status
	$(BIN)/walkstream up

down: ## stop the local services that `up` started
	$(BIN)/walkstream down

demo: setup ## set up, then run the whole pipeline on synthetic data and show what it learned
	$(BIN)/walkstream demo $(DEMO_ARGS)

status: ## show which local services run
	$(BIN)/walkstream status

test: setup lint docs ## set up, lint, build the docs, run every test (unit + integration on real services)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(INSTALLED) ## every test that needs no service (no Kafka, Redis, Flink or Maven)
	$(BIN)/python -m pytest -m "not integration" -n 2 -q $(PYTEST_ARGS)

lint: $(INSTALLED) ## ruff format check + ruff lint + mypy
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

docs: $(INSTALLED) ## build the docs site (mkdocs, strict: a broken link fails) into .walkstream/site
	$(BIN)/mkdocs build --strict --quiet

format: $(INSTALLED) ## apply ruff formatting and safe lint fixes
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# pecanpy (the walk baseline) pins numpy < 2, so it lives in its own virtualenv.
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q pecanpy==2.0.9
	@touch $@

bench: setup $(BENCH_VENV)/.installed ## run the benchmarks (medians, baselines in the same run); see docs/benchmarks.md
	$(BIN)/python -m tests.benchmarks.bench_batch --pecanpy-python $(BENCH_VENV)/bin/python
	$(BIN)/python -m tests.benchmarks.bench_stream
	$(BIN)/python -m tests.benchmarks.bench_freshness
	$(BIN)/python -m tests.benchmarks.bench_walks
	$(BIN)/python -m tests.benchmarks.bench_trainer
	$(BIN)/python -m tests.benchmarks.bench_serving
	$(BIN)/python -m tests.benchmarks.bench_serving --items 1000000 --repeats 1
	$(BIN)/python -m tests.benchmarks.bench_users
	$(BIN)/python -m tests.benchmarks.bench_parity
	$(BIN)/python -m tests.benchmarks.bench_parity --synthetic
	$(BIN)/python -m tests.benchmarks.bench_drift
	$(BIN)/python -m tests.benchmarks.bench_drift --offline
	$(BIN)/python -m tests.benchmarks.bench_drift --from-scratch
	$(BIN)/python -m tests.benchmarks.bench_drift --vote-bound --step 1000
	$(BIN)/python -m tests.benchmarks.bench_drift --vote-bound --step 1000 --vote-window 50
	$(BIN)/python -m tests.benchmarks.bench_drift --vote-bound --forget-moved --step 1000 --vote-window 50

bench-replay: setup ## 10-million-event runs through the job (bounded replay; live, with walks): time, peak memory
	$(BIN)/python -m tests.benchmarks.bench_replay
	$(BIN)/python -m tests.benchmarks.bench_walks --events 10000000 --variants replicated:1 --repeats 1 --out .walkstream/bench/walks-10m.json
	$(BIN)/python -m tests.benchmarks.bench_user_state
	$(BIN)/python -m tests.benchmarks.bench_user_state --of items

clean: ## stop local services and delete their data and checkpoints (keeps installed jars and Redis)
	-$(BIN)/walkstream down
	rm -rf .walkstream/state .walkstream/checkpoints
