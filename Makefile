# The two entry points of the quick start: `make serve` and `make test`.
# Both create .venv on first use and install the project into it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

.PHONY: serve test lint install
install: $(STAMP)

serve: $(STAMP)
	$(BIN)/suricate serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check suricate tests
	$(BIN)/mypy suricate

test: $(STAMP)
	$(BIN)/ruff check suricate tests
	$(BIN)/mypy suricate
	$(BIN)/pytest -q -p no:cacheprovider tests
