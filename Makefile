# stepfold: every target sets itself up, so `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test check lint types layers cfn asl demo bench clean snapshots docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,e2e]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# (Re)write the snapshots the unit tests compare against (tests/unit/snapshots/, syrupy): a new agent's prompt, or an
# intended change; and delete the ones no test uses. Review the diff before committing; `make test` fails on a
# missing, changed or unused one. testpaths rather than a path argument: with a path, syrupy deletes nothing.
snapshots: setup
	$(BIN)/python -m pytest -q -o testpaths=tests/unit -k snapshot --snapshot-update

check: lint types layers cfn asl

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: setup
	$(BIN)/mypy core agents functions infra tests benchmarks

layers: setup
	$(BIN)/lint-imports
	$(BIN)/python -m tests.layering

cfn: setup
	@if [ -f template.yaml ]; then $(BIN)/cfn-lint template.yaml; fi

asl: setup
	@if ls infra/statemachine/*.asl.json >/dev/null 2>&1; then $(BIN)/python -m infra.asl_check infra/statemachine/*.asl.json; fi

demo: setup
	$(BIN)/python -m infra.local.demo

# The README's route reference, from the API's OpenAPI document (tests/unit/test_api_docs.py fails when stale).
docs: setup
	$(BIN)/python -m infra.api_docs

bench: setup bench-setup
	$(BENCH_BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .aws-sam

# --- SAM build targets (infra) ---
# `sam build` calls build-<LogicalId> for the functions of template.yaml (Metadata: BuildMethod: makefile).
# All three share one CodeUri (the repo root), so SAM builds once and copies the result. The package holds
# core/, agents/, functions/, prompts/ and requirements-lambda.txt installed for arm64 / CPython 3.12 - no tests,
# venvs or caches. LAMBDA_PIP must be a pip that can reach PyPI; the interpreter does not need to be 3.12.
LAMBDA_PIP ?= python3 -m pip
LAMBDA_SOURCES := core agents functions prompts

.PHONY: build-StepFunction build-RequestHumanFunction build-ApiFunction build-ApprovalsFunction build-AuthorizerFunction build-TriggersFunction build-RecordEndFunction lambda-package

build-StepFunction build-RequestHumanFunction build-ApiFunction build-ApprovalsFunction build-AuthorizerFunction build-TriggersFunction build-RecordEndFunction: lambda-package

lambda-package:
	test -n "$(ARTIFACTS_DIR)"
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -R $(LAMBDA_SOURCES) "$(ARTIFACTS_DIR)/"
	$(LAMBDA_PIP) install --quiet --disable-pip-version-check --no-compile \
		--platform manylinux2014_aarch64 --only-binary=:all: --implementation cp --python-version 3.12 \
		--target "$(ARTIFACTS_DIR)" -r requirements-lambda.txt
	find "$(ARTIFACTS_DIR)" -depth \( -name __pycache__ -o -name '*.pyc' \) -exec rm -rf {} +
	rm -rf "$(ARTIFACTS_DIR)/bin"

# --- serve (cli) ---
# The local stack and its HTTP API on http://127.0.0.1:8765; prints the URL, the API key and each approval link.
.PHONY: serve
serve: setup
	$(BIN)/stepfold serve

# --- evals ---
# Every agent's eval cases (evals/<agent>/*.json) with its pinned prompt and the scripted model: one model call
# per case, nothing written anywhere; and replays evals/<agent>/cassettes/ through the real adapters where they
# exist (stale ones are flagged; `--strict` fails on them). Exits non-zero if any case fails.
# `stepfold eval AGENT --compare v1 v2` shows what a prompt change would move.
.PHONY: evals
evals: setup
	$(BIN)/python -m infra.cli_evals eval-all

# --- bench (benchmarks) ---
# `make bench` runs benchmarks/run_all.py: every benchmark, one table, written to benchmarks/README.md. The peers
# (benchmarks/requirements-bench.txt) are installed into .venv-bench only, next to stepfold itself, never into
# pyproject's dependencies or .venv. Each contender's cold start and footprint use its own `pip install --target`
# directory under .venv-bench/targets/ (benchmarks/_targets.py); the artifact is built by .ci/sam.sh (.venv-sam).
BENCH_VENV := .venv-bench
BENCH_BIN := $(BENCH_VENV)/bin
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: bench-setup

bench-setup: $(BENCH_STAMP)

$(BENCH_STAMP): pyproject.toml requirements-lambda.txt benchmarks/requirements-bench.txt
	test -x $(BENCH_BIN)/python || $(PY) -m venv $(BENCH_VENV)
	$(BENCH_BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BENCH_BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]' \
		-r benchmarks/requirements-bench.txt -c requirements-lambda.txt
	touch $(BENCH_STAMP)
