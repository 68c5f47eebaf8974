# The two commands for a fresh machine are `make demo` and `make test` (see README).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
DATA ?= data
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo dashboard test test-fast bench clean help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup: $(STAMP)  ## create .venv and install everything (fast when nothing changed)
$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

data: setup $(DATA)/fashion_mnist/train/manifest.json $(DATA)/fashion_mnist/test/manifest.json  ## Fashion-MNIST -> shards
$(DATA)/fashion_mnist/%/manifest.json:
	$(PY) -m platform.data build fashion-mnist --split $* --out $(DATA)/fashion_mnist/$*

demo: setup data  ## run the default sweep: +experiment=downsample_factor at scale=local
	$(PY) -m platform.sweep +experiment=downsample_factor

dashboard: setup  ## MLflow UI on the demo's runs (ARGS="+experiment=NAME --port N" to choose)
	$(PY) -m platform.dashboard $(or $(ARGS),+experiment=downsample_factor)

# Most end-to-end tests run one stage chain at a time (one core of two) or wait on servers
# and clusters starting: two pytest workers, each taking whole files (module fixtures and
# test_sweep_trust's ordered steps stay in one process), keep both cores busy. One torch
# thread per worker (unless OMP_NUM_THREADS says otherwise): two workers with torch's
# default of one thread per core spin against each other (make test-fast: 217 s -> 181 s).
PYTEST = OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(PY) -m pytest -n 2 --dist loadfile

test: setup  ## run the test suite
	$(PYTEST)

test-fast: setup  ## the suite without slow end-to-end tests
	$(PYTEST) -m "not slow"

bench: setup data  ## all benchmarks (python -m platform.bench --help)
	$(PY) -m platform.bench all

clean:  ## remove run outputs (keeps .venv and data)
	rm -rf runs multirun outputs mlruns mlflow.db
