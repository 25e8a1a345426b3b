# The two commands: `make demo` and `make test`. Both install the exact versions in the lock files
# (requirements/), then pql itself without touching them; `make lock` regenerates the locks.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION ?= 0.13.8
# Locks hold for every platform and for Python 3.11 and newer; pins already in a lock are kept unless
# `make lock UPGRADE=1`.
LOCK := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --quiet $(if $(UPGRADE),--upgrade)
DEMO_ACCOUNTS ?= 4000
DEMO_DAYS ?= 240

.PHONY: install install-test lock demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/lock.txt
	$(BIN)/pip install --quiet --no-deps -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -r requirements/test-lock.txt
	$(BIN)/pip install --quiet --no-deps -e .

lock: $(BIN)/python
	$(BIN)/pip install --quiet "uv==$(UV_VERSION)"
	$(LOCK) -o requirements/lock.txt
	$(LOCK) --extra test -o requirements/test-lock.txt

demo: install
	$(BIN)/pql demo --accounts $(DEMO_ACCOUNTS) --days $(DEMO_DAYS)

test: install-test
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pql .pytest_cache .ruff_cache
