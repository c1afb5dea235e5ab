"""Cold start is a feature: importing the kernel must not pull in AWS SDKs, HTTP clients or Powertools.

Each check runs in a fresh interpreter, so modules this test process already imported do not hide a leak.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("botocore", "boto3", "httpx", "aws_lambda_powertools")

_PROBE = """
import json, sys
import {module}
heavy = {heavy!r}
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _heavy_after_import(module: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, heavy=HEAVY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded


@pytest.mark.parametrize(
    "module", ["core.kernel.agent", "agents", "core.adapters.store", "core.adapters.llm", "core.adapters.llm.scripted"]
)
def test_importing_the_kernel_loads_no_heavy_dependency(module: str) -> None:
    assert _heavy_after_import(module) == []


def test_the_probe_would_notice_a_heavy_import() -> None:
    assert "httpx" in _heavy_after_import("core.adapters.llm.openai")


_MODULES = """
import json, sys
import {module}
print(json.dumps(sorted(sys.modules)))
"""

STEP_NEVER_IMPORTS = (
    "boto3",  # imported by the first invocation (functions._wiring.build_runtime), never at init
    "httpx",  # a model provider's, at the first call of an HTTP model
    "jinja2",
    "functions._html",  # the HTML pages: the API and the approval pages
    "functions.routes",
    "functions.timeline",
    "functions.api",
    "functions.approvals",
    "functions.triggers",
    "core.adapters.store.dynamodb",  # built at the first invocation
    "core.adapters.store.approvals_dynamodb",
    "core.adapters.llm.openai",
    "core.adapters.llm.anthropic",
    "core.adapters.llm.bedrock",
    "core.services.replay",
    "aws_xray_sdk",  # only when tracing is active (functions._observe.tracer_or_none)
    "core.adapters.mcp",  # the MCP client: at the first step of an agent that declares MCP servers
    "fastjsonschema",  # MCP tools' input schemas, likewise
    "core.services.triggers",  # webhooks, schedules, rules: agents declare triggers with core.kernel.trigger_types
    "core.services.control",
    "core.services.approvals",  # the approval store is made at its first use; the step never uses it
    "core.services.replies",  # at the step that ends a triggered thread (Runtime.send_reply)
    "core.adapters.replies",
    "core.adapters.notify",  # the notification channels: at the first notification (request_human, record_end)
)


def _modules_after_import(module: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", _MODULES.format(module=module)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(done.stdout))


def test_the_step_function_imports_only_what_a_step_needs() -> None:
    loaded = _modules_after_import("functions.step")
    leaked = sorted(m for m in loaded if any(m == n or m.startswith(n + ".") for n in STEP_NEVER_IMPORTS))
    assert leaked == []
    assert {"functions.step", "functions._wiring", "core.kernel.runner"} <= loaded  # the probe saw the step


def test_the_first_invocation_makes_only_the_dynamodb_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """S3 (large events) and Step Functions clients are made at their first use, not by the step's cold start."""
    from functions._wiring import LazyClient, build_runtime  # noqa: PLC0415

    for key, value in {
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_XRAY_DAEMON_ADDRESS", raising=False)
    rt = build_runtime()
    lazy = {name: client for name, client in rt.clients.items() if isinstance(client, LazyClient)}
    assert set(lazy) == {"s3", "stepfunctions"}
    assert not isinstance(rt.clients["dynamodb"], LazyClient)
    assert [name for name, client in lazy.items() if client.made] == []
    assert rt.sfn.meta.service_model.service_name == "stepfunctions"  # the first use makes the real client
    assert lazy["stepfunctions"].made
    assert not lazy["s3"].made


_FIRST_INVOCATION = """
import json, os, sys
os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
os.environ.pop("AWS_XRAY_DAEMON_ADDRESS", None)
from functions._wiring import runtime
rt = runtime()
seen = {"modules": sorted(sys.modules), "made_by_runtime": rt.approvals.made}
rt.approvals.get  # its first use makes the store
seen["made"] = type(rt.approvals._client).__name__
print(json.dumps(seen))
"""
AT_FIRST_INVOCATION = ("boto3", "core.adapters.store.dynamodb")
"""What ``runtime()`` imports of :data:`STEP_NEVER_IMPORTS` (never at import, always at the first invocation)."""


def test_the_first_invocation_imports_only_what_a_step_needs() -> None:
    """``runtime()`` (the step's first invocation) makes the approval store at its first use, which a step never
    reaches: the approvals service and its models stay out of the step's cold start, like everything else the
    import check names."""
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_INVOCATION], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    seen = json.loads(done.stdout)
    never = [n for n in STEP_NEVER_IMPORTS if n not in AT_FIRST_INVOCATION]
    leaked = sorted(m for m in seen["modules"] if any(m == n or m.startswith(n + ".") for n in never))
    assert leaked == []
    assert "boto3" in seen["modules"]  # the probe saw the first invocation
    assert seen["made_by_runtime"] is False
    assert seen["made"] == "DynamoApprovalStore"
