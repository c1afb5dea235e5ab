#!/usr/bin/env bash
# Validate and build the SAM application, offline and without Docker.
#
# - SAM CLI lives in its own venv (.venv-sam): its boto3 pin clashes with moto's in .venv.
# - `sam build --build-in-source` runs the Makefile's build-<LogicalId> targets in the repo itself;
#   without the flag SAM first copies the whole repo (virtualenvs included) to a scratch dir, which
#   takes minutes here for the same result.
# - The makefile builder installs wheels for arm64 / CPython 3.12 with pip's --platform options, so
#   no python3.12 is needed on PATH (the default python builder would need one).
# Idempotent; run from anywhere: bash .ci/sam.sh
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS

SAM_VENV=.venv-sam
SAM_CLI_VERSION=${SAM_CLI_VERSION:-1.170.0}
if ! "$SAM_VENV/bin/sam" --version 2>/dev/null | grep -q "version $SAM_CLI_VERSION\$"; then
  echo "== installing aws-sam-cli $SAM_CLI_VERSION into $SAM_VENV"
  test -x "$SAM_VENV/bin/python" || "${PYTHON:-python3}" -m venv "$SAM_VENV"
  "$SAM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$SAM_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "aws-sam-cli==$SAM_CLI_VERSION"
fi

export PATH="$PWD/$SAM_VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
export LAMBDA_PIP="$PWD/$SAM_VENV/bin/python -m pip"

echo "== sam validate --lint"
sam validate --lint

echo "== sam build"
rm -rf .aws-sam/build
sam build --build-in-source

echo "== SAM transform + cfn-lint of the generated resources (catches dependency cycles through Events)"
# cfn-lint validates SAM templates against SAM's own schema without transforming them, so a cycle
# such as ApiFunction -> AgentLoop -> RequestHumanFunction -> HttpApi -> ApiFunction (the HttpApi's
# integration points at ApiFunction) only shows once the resources are generated. Offline: local
# URIs become dummy S3 URIs, the region is a dummy, and no managed policy is looked up by name.
AWS_DEFAULT_REGION=us-east-1 python - template.yaml .aws-sam/transformed.json <<'PY'
import json
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse


class NoManagedPolicies:
    def load(self):
        return {}


with open(sys.argv[1], encoding="utf-8") as source:
    template = yaml_parse(source.read())
template["Globals"]["Function"]["CodeUri"] = "s3://bucket/code.zip"
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::StateMachine":
        resource["Properties"]["DefinitionUri"] = "s3://bucket/definition.asl.json"
with open(sys.argv[2], "w", encoding="utf-8") as out:
    json.dump(transform(template, {}, NoManagedPolicies()), out, indent=1)
PY
cfn-lint .aws-sam/transformed.json

# Powertools, pydantic and the X-Ray SDK come from AWS's Powertools layer (template.yaml PowertoolsVersion), unless
# the build bundles them (LAMBDA_POWERTOOLS=bundle, for a stack deployed with PowertoolsVersion=bundled).
# Each package holds only what its handler imports (Makefile LAMBDA_HANDLER_*, infra/lambda_package.py): httpx where a
# function posts over HTTP, never anyio (httpx's async API), HTML templates only where pages are rendered.
layer_has="aws_lambda_powertools pydantic pydantic_core aws_xray_sdk typing_extensions.py"
if [ "${LAMBDA_POWERTOOLS:-layer}" = bundle ]; then bundled=$layer_has; layered=; else bundled=; layered=$layer_has; fi
for fn in StepFunction RequestHumanFunction RecordEndFunction ApiFunction ApprovalsFunction; do
  dir=.aws-sam/build/$fn
  case $fn in ApiFunction|ApprovalsFunction) posts=; pages="jinja2 functions/templates";; *) posts=httpx; pages=;; esac
  for required in core functions prompts $posts $pages $bundled; do
    test -e "$dir/$required" || { echo "sam.sh: $dir lacks $required" >&2; exit 1; }
  done
  for forbidden in tests benchmarks infra .venv .venv-sam .git boto3 botocore anyio $layered \
    $([ -n "$pages" ] || echo functions/templates jinja2) $([ -n "$posts" ] || echo httpx); do
    test ! -e "$dir/$forbidden" || { echo "sam.sh: $dir must not contain $forbidden" >&2; exit 1; }
  done
done
# fastjsonschema (the step's MCP tool schemas) is the layer's (its validation extra), shipped only when bundled.
if [ "${LAMBDA_POWERTOOLS:-layer}" = bundle ] || [ ! -e .aws-sam/build/StepFunction/fastjsonschema ]; then :; else
  echo "sam.sh: .aws-sam/build/StepFunction must not contain fastjsonschema (the layer has it)" >&2; exit 1
fi

echo "== artifact sizes (unzipped, with .pyc; LAMBDA_POWERTOOLS=${LAMBDA_POWERTOOLS:-layer})"
du -s --apparent-size --block-size=1K .aws-sam/build/*/ | sort -rn
echo "sam.sh: ok in $((SECONDS - start)) s"
