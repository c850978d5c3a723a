# Two commands do all setup: `make demo` and `make test` each create .venv and install what they need first.
# The demo needs the package alone; the tests add their tools and Ray (--executor ray): two installs, two stamps.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(VENV)/created:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	touch $@

$(VENV)/installed-demo: pyproject.toml $(VENV)/created
	@echo "Installing retrain-ci into $(VENV) (TensorFlow and the audit's libraries: a few minutes the first time)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/installed-test: pyproject.toml $(VENV)/created
	@echo "Installing retrain-ci with its test tools and Ray into $(VENV)"
	$(BIN)/pip install --quiet -e '.[test,ray]'
	touch $@

demo: $(VENV)/installed-demo
	$(BIN)/retrain-ci demo

test: $(VENV)/installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

bench: $(VENV)/installed-test
	$(BIN)/python benchmarks/train_flowers.py

clean:
	rm -rf $(VENV) build *.egg-info
