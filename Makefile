# stepfold: every target sets itself up, so `make demo` and `make test` work on a fresh machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test test-express check lint types layers cfn asl demo bench clean snapshots docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,e2e,local]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# The functional tier again, with the agent loop in the express loop mode (template LoopMode=express; ARCHITECTURE.md
# "Loop modes"): `make test` runs every tier in the default, standard. CI runs both.
test-express: setup
	STEPFOLD_LOOP_MODE=express $(BIN)/python -m pytest -q tests/functional

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
	@# LoopEntry names the agent loop's first state: Step (LoopMode standard) or Burst (express); check both.
	@if ls infra/statemachine/*.asl.json >/dev/null 2>&1; then $(BIN)/python -m infra.asl_check --set LoopEntry=Step infra/statemachine/*.asl.json \
		&& $(BIN)/python -m infra.asl_check --set LoopEntry=Burst infra/statemachine/agent_loop.asl.json; fi

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
# `sam build` calls build-<LogicalId> for the functions of template.yaml (Metadata: BuildMethod: makefile), each with
# its own ARTIFACTS_DIR. Each function's package holds, of core/, agents/ and functions/, only the modules its handler
# (LAMBDA_HANDLER_<LogicalId>, the module of template.yaml's Handler) imports, and prompts/ and functions/templates/
# only if one of them reads them: infra/lambda_package.py walks the import graph from the handler (lazy imports
# included; dynamic ones declared there), deletes the rest, and fails the build if an import resolves to nothing in
# the package, the layer or the runtime. Of requirements-lambda.txt it holds only the packages the function imports
# (LAMBDA_NEEDS_<LogicalId>) and their requirements, installed for arm64 / CPython 3.12, minus LAMBDA_NOT_IMPORTED.
# No tests, venvs or caches. LAMBDA_PIP must be a pip that can reach PyPI; its interpreter need not be 3.12.
# tests/infra/test_packages.py builds every package for this machine and imports and runs each handler from it.
#
# The package ships bytecode: Lambda's file system is read-only, so without .pyc every cold start compiles every
# module it imports. .pyc is specific to a Python minor version, so it is compiled by LAMBDA_PYTHON, which must be
# CPython $(LAMBDA_PY_VERSION): LAMBDA_PYC=auto (the default) warns and ships sources only without one, =1 stops the
# build instead, =0 always ships sources only.
# unchecked-hash: the runtime never stats or hashes the source to validate it (timestamps would not survive a zip;
# checked hashes would read every source). co_filename is rewritten to /var/task, where Lambda unpacks the code.
#
# LAMBDA_PLATFORM / LAMBDA_PY_VERSION let benchmarks/cold_start.py build the same package for this machine.
#
# Powertools, pydantic and the X-Ray SDK come from AWS's Powertools layer (template.yaml PowertoolsVersion; it carries
# Powertools with all its extras), so no package ships them (LAMBDA_POWERTOOLS=layer, the default), nor what else of
# the layer a function needs (LAMBDA_LAYER_ALSO_HAS: fastjsonschema, the validation extra; typing_extensions, which our
# own dependencies pull in too: /var/task comes first on sys.path, so a copy here would only shadow the layer's).
# LAMBDA_POWERTOOLS=bundle puts them in every package instead, from requirements-lambda.txt, for a stack deployed with
# PowertoolsVersion=bundled (no layer in that partition or region). LAMBDA_LAYER_MODULES are the top-level modules of
# the layer the functions may import (infra/lambda_package.py refuses an import of any other that nothing ships).
LAMBDA_PIP ?= python3 -m pip
LAMBDA_PY_VERSION ?= 3.12
LAMBDA_PLATFORM ?= manylinux2014_aarch64
LAMBDA_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/$(LAMBDA_PY_VERSION).*/bin/python$(LAMBDA_PY_VERSION)) \
	$(shell command -v python$(LAMBDA_PY_VERSION) 2>/dev/null) python$(LAMBDA_PY_VERSION))
LAMBDA_PYC ?= auto
LAMBDA_PYC_OK := $(shell "$(LAMBDA_PYTHON)" -c 'import sys; v = "%d.%d" % sys.version_info[:2]; \
	sys.exit(v != "$(LAMBDA_PY_VERSION)" or sys.implementation.name != "cpython")' 2>/dev/null && echo 1)
