# The two commands: `make demo` and `make test`. Both start from `make install`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_ACCOUNTS ?= 4000
DEMO_DAYS ?= 240

.PHONY: install install-test demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"

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
