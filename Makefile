# Everything runs from the checkout's own virtual environments, so only a Python 3.11+ is needed:
#   .tools/  a private venv holding uv (PEP 668 forbids `pip install` into Debian's python3; a venv is
#            allowed), created on first use and always called by its path;
#   .venv/   the project's environment, built by uv from the exact pins in pyproject.toml.
# Nothing is installed outside the checkout and nothing assumes `uv` is on the PATH.
SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
HOST ?= 127.0.0.1
# Test processes at once (pytest-xdist): the tests mostly wait on sockets and subprocesses, so more
# workers than cores pays; every test keeps its own key prefix, databases and ports.
TEST_WORKERS ?= 4
export UV_PYTHON_DOWNLOADS := never
# uv's own root certificates do not know a proxy's or a company's root; the system's store does.
export UV_SYSTEM_CERTS ?= 1
PY_SOURCES := shared/src event-broker/src event-processor/src management-service/src cli tests bench

.PHONY: setup sync demo demo-once lint format test test-only lock bench

$(UV):
	@bash scripts/bootstrap-uv "$(PYTHON)" "$(TOOLS)" "$(UV_VERSION)"

# The project's environment (dev and bench tools included): what `make test` and `./rebalancer` use.
setup sync: $(UV)
	@$(UV) sync --quiet --all-packages --group dev --group bench --python "$(PYTHON)"

demo: sync
	$(BIN)/rebalancer demo --host $(HOST) --port $(PORT)

demo-once: sync
	$(BIN)/rebalancer demo --once

lint: sync
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy $(PY_SOURCES)

format: sync
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint test-only

test-only: sync
	@$(BIN)/python -m tests.preflight
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=15

# bench/latency.py takes about 8 minutes; shorten it with e.g. LATENCY_ARGS="--triggers 20 --rounds 1".
LATENCY_ARGS ?=

bench: sync
	$(BIN)/python bench/queue.py
	$(BIN)/python bench/planner.py
	$(BIN)/python bench/rebalance.py
	$(BIN)/python bench/fanout.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/latency.py $(LATENCY_ARGS)

lock: $(UV)
	$(UV) lock --upgrade --python "$(PYTHON)"
	$(BIN)/python scripts/refresh_pins.py "$(UV)"
