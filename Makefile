# The targets are the interface: CI, the README and humans call only these.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# --no-compile: byte-compiling every installed file (torch, transformers) took longer than the rest of
# the install; Python compiles the modules it actually imports on first use instead.
PIP_FLAGS := --quiet --disable-pip-version-check --no-compile

.PHONY: serve test bench demo lint fmt clean

# One venv for everything: the runtime package, the torch extra (training) and the dev tools.
$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing maas with its train and dev extras into $(VENV) (first run only)..."
	@$(PY) -m pip install $(PIP_FLAGS) -e '.[train,dev]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $@

serve: $(INSTALLED)
	$(VENV)/bin/maas serve

# One worker per CPU (pytest-xdist); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
test: $(INSTALLED)
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Speed and memory beside their targets, each measured in a fresh process, into bench-results/results.json
# and results.md. A missed target is reported, not failed. MAAS_BENCH_BATCH_SIZES_MB=10,50 for a quick run.
bench: $(INSTALLED)
	MAAS_BENCH=1 $(PY) -m pytest tests/benchmarks -p no:xdist -q $(PYTEST_ARGS)

# The full training configs, a search and int8 versions, published to the local stack; see demo-results/.
demo: $(INSTALLED)
	$(PY) -m maas.training.demo

lint: $(INSTALLED)
	$(VENV)/bin/ruff check shared functions tests infra
	$(VENV)/bin/ruff format --check shared functions tests infra
	$(VENV)/bin/mypy

fmt: $(INSTALLED)
	$(VENV)/bin/ruff check --fix shared functions tests infra
	$(VENV)/bin/ruff format shared functions tests infra

clean:
	rm -rf $(VENV) .aws-sam build *.egg-info shared/*.egg-info
