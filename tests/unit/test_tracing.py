"""X-Ray traces of a step, as AWS would record them, and no tracing cost where nothing records them.

In AWS the functions run with ``Tracing: Active`` and import aws-xray-sdk from the Powertools layer. The step's work
must then appear as subsegments of Lambda's segment: the step itself (annotated with its thread, so a thread's traces
are searchable), its model call, its tool run and every DynamoDB call. Each check runs the real step handler in a
fresh interpreter, through the production seam (``functions._wiring.runtime`` builds the runtime from the
environment, as at a cold start), because the X-Ray SDK patches botocore and httpx for the whole process. The SDK's
emitter is replaced by one that keeps what it would have sent to the daemon, so no daemon is needed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TRACE_ROOT = "1-5759e988-bd862e3fe1be46a994272793"
LAMBDA_SEGMENT = "0a1b2c3d4e5f6789"

_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "STEPFOLD_TABLE": "traced-threads",
    "STEPFOLD_BUCKET": "traced-payloads",
    "STEPFOLD_MODEL": "scripted:calculator",
    "POWERTOOLS_SERVICE_NAME": "stepfold",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}

_LAMBDA = {
    # What Lambda sets for a function with active tracing (the trace header changes per invocation).
    "LAMBDA_TASK_ROOT": str(ROOT),
    "AWS_LAMBDA_FUNCTION_NAME": "StepFunction",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "_X_AMZN_TRACE_ID": "Root=1-5759e988-00000000000000000000000a;Parent=53995c3f42cd8ad8;Sampled=1",
    # The step's invocation: a new trace header, so the SDK starts a new Lambda segment (as on every invocation).
    "PROBE_STEP_TRACE_ID": f"Root={TRACE_ROOT};Parent={LAMBDA_SEGMENT};Sampled=1",
}

_PROBE = """
import json, os, sys

import boto3
from moto import mock_aws

with mock_aws():
    from core.adapters.store.dynamodb import table_key_schema
    from core.kernel.thread import start_thread
    from functions import step
    from functions._wiring import runtime
    from infra.local.stack import LambdaContext

    boto3.client("dynamodb").create_table(TableName=os.environ["STEPFOLD_TABLE"], **table_key_schema())
    boto3.client("s3").create_bucket(Bucket=os.environ["STEPFOLD_BUCKET"])
    sent = []
    if "aws_xray_sdk" in sys.modules:  # loaded by the first invocation's runtime only when tracing is active
        raise SystemExit("aws_xray_sdk was imported before the first invocation")
    rt = runtime()  # the first invocation's setup, as step.handler would do it
    if rt.tracer is not None:
        from aws_xray_sdk.core import xray_recorder

        class Keep:  # the SDK's emitter, without a daemon
            def send_entity(self, entity):
                sent.append(json.loads(entity.serialize()))

            def set_daemon_address(self, address):
                pass

        xray_recorder.configure(emitter=Keep(), sampling=False)
    thread = rt.threads.create(start_thread("th_traced", "calculator", "add 2 and 3", now=rt.now()))
    sent.clear()
    if "PROBE_STEP_TRACE_ID" in os.environ:
        os.environ["_X_AMZN_TRACE_ID"] = os.environ["PROBE_STEP_TRACE_ID"]
    result = step.handler({"thread_id": thread.id, "seq": 1}, LambdaContext(function_name="StepFunction"))
    print(json.dumps({
        "route": result["route"],
        "tracer": rt.tracer is not None,
        "xray_loaded": "aws_xray_sdk" in sys.modules,
        "sent": sent,
    }))
"""


def _run_step(extra_env: dict[str, str]) -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin", **_ENV, **extra_env}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return out


def _subsegments(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every subsegment sent, nested ones included (the SDK streams a closed subsegment with its children)."""
    found: list[dict[str, Any]] = []
    todo = list(entities)
    while todo:
        entity = todo.pop()
        found.append(entity)
        todo.extend(entity.get("subsegments", []))
    return found


def by_parent_name(subsegments: list[dict[str, Any]], parent: str) -> list[str]:
    """The names of the subsegments under ``parent`` (streamed with a parent id, or nested in it)."""
    names = [s["name"] for s in subsegments if s.get("parent_id") == parent]
    names += [c["name"] for s in subsegments if s["id"] == parent for c in s.get("subsegments", [])]
    return names


def test_a_traced_step_sends_its_model_call_tool_run_and_dynamodb_calls_as_subsegments() -> None:
    out = _run_step(_LAMBDA)
    assert (out["route"], out["tracer"]) == ("continue", True)
    subsegments = _subsegments(out["sent"])
    names = [s["name"] for s in subsegments]
    assert "## step" in names
    assert "## llm scripted:calculator" in names
    assert "## tool add" in names
    dynamodb = [s for s in subsegments if s["name"] == "dynamodb"]
    assert {s["aws"]["operation"] for s in dynamodb} >= {"Query", "PutItem"}, dynamodb
    assert all(s["namespace"] == "aws" for s in dynamodb)
    assert {s["trace_id"] for s in out["sent"]} == {TRACE_ROOT}, "one trace: the invocation's"
    assert by_parent_name(subsegments, LAMBDA_SEGMENT) == ["## step"], "the step hangs off Lambda's segment"
    by_name = {s["name"]: s for s in subsegments}
    assert by_name["## step"]["annotations"] == {"thread_id": "th_traced", "seq": 1}
    assert by_name["## llm scripted:calculator"]["annotations"]["thread_id"] == "th_traced"
    assert by_name["## tool add"]["annotations"] == {"thread_id": "th_traced", "tool": "add"}
    step_id = by_name["## step"]["id"]
    assert set(by_parent_name(subsegments, step_id)) == {"## llm scripted:calculator", "## tool add", "dynamodb"}


def test_trace_disabled_in_lambda_loads_no_tracer() -> None:
    """POWERTOOLS_TRACE_DISABLED, Powertools' own switch, is honoured before anything is imported."""
    out = _run_step({**_LAMBDA, "POWERTOOLS_TRACE_DISABLED": "true"})
    assert (out["route"], out["tracer"], out["xray_loaded"], out["sent"]) == ("continue", False, False, [])


def test_outside_lambda_a_step_loads_no_tracer() -> None:
    """Locally and in the tests (no AWS_XRAY_DAEMON_ADDRESS) the first invocation imports no X-Ray SDK."""
    out = _run_step({})
    assert (out["route"], out["tracer"], out["xray_loaded"], out["sent"]) == ("continue", False, False, [])
