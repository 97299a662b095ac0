# Every target is a one-liner; the tools it calls are the real interface.
VENV ?= .venv
BIN ?= $(VENV)/bin

.PHONY: demo test lint yamllint ansible-lint ruff pytest unit docs bench ci plain-install

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

pytest:
	$(BIN)/pytest

unit:
	$(BIN)/pytest tests/unit tests/badinput

docs:  ## regenerate docs/variables.md from the schemas and role defaults
	$(BIN)/python -m ai4os_kit.docs > docs/variables.md

bench:
	$(BIN)/python benchmarks/plan_scale.py

plain-install:  ## the wheel in fresh venvs without extras / with [accounting] only, as operators install it
	bash .ci/plain-install.sh

ci:  ## everything from scratch, as CI does
	bash .ci/run
