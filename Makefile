# Two entry points, both from a fresh clone: `make start` and `make test`.
# Python packages go into .venv (and .venv-ipykernel6 for the kernel tests of the
# older ipykernel line); the one system package, chromium for the browser tests,
# comes from apt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The kernel-level liveness tests also run a kernel of the older ipykernel line.
IPYKERNEL6 := .venv-ipykernel6
# The browser tests drive Debian's chromium (Playwright never downloads a browser here).
CHROMIUM := /usr/bin/chromium

.PHONY: start test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The side panel's sources: setup.py rebuilds it when they change.
PANEL_SOURCES := $(shell find labextension/src labextension/style -type f) \
	$(wildcard labextension/*.json labextension/yarn.lock labextension/.yarnrc.yml)
# An editable install gets no data files: the built panel is linked where JupyterLab looks.
PANEL_LINK := $(VENV)/share/jupyter/labextensions/fiber-jupyter

$(VENV)/.installed: $(BIN)/python setup.py pyproject.toml $(PANEL_SOURCES)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	mkdir -p $(dir $(PANEL_LINK))
	ln -sfn $(CURDIR)/fiber_jupyter/labextension $(PANEL_LINK)
	touch $@

$(IPYKERNEL6)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(IPYKERNEL6)
	$(IPYKERNEL6)/bin/python -m pip install --quiet -e . "ipykernel==6.29.5"
	touch $@

$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

## start: install, then JupyterLab on notebooks/ (quickstart.ipynb: a local pool)
start: $(VENV)/.installed
	$(BIN)/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 --no-browser \
		$(if $(filter 0,$(shell id -u)),--allow-root,)

## test: install, then lint and run the whole test suite; last, the real-cluster
## tier (a single-node Kubernetes built from Debian's source package, root only)
test: $(VENV)/.installed $(IPYKERNEL6)/.installed $(CHROMIUM)
	$(BIN)/ruff check fiber_jupyter tests bench
	$(BIN)/python -m pytest -m "not real_cluster"
	$(BIN)/python -m pytest --nbval --nbval-current-env -p tests.notebooks.nbval_workers \
		--nbval-sanitize-with tests/notebooks/nbval_sanitize.cfg notebooks
	PYTHON=$(BIN)/python tests/k8s/cluster/tier.sh

## bench: compare with multiprocessing, loky, ipyparallel, Dask and Ray (installs them)
bench: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) $(IPYKERNEL6) build *.egg-info
