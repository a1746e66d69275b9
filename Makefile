# The two commands a new user needs (both set up what they need first):
#   make run    the HTTP API on 127.0.0.1:8080: shipped model, SQLite in this folder, nothing else running
#   make test   the test suite (tests that need ../shared/data or a service skip with a message when absent)
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint bench audit fuzz soak

$(BIN)/skyshield: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $(BIN)/skyshield

setup: $(BIN)/skyshield

run: setup
	$(BIN)/skyshield serve --host 127.0.0.1 --port 8080

test: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

bench: setup
	for b in $(filter-out bench/soak.py,$(wildcard bench/*.py)); do $(BIN)/python $$b || exit 1; done

# Known vulnerabilities in the installed (pinned) dependencies. Needs the network (it fetches the PyPI
# vulnerability data), so it is not part of `make test`.
audit: setup
	$(BIN)/pip-audit --strict --skip-editable --progress-spinner off

# Fuzz every parser for FUZZ_SECONDS each (default 60); findings land in fuzz/findings/.
FUZZ_SECONDS ?= 60
fuzz: setup
	$(BIN)/python fuzz/run.py --seconds $(FUZZ_SECONDS)

# Mixed traffic at a fixed rate through the API and the SMPP firewall, RSS and latency each minute.
SOAK_MINUTES ?= 30
soak: setup
	$(BIN)/python bench/soak.py --minutes $(SOAK_MINUTES)
