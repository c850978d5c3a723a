# Two commands do all setup: `make demo` and `make test` each create .venv and install the package first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(VENV)/installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $@

demo: $(VENV)/installed
	$(BIN)/retrain-ci demo

test: $(VENV)/installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: $(VENV)/installed
	$(BIN)/python benchmarks/train_flowers.py

clean:
	rm -rf $(VENV) build *.egg-info
