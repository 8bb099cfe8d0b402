# Bootstraps uv (via pip) when it is missing, then runs everything through it.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
UV ?= $(shell command -v uv 2>/dev/null || echo "$(HOME)/.local/bin/uv")
PY_SOURCES := shared/src event-broker/src event-processor/src management-service/src cli tests bench

.PHONY: uv sync demo lint format test lock bench

uv:
	@command -v $(UV) >/dev/null 2>&1 || { echo "installing uv with pip"; python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv; }

sync: uv
	@$(UV) sync --quiet --all-packages --group dev --group bench

demo: sync
	$(UV) run --no-sync rebalancer demo

lint: sync
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy $(PY_SOURCES)

format: sync
	$(UV) run --no-sync ruff format .
	$(UV) run --no-sync ruff check --fix .

test: lint
	@$(UV) run --no-sync python -m tests.preflight
	$(UV) run --no-sync pytest

bench: uv
	$(UV) sync --quiet --all-packages --group dev --group bench
	$(UV) run --no-sync python bench/queue.py
	$(UV) run --no-sync python bench/planner.py
	$(UV) run --no-sync python bench/fanout.py
	$(UV) run --no-sync python bench/api.py

lock: uv
	$(UV) lock --upgrade
	$(UV) run --no-sync python scripts/refresh_pins.py
