# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test deps lint check bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

# Debian packages the end-to-end tests and `make run` need (installed when missing).
deps:
	bash scripts/install-deps.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The whole suite: lint, types, unit, protocol and end-to-end against real engines.
test: deps $(STAMP) lint
	$(PY) -m pytest

# Run the proxy on this machine's engine (or a private Podman when none runs).
run: $(STAMP)
	bash scripts/run.sh

bench: deps $(STAMP)
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info bench/out bench/loadgen
