# The two commands a new user needs (both set up what they need first):
#   make run    the HTTP API on 127.0.0.1:8080: shipped model, SQLite in this folder, nothing else running
#   make test   the test suite (tests that need ../shared/data or a service skip with a message when absent)
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint bench

$(BIN)/skyshield: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(BIN)/skyshield

setup: $(BIN)/skyshield

run: setup
	$(BIN)/skyshield serve --host 127.0.0.1 --port 8080

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done
