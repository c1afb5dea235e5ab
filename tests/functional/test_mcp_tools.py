"""MCP tools on the local stack (ARCHITECTURE.md "MCP tools"): the oncall agent's tools from a real MCP server (the
official SDK's streamable HTTP app, infra/local/mcp_server.py) through our client, the real handlers and the real
ASL on moto. A read-only tool runs unasked, a destructive one waits for a person; a server that is down is a retried
step; a tool that disappeared is an error the model sees; a thread keeps the list it pinned when the server changes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from mcp.types import ToolAnnotations

from core.kernel.events import Error, HumanRequest, ToolCall, ToolResult, ToolsListed
from core.kernel.thread import Thread, fold
from core.services.approvals import Decision
from infra.cli import StepView
from infra.local.mcp_server import URL_SETTING, LocalMcpServer, Ops, PagedMCPServer, free_url, ops_server
from infra.local.stack import LocalStack

ALERT = "alert: checkout error rate above 25%"


@pytest.fixture
def ops() -> Iterator[tuple[LocalMcpServer, PagedMCPServer, Ops]]:
    server, state = ops_server()
    with LocalMcpServer(server) as running:
        yield running, server, state


def _use(stack: LocalStack, url: str, **env: str) -> None:
    stack.configure({URL_SETTING: url, "STEPFOLD_MCP_SERVERS": '{"ops": {"headers": {"X-Ops-Token": "t0k3n"}}}', **env})


def _decide(stack: LocalStack, thread: Thread, decision: str = "approve") -> None:
    approval, _ = stack.notifier.sent[-1]
    assert approval.thread_id == thread.id
    stack.decide(approval.approval_id, Decision(decision=decision, by="alice@example.com", channel="link"))


def _tools(thread: Thread) -> list[str]:
    return [e.tool for e in thread.events if isinstance(e, ToolCall)]


def test_a_destructive_mcp_tool_waits_for_approval_and_a_read_only_one_runs_without(
    stack: LocalStack, ops: tuple[LocalMcpServer, PagedMCPServer, Ops]
) -> None:
    running, _, state = ops
    _use(stack, running.url)
    thread = stack.launch("oncall", ALERT)

    waiting = stack.wait(thread.id)

    assert fold(waiting).status == "awaiting_human"
    listed = [e for e in waiting.events if isinstance(e, ToolsListed)]
    assert len(listed) == 1
    assert (listed[0].pinned, listed[0].seq) == (True, 1), "pinned at the thread's first step"
    assert _tools(waiting) == ["recent_deploys", "service_status", "restart_service"]
    status = next(e for e in waiting.events if isinstance(e, ToolResult) and e.tool == "service_status")
    assert status.result == {"service": "checkout", "status": "degraded", "error_rate": 0.31}
    request = fold(waiting).open_request
    assert isinstance(request, HumanRequest)
    assert request.kind == "approval"
    assert request.question.startswith("Approve restart_service with service='checkout'")
    assert "ops marks restart_service destructive (destructiveHint)" in request.context
    assert state.calls == ["service_status"], "the read-only tool ran; the destructive one waits"
    sent = running.outage.headers
    assert sent
    assert all(h.get("x-ops-token") == "t0k3n" for h in sent), "the secret's headers, on every request"
    assert all(h.get("mcp-protocol-version") for h in sent[1:]), "after initialize"

    _decide(stack, waiting)
    final = stack.wait(thread.id)

    assert fold(final).status == "done"
    assert state.restarts == ["checkout"]
    assert fold(final).answer == "checkout was degraded; restarted it after approval."
    assert [e for e in final.events if isinstance(e, Error)] == []


def test_a_rejected_destructive_mcp_tool_never_reaches_the_server(
    stack: LocalStack, ops: tuple[LocalMcpServer, PagedMCPServer, Ops]
) -> None:
    running, _, state = ops
    _use(stack, running.url)
    thread = stack.launch("oncall", ALERT)
    _decide(stack, stack.wait(thread.id), "reject")

    final = stack.wait(thread.id)

    assert fold(final).status == "done"
    assert state.restarts == []
    assert state.calls == ["service_status"]


def test_a_server_that_is_down_is_a_retried_step(
    stack: LocalStack, ops: tuple[LocalMcpServer, PagedMCPServer, Ops]
) -> None:
    running, _, state = ops
    _use(stack, running.url)
    running.fail_next(2)  # the first step's tools/list (initialize, then its retry's) answers 503

    thread = stack.launch("oncall", ALERT)
    waiting = stack.wait(thread.id)

    assert fold(waiting).status == "awaiting_human"
    failed = [i for i in stack.invocations if i.function == "StepFunction" and i.error]
    assert failed, "the step failed while the server was down"
    assert all("DependencyUnavailable" in (i.error or "") for i in failed)
    assert running.outage.refused == 2
    assert stack.retry_waits, "Step Functions retried it"
    assert [e for e in waiting.events if isinstance(e, Error)] == [], "nothing the model sees"
    assert state.calls == ["service_status"]


def test_a_server_that_stays_down_fails_the_thread_with_a_retryable_name(stack: LocalStack) -> None:
    _use(stack, free_url())
    thread = stack.launch("oncall", ALERT)

    final = stack.wait(thread.id, until=("failed",), timeout=60)

    state = fold(final)
    assert state.failure_error == "DependencyUnavailable"
    assert "McpUnavailableError" in (state.failure or "")
    assert len([i for i in stack.invocations if i.function == "StepFunction" and i.error]) > 1


def test_a_tool_removed_between_list_and_call_is_an_error_the_model_sees(
    stack: LocalStack, ops: tuple[LocalMcpServer, PagedMCPServer, Ops]
) -> None:
    running, server, state = ops
    _use(stack, running.url)
    thread = stack.launch("oncall", ALERT)
    waiting = stack.wait(thread.id)
    server.remove_tool("restart_service")  # while a person looks at the approval

    _decide(stack, waiting)
    final = stack.wait(thread.id)

    error = next(e for e in final.events if isinstance(e, Error))
    assert (error.kind, error.tool) == ("tool_failed", "restart_service")
    assert "MCP server ops no longer has the tool restart_service" in error.message
    assert fold(final).status == "done"
    answer = fold(final).answer
    assert answer is not None
    assert "no longer has the tool restart_service" in answer
    assert state.restarts == []


def test_a_thread_keeps_its_pinned_list_when_the_server_changes_and_the_change_shows(
    stack: LocalStack, ops: tuple[LocalMcpServer, PagedMCPServer, Ops]
) -> None:
    running, server, state = ops
    _use(stack, running.url, STEPFOLD_MCP_LIST_MAX_AGE_SECONDS="0")  # every step lists again: a change shows at once
    thread = stack.launch("oncall", ALERT)
    waiting = stack.wait(thread.id)
    pinned = next(e for e in waiting.events if isinstance(e, ToolsListed))
    server.remove_tool("service_status")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def service_status(service: str, region: str) -> str:
        """The health of a service in one region."""
        return "ok"

    _decide(stack, waiting)
    final = stack.wait(thread.id)

    assert fold(final).status == "done"
    assert state.restarts == ["checkout"], "the pinned restart_service still runs"
    listed = [e for e in final.events if isinstance(e, ToolsListed)]
    assert listed[0] == pinned
    changed = listed[1:]
    assert len(changed) == 1, "recorded once, not at every step"
    assert not changed[0].pinned
    assert changed[0].changes == ["changed the input schema and description of service_status"]
    assert changed[0].digest != pinned.digest
    shown = StepView()  # what `stepfold events` prints for the two
    assert shown.lines(pinned.model_dump(mode="json")) == [
        f"{pinned.seq:>3} mcp       ops: tools pinned for this thread: "
        "service_status, restart_service, add_incident_note"
    ]
    assert shown.lines(changed[0].model_dump(mode="json"))[0].endswith(
        "~~ mcp ops lists other tools now: changed the input schema and description of service_status"
    )

    other = stack.launch("oncall", ALERT)
    fresh = stack.wait(other.id)
    assert next(e for e in fresh.events if isinstance(e, ToolsListed)).digest == changed[0].digest
