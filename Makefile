# Every target is a one-liner; the tools it calls are the real interface.
VENV ?= .venv
BIN ?= $(VENV)/bin

.PHONY: demo test lint yamllint ansible-lint pytest unit docs bench ci

$(BIN)/ai4os-kit:
	python3 -m venv $(VENV) && $(BIN)/pip install -q --upgrade pip && $(BIN)/pip install -q -e '.[test]'

demo: $(BIN)/ai4os-kit  ## the main job on the embedded default: check and plan the sample platform
	$(BIN)/ai4os-kit check inventories/sample && $(BIN)/ai4os-kit plan inventories/sample

test: lint pytest  ## the whole test suite (what CI runs)

lint: yamllint ansible-lint

yamllint:
	$(BIN)/yamllint -s .

ansible-lint:
	$(BIN)/ansible-lint --offline

pytest:
	$(BIN)/pytest

unit:
	$(BIN)/pytest tests/unit tests/badinput

docs:  ## regenerate docs/variables.md from the schemas and role defaults
	$(BIN)/python -m ai4os_kit.docs > docs/variables.md

bench:
	$(BIN)/python benchmarks/plan_scale.py

ci:  ## everything from scratch, as CI does
	bash .ci/run