LAMBDA_SOURCES := core agents functions prompts
# Runs infra/lambda_package.py (stdlib only): the target's Python where there is one, so it knows the target's stdlib.
LAMBDA_TOOL_PYTHON ?= $(if $(LAMBDA_PYC_OK),$(LAMBDA_PYTHON),python3)
LAMBDA_POWERTOOLS ?= layer
LAMBDA_LAYER_PROVIDES := aws-lambda-powertools pydantic aws-xray-sdk
LAMBDA_LAYER_ALSO_HAS := typing_extensions fastjsonschema
LAMBDA_LAYER_MODULES := aws_lambda_powertools pydantic pydantic_core aws_xray_sdk typing_extensions fastjsonschema
LAMBDA_BUNDLED := $(if $(filter bundle,$(LAMBDA_POWERTOOLS)),$(LAMBDA_LAYER_PROVIDES))
LAMBDA_NEEDS_COMMON :=
# What the Lambda runtime has (boto3 and its dependencies; aws-xray-sdk pulls botocore in), never shipped.
LAMBDA_RUNTIME_HAS := boto3 botocore s3transfer jmespath dateutil python_dateutil six urllib3
# Requirements of what the functions import that no function imports. anyio: httpx requires it for its async API
# (AsyncClient, the ASGI transport); httpcore imports it only inside try/except ImportError, and the functions use the
# sync httpx.Client only (tests/infra/test_packages.py runs their HTTP paths in the built packages without it).
LAMBDA_NOT_IMPORTED := anyio
LAMBDA_LAZY_OK := httpx
# httpx: model providers, replies and MCP servers (step), notifications (request_human, record_end); fastjsonschema:
# MCP tools' input schemas (step; the layer has it); jinja2: the HTML pages. Each is imported inside the functions that
# use it (functions/_wiring.py builds the notifier, the replier, the models and the MCP clients on first use), so a
# function that never calls them ships without them: LAMBDA_LAZY_OK, what infra/lambda_package.py lets a package lack
# when only a call, never the handler's import, would import it. The API posts nothing (no notification, reply or
# model call): tests/infra/test_packages.py runs the API's functional tests with httpx unimportable.
LAMBDA_NEEDS_StepFunction := httpx fastjsonschema
LAMBDA_NEEDS_RequestHumanFunction := httpx
LAMBDA_NEEDS_RecordEndFunction := httpx
LAMBDA_NEEDS_ApiFunction := jinja2
LAMBDA_NEEDS_ApprovalsFunction := jinja2
LAMBDA_NEEDS_AuthorizerFunction :=
LAMBDA_NEEDS_TriggersFunction :=
LAMBDA_NEEDS_LaunchFunction :=
LAMBDA_HANDLER_StepFunction := functions.step
LAMBDA_HANDLER_RequestHumanFunction := functions.request_human
LAMBDA_HANDLER_RecordEndFunction := functions.record_end
LAMBDA_HANDLER_ApiFunction := functions.api
LAMBDA_HANDLER_ApprovalsFunction := functions.approvals
LAMBDA_HANDLER_AuthorizerFunction := functions.authorizer
LAMBDA_HANDLER_TriggersFunction := functions.triggers
LAMBDA_HANDLER_LaunchFunction := functions.launch
LAMBDA_FUNCTIONS := StepFunction RequestHumanFunction ApiFunction ApprovalsFunction AuthorizerFunction \
	TriggersFunction RecordEndFunction LaunchFunction

.PHONY: build-StepFunction build-RequestHumanFunction build-ApiFunction build-ApprovalsFunction build-AuthorizerFunction build-TriggersFunction build-RecordEndFunction build-LaunchFunction lambda-package lambda-packages

build-StepFunction build-RequestHumanFunction build-ApiFunction build-ApprovalsFunction build-AuthorizerFunction build-TriggersFunction build-RecordEndFunction build-LaunchFunction:
	$(MAKE) --no-print-directory lambda-package LAMBDA_FUNCTION=$(@:build-%=%)

# Every function's package under LAMBDA_OUT/<LogicalId> (what `sam build` would make, without SAM CLI).
LAMBDA_OUT ?= .aws-sam/build
lambda-packages:
	$(foreach f,$(LAMBDA_FUNCTIONS),$(MAKE) --no-print-directory lambda-package LAMBDA_FUNCTION=$(f) \
		ARTIFACTS_DIR="$(abspath $(LAMBDA_OUT))/$(f)" &&) true

