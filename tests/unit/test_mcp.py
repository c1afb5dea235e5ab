"""MCP tools (ARCHITECTURE.md "MCP tools"): the annotation mapping, and our client, connector and per-thread pinning
against a real MCP server (the official ``mcp`` SDK's streamable HTTP app on a local port, infra/local/mcp_server.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from mcp.types import ToolAnnotations

from agents import oncall
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.mcp import HttpMcpConnector, schema_checker
from core.adapters.mcp.client import McpClient, McpProtocolError, McpUnavailableError
from core.kernel.agent import Agent, StepContext, step
from core.kernel.compaction import compact
from core.kernel.events import Error, HumanRequest, ToolResult, ToolsListed
from core.kernel.mcp import (
    McpServer,
    McpTool,
    McpToolError,
    McpToolGoneError,
    McpTools,
    RemoteTool,
    local_name,
    mapping,
    pinned_lists,
    result_of,
    with_pinned_tools,
)
from core.kernel.thread import Thread, fold, start_thread
from core.kernel.tools import InvalidArgsError, JsonArgs
from functions._boundary import DependencyUnavailable, classify
from infra.local.mcp_server import LocalMcpServer, Ops, free_url, ops_server

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
OPS = McpServer("ops", url_setting="STEPFOLD_MCP_OPS_URL")


def _tool(**hints: bool) -> RemoteTool:
    return RemoteTool(name="t", annotations=hints)


# --- the mapping (pure) ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hints", "policy", "idempotent"),
    [
        ({"readOnlyHint": True}, "auto", True),
        ({"readOnlyHint": True, "idempotentHint": False}, "auto", True),
        ({"destructiveHint": True}, "needs_approval", False),
        ({"destructiveHint": True, "idempotentHint": True}, "needs_approval", True),
        ({"readOnlyHint": False}, "needs_approval", False),  # MCP's default: destructive
        ({"readOnlyHint": False, "destructiveHint": False}, "needs_approval", False),  # additive still changes things
        ({"openWorldHint": True}, "needs_approval", False),
        ({}, "needs_approval", False),  # no annotations: fail closed
    ],
)
def test_annotations_map_to_a_policy_and_idempotency(hints: dict[str, bool], policy: str, idempotent: bool) -> None:
    mapped = mapping("ops", _tool(**hints))
    assert (mapped.policy, mapped.idempotent) == (policy, idempotent)
    assert mapped.reason


def test_the_declaration_overrides_the_annotations() -> None:
    assert mapping("ops", _tool(readOnlyHint=True), McpTool(policy="needs_approval")).policy == "needs_approval"
    relaxed = mapping("ops", _tool(), McpTool(policy="auto", idempotent=True))
    assert (relaxed.policy, relaxed.idempotent) == ("auto", True)
    assert "declaration" in relaxed.reason
    assert mapping("ops", _tool(destructiveHint=True), McpTool(idempotent=True)).policy == "needs_approval"


def test_a_declaration_is_checked_when_it_is_made() -> None:
    with pytest.raises(ValueError, match="lowercase"):
        McpServer("Ops", url_setting="X")
    with pytest.raises(ValueError, match="environment name"):
        McpServer("ops", url_setting="http://x")
    with pytest.raises(ValueError, match="needs-approval"):
        McpServer("ops", url_setting="X", tools={"t": McpTool(policy="needs-approval")})  # type: ignore[arg-type]
    assert local_name(McpServer("ops", url_setting="X", prefix="ops_"), "deploy.run/now") == "ops_deploy_run_now"


def test_results_become_json_or_an_error() -> None:
    assert result_of({"content": [{"type": "text", "text": "hi"}]}) == "hi"
    assert result_of({"content": [{"type": "text", "text": '{"a": 1}'}]}) == {"a": 1}
    assert result_of({"content": [], "structuredContent": {"b": 2}}) == {"b": 2}
    assert result_of(
        {"content": [{"type": "text", "text": "a"}, {"type": "image", "data": "AAAA", "mimeType": "x"}]}
    ) == [
        "a",
        {"type": "image", "mimeType": "x", "bytes": 3},
    ]
    with pytest.raises(McpToolError, match="boom"):
        result_of({"content": [{"type": "text", "text": "boom"}], "isError": True})


def test_the_schema_checker_says_what_is_wrong() -> None:
    check = schema_checker(
        {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"], "additionalProperties": False}
    )
    check({"n": 1})
    with pytest.raises(InvalidArgsError, match="n: must be integer"):
        check({"n": "x"})
    with pytest.raises(InvalidArgsError, match="must contain"):
        check({})
    remote = schema_checker({"$ref": "http://example.invalid/schema.json"})
    with pytest.raises(InvalidArgsError, match="cannot be checked"):
        remote({})


# --- the client against a real server --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LocalMcpServer, Ops]]:
    server, ops = ops_server(page_size=2)
    with LocalMcpServer(server) as running:
        yield running, ops


@pytest.mark.parametrize("mode", ["sse", "json", "stateless"])
def test_the_client_lists_every_page_and_calls_tools(mode: str) -> None:
    server, ops = ops_server(page_size=1)
    with LocalMcpServer(server, json_response=mode == "json", stateless=mode == "stateless") as running:
        client = McpClient(running.url, server="ops")
        tools = client.list_tools()
        assert [t["name"] for t in tools] == ["service_status", "restart_service", "add_incident_note"]
        assert tools[0]["annotations"] == {"readOnlyHint": True}
        answer = client.call_tool("service_status", {"service": "checkout"}, {"stepfold.dev/idempotency-key": "k"})
        assert result_of(answer) == {"service": "checkout", "status": "degraded", "error_rate": 0.31}
        with pytest.raises(McpToolError, match="no service 'nope'"):
            result_of(client.call_tool("service_status", {"service": "nope"}))
        client.close()
    assert ops.calls == ["service_status", "service_status"]


def test_a_forgotten_session_is_started_again(served: tuple[LocalMcpServer, Ops]) -> None:
    running, _ = served
    client = McpClient(running.url, server="ops")
    client.initialize()
    client._session = "forgotten-by-the-server"  # as after the server restarted
    assert len(client.list_tools()) == 3
    assert client._session != "forgotten-by-the-server"


def test_a_server_that_is_down_is_unavailable_and_classified_retryable(served: tuple[LocalMcpServer, Ops]) -> None:
    with pytest.raises(McpUnavailableError, match="ConnectError"):
        McpClient(free_url(), server="ops").list_tools()
    running, _ = served
    running.fail_next(1)
    with pytest.raises(McpUnavailableError, match="HTTP 503") as caught:
        McpClient(running.url, server="ops").list_tools()
    assert classify(caught.value) is DependencyUnavailable
    with pytest.raises(McpProtocolError, match="HTTP 404"):
        McpClient(running.url.replace("/mcp", "/nowhere"), server="ops").list_tools()


# --- the connector and pinning ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _agent(**changes: Any) -> Agent:
    return replace(oncall.AGENT, **changes)


def _thread(*events: Any) -> Thread:
    thread = start_thread("t_mcp", "oncall", "alert: checkout error rate above 25%", now=NOW)
    return thread.extend(events) if events else thread


def test_a_thread_pins_the_list_it_started_with_and_sees_a_change_as_an_event() -> None:
    server, _ = ops_server()
    clock = Clock()
    with LocalMcpServer(server) as running:
        connector = HttpMcpConnector(lambda s: (running.url, {}), max_age_s=60, clock=clock)
        tools = McpTools(connector)
        agent, first = tools(oncall.AGENT, _thread(), lambda: NOW)
        assert [type(e) for e in first] == [ToolsListed]
        pinned = first[0]
        assert isinstance(pinned, ToolsListed)
        assert pinned.pinned
        assert [t["name"] for t in pinned.tools] == ["service_status", "restart_service", "add_incident_note"]
        assert agent.registry.names[:3] == ["recent_deploys", "service_status", "restart_service"]
        assert "add_incident_note" not in agent.registry  # the declaration's `only`
        assert agent.registry["service_status"].policy == "auto"
        assert agent.registry["restart_service"].policy == "needs_approval"

        thread = _thread(pinned.model_copy(update={"seq": 1}))
        again, none = tools(oncall.AGENT, thread, lambda: NOW)
        assert none == ()
        assert again is agent, "built once per list, reused for every thread that pinned it"

        server.remove_tool("service_status")

        @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
        def service_status(service: str, region: str) -> str:
            """The health of a service in one region."""
            return "ok"

        kept, same = tools(oncall.AGENT, thread, lambda: NOW)
        assert same == (), "the container's list is fresh: nothing is listed again"
        clock.now = 61
        kept, noticed = tools(oncall.AGENT, thread, lambda: NOW)
        assert kept is agent, "the thread keeps its pinned list"
        (change,) = noticed
        assert isinstance(change, ToolsListed)
        assert not change.pinned
        assert change.seq == 2
        assert change.changes == ["changed the input schema and description of service_status"]
        assert tools(oncall.AGENT, thread.extend(noticed), lambda: NOW)[1] == (), "a change is recorded once"
        fresh, listed = tools(oncall.AGENT, _thread(), lambda: NOW)
        assert fresh is not agent
        assert isinstance(listed[0], ToolsListed)
        assert listed[0].digest == change.digest
        connector.close()


def test_a_server_that_is_down_fails_a_new_thread_but_not_a_pinned_one() -> None:
    connector = HttpMcpConnector(lambda s: (free_url(), {}))
    tools = McpTools(connector)
    with pytest.raises(McpUnavailableError):
        tools(oncall.AGENT, _thread(), lambda: NOW)
    pinned = ToolsListed(seq=1, ts=NOW, server="ops", digest="d", tools=[{"name": "service_status"}])
    agent, events = tools(oncall.AGENT, _thread(pinned), lambda: NOW)
    assert events == ()
    assert "service_status" in agent.registry


def _steps(agent: Agent, thread: Thread, llm: ScriptedLLM, n: int) -> Thread:
    ctx = StepContext(clock=lambda: NOW)
    for _ in range(n):
        outcome = step(thread, agent, llm, ctx)
        thread = thread.extend(outcome.events)
    return thread


def test_a_read_only_tool_runs_unasked_and_a_destructive_one_waits_for_a_person(
    served: tuple[LocalMcpServer, Ops],
) -> None:
    running, ops = served
    connector = HttpMcpConnector(lambda s: (running.url, {}))
    agent, listed = McpTools(connector)(oncall.AGENT, _thread(), lambda: NOW)
    thread = _thread(*listed)
    llm = ScriptedLLM(
        (
            Say("service_status", {"service": "search"}),
            Say("service_status", {"service": 7}),
            Say("restart_service", {"service": "search", "reason": "test"}),
        ),
        name="t",
    )
    thread = _steps(agent, thread, llm, 3)
    results = [e for e in thread.events if isinstance(e, ToolResult)]
    assert [r.result for r in results] == [{"service": "search", "status": "ok", "error_rate": 0.0}]
    invalid = next(e for e in thread.events if isinstance(e, Error))
    assert (invalid.kind, invalid.message) == ("invalid_args", "service: must be string")
    request = fold(thread).open_request
    assert isinstance(request, HumanRequest)
    assert request.kind == "approval"
    assert "Asked because ops marks restart_service destructive (destructiveHint)" in request.context
    assert ops.restarts == []
    assert agent.registry["restart_service"].idempotent is False
    connector.close()


def test_a_tool_gone_from_the_server_is_an_error_the_model_sees() -> None:
    server, _ = ops_server()
    with LocalMcpServer(server) as running:
        connector = HttpMcpConnector(lambda s: (running.url, {}))
        agent, listed = McpTools(connector)(oncall.AGENT, _thread(), lambda: NOW)
        server.remove_tool("service_status")
        with pytest.raises(McpToolGoneError, match="no longer has the tool service_status"):
            connector.call_tool(OPS, "service_status", {"service": "checkout"}, "k")
        thread = _steps(agent, _thread(*listed), ScriptedLLM((Say("service_status", {"service": "x"}),), name="t"), 1)
        error = thread.events[-1]
        assert isinstance(error, Error)
        assert error.kind == "tool_failed"
        assert error.message.startswith("McpToolGoneError: MCP server ops no longer has the tool service_status")
        connector.close()


def test_views_and_evals_see_the_pinned_tools_without_a_connection() -> None:
    pinned = ToolsListed(
        seq=1,
        ts=NOW,
        server="ops",
        digest="d",
        tools=[RemoteTool(name="service_status", annotations={"readOnlyHint": True}).model_dump()],
    )
    thread = _thread(pinned)
    assert [t.name for t in pinned_lists(thread)["ops"]] == ["service_status"]
    agent = with_pinned_tools(oncall.AGENT, thread)
    assert "service_status" in agent.registry
    with pytest.raises(Exception, match="not connected"):
        agent.registry["service_status"].run(JsonArgs({"service": "x"}), None)  # type: ignore[arg-type]


def test_a_snapshot_keeps_the_pinned_list() -> None:
    pinned = ToolsListed(seq=1, ts=NOW, server="ops", digest="d", tools=[{"name": "service_status"}])
    events: list[Any] = [pinned]
    from core.kernel.events import ToolCall  # noqa: PLC0415

    for i in range(60):
        seq = 2 + 2 * i
        events.append(ToolCall(seq=seq, ts=NOW, call_id=f"c{i}", tool="recent_deploys", args={"service": f"s{i}"}))
        events.append(ToolResult(seq=seq + 1, ts=NOW, call_id=f"c{i}", tool="recent_deploys", result=[f"{i} " * 600]))
    thread = _thread(*events)
    compacted = compact(thread, window_tokens=15_000)
    assert compacted is not None
    assert len(compacted.events) < len(thread.events)
    assert pinned in compacted.events
    assert pinned_lists(compacted) == pinned_lists(thread)
