# stepfold: every target sets itself up, so `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test check lint types layers cfn asl demo bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

check: lint types layers cfn asl

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy core functions infra tests benchmarks

layers: setup
	$(BIN)/lint-imports
	$(BIN)/python -m tests.layering

cfn: setup
	@if [ -f template.yaml ]; then $(BIN)/cfn-lint template.yaml; fi

asl: setup
	@if ls infra/statemachine/*.asl.json >/dev/null 2>&1; then $(BIN)/python -m infra.asl_check infra/statemachine/*.asl.json; fi

demo: setup
	$(BIN)/python -m infra.local.demo

bench: setup
	@for f in benchmarks/*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .aws-sam