lambda-package:
	test -n "$(ARTIFACTS_DIR)"
	@case " $(LAMBDA_FUNCTIONS) " in *" $(LAMBDA_FUNCTION) "*) ;; \
		*) echo "LAMBDA_FUNCTION must be one of: $(LAMBDA_FUNCTIONS) (got '$(LAMBDA_FUNCTION)')" >&2; exit 2;; esac
	@case "$(LAMBDA_POWERTOOLS)" in layer|bundle) ;; \
		*) echo "LAMBDA_POWERTOOLS must be layer or bundle (got '$(LAMBDA_POWERTOOLS)')" >&2; exit 2;; esac
	@if [ "$(LAMBDA_PYC)" != 0 ] && [ "$(LAMBDA_PYC_OK)" != 1 ]; then \
		echo "LAMBDA_PYTHON='$(LAMBDA_PYTHON)' is not CPython $(LAMBDA_PY_VERSION): the package's .pyc must be" \
			"compiled by the runtime's version. Set LAMBDA_PYTHON=/path/to/python$(LAMBDA_PY_VERSION)." >&2; \
		if [ "$(LAMBDA_PYC)" = 1 ]; then exit 2; fi; \
		echo "WARNING: shipping sources only (LAMBDA_PYC=auto): every cold start compiles what it imports." >&2; fi
	rm -rf "$(ARTIFACTS_DIR)"
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -R $(LAMBDA_SOURCES) "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)" -depth \( -name __pycache__ -o -name '*.pyc' -o -name py.typed \) -exec rm -rf {} +
	@needs="$(strip $(LAMBDA_BUNDLED) $(filter-out $(if $(LAMBDA_BUNDLED),,$(LAMBDA_LAYER_ALSO_HAS)), \
		$(LAMBDA_NEEDS_COMMON) $(LAMBDA_NEEDS_$(LAMBDA_FUNCTION))))"; \
	if [ -n "$$needs" ]; then \
		reqs=$$(grep -E "^($$(echo $$needs | tr ' ' '|'))==" requirements-lambda.txt); \
		test "$$(echo "$$reqs" | wc -l)" -eq "$$(echo $$needs | wc -w)" || \
			{ echo "requirements-lambda.txt must pin each of: $$needs" >&2; exit 2; }; \
		echo "$(LAMBDA_FUNCTION): pip install $$(echo $$reqs)"; \
		$(LAMBDA_PIP) install --quiet --disable-pip-version-check --no-compile \
			--platform $(LAMBDA_PLATFORM) --only-binary=:all: --implementation cp --python-version $(LAMBDA_PY_VERSION) \
			--target "$(ARTIFACTS_DIR)" $$reqs || exit 1; \
	fi
	rm -rf "$(ARTIFACTS_DIR)/bin"
	cd "$(ARTIFACTS_DIR)" && for m in $(LAMBDA_RUNTIME_HAS) $(LAMBDA_NOT_IMPORTED) \
		$(if $(LAMBDA_BUNDLED),,$(LAMBDA_LAYER_ALSO_HAS)); do rm -rf "$$m" "$$m.py" "$$m"-*.dist-info; done
	find "$(ARTIFACTS_DIR)" -depth \( -name __pycache__ -o -name '*.pyc' \) -exec rm -rf {} +
	$(LAMBDA_TOOL_PYTHON) infra/lambda_package.py "$(ARTIFACTS_DIR)" $(LAMBDA_HANDLER_$(LAMBDA_FUNCTION)) \
		--python-version $(LAMBDA_PY_VERSION) --provided $(LAMBDA_LAYER_MODULES) $(LAMBDA_RUNTIME_HAS) \
		--lazy-ok $(LAMBDA_LAZY_OK)
	@if [ "$(LAMBDA_PYC)" != 0 ] && [ "$(LAMBDA_PYC_OK)" = 1 ]; then \
		"$(LAMBDA_PYTHON)" -m compileall -q -j0 --invalidation-mode unchecked-hash \
			-s "$(ARTIFACTS_DIR)" -p /var/task "$(ARTIFACTS_DIR)" >/dev/null || { echo "compileall failed" >&2; exit 1; }; fi

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
