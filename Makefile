# Every target is a one-liner; the tools it calls are the real interface.
VENV ?= .venv
BIN ?= $(VENV)/bin

.PHONY: demo test lint yamllint ansible-lint ruff pytest unit docs bench ci plain-install \
	test-unit test-cloud test-terraform test-host test-cluster test-platform test-accounting test-federation

$(BIN)/ai4os-kit:
	python3 -m venv $(VENV) && $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e '.[test]'

demo: $(BIN)/ai4os-kit  ## the main job on the embedded default: check and plan the sample platform
	$(BIN)/ai4os-kit check inventories/sample && $(BIN)/ai4os-kit plan inventories/sample

test: lint pytest  ## the whole test suite (what CI runs)

lint: yamllint ansible-lint ruff

yamllint:
	$(BIN)/yamllint -s .

ansible-lint:
	$(BIN)/ansible-lint --offline

ruff:  ## undefined names, unused imports and variables (pyflakes rules) in the Python code
	$(BIN)/ruff check --select F --output-format concise src tests benchmarks plugins scripts setup.py

# Three workers (much of the suite waits on containers and services): molecule's scenarios, the
# other Docker test-beds and the remaining groups side by side (groups: tests/conftest.py).
PYTEST_PARALLEL ?= -n 3 --dist loadgroup

pytest:
	$(BIN)/pytest $(PYTEST_PARALLEL)

# One target per layer (docs/testing.md says what each needs running): `make test-<layer>`.
unit test-unit:  ## model, plan, CLI, docs, bad inventories: no service needed
	$(BIN)/pytest tests/unit tests/badinput

test-cloud:  ## OpenStack: preflight, discovery, Check-in/Keycloak login (local OpenStack test-bed)
	$(BIN)/pytest tests/cloud

test-terraform:  ## Terraform modules against the local OpenStack test-bed
	$(BIN)/pytest tests/terraform

test-host:  ## molecule scenarios of the host roles on systemd containers (dockerd)
	$(BIN)/pytest tests/testbed

test-cluster:  ## consul, nomad, firewall, nvidia roles; day-2 playbooks (rendered configs, test-bed nodes, API test double)
	$(BIN)/pytest tests/cluster

test-platform:  ## platform jobs, Traefik, OIDC login, PAPI/dashboard as shipped, real service binaries
	$(BIN)/pytest tests/platform tests/oidc

test-accounting:  ## collector, store, APEL/cASO exporters
	$(BIN)/pytest tests/accounting

test-federation:  ## sites in independent clouds, sharing between platforms
	$(BIN)/pytest tests/federation

docs:  ## regenerate docs/variables.md from the schemas and role defaults
	$(BIN)/python -m ai4os_kit.docs > docs/variables.md

bench:
	$(BIN)/python benchmarks/plan_scale.py

plain-install:  ## the wheel in fresh venvs without extras / with [accounting] only, as operators install it
	bash .ci/plain-install.sh

ci:  ## everything from scratch, as CI does
	bash .ci/run
