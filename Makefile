# Two entry points for a new user: `make demo` and `make test`.
# Each creates .venv when missing and installs the tested versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint claims bench clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/distill demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

claims: $(STAMP)
	$(BIN)/distill claims

bench: $(STAMP)
	$(BIN)/distill bench tabular

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
