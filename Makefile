# Two entry points, both from a fresh clone: `make start` and `make test`.
# Everything is installed into .venv; nothing is installed system-wide.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: start test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python setup.py pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

## start: install, then run the demo on a local pool
start: $(VENV)/.installed
	$(BIN)/python notebooks/demo.py

## test: install, then lint and run the whole test suite
test: $(VENV)/.installed
	$(BIN)/ruff check fiber_jupyter tests bench
	$(BIN)/python -m pytest

## bench: compare with multiprocessing, loky, ipyparallel, Dask and Ray (installs them)
bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info
