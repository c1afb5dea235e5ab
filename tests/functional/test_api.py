"""The HTTP API handler with real API Gateway v2 events, the real state machine on moto, and the scripted models."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from openapi_spec_validator import validate

from agents import deploybot
from core.adapters.store.dynamodb import DynamoThreadStore
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.events import SCHEMA_VERSION, Done, Event, Failed, HumanResponse, Paused, UserInput
from core.kernel.store import InvalidCursorError, ThreadLister, ThreadListing
from core.kernel.thread import fold, start_thread
from functions import api
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http import http_event
from tests.functional.conftest import ScratchAws


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def call(
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    *,
    headers: dict[str, str] | None = None,
    caller: str | None = None,
    event: dict[str, Any] | None = None,
) -> Reply:
    """Invoke the API handler as API Gateway would, and decode its v2 response."""
    sent = event or http_event(method, path, body, query, headers, caller=caller)
    result = api.handler(sent, LambdaContext(function_name="ApiFunction"))
    assert isinstance(result["statusCode"], int)
    headers_out = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    assert headers_out.get("content-type", "").startswith("application/json"), result
    return Reply(result["statusCode"], json.loads(result["body"]), headers_out)


def launch(agent: str, text: str, **extra: Any) -> str:
    reply = call("POST", "/threads", {"agent": agent, "input": text, **extra})
    assert reply.status == 201, reply.body
    thread_id: str = reply.body["thread_id"]
    return thread_id


def executions(stack: LocalStack, thread_id: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = stack.clients["stepfunctions"].list_executions(
        stateMachineArn=stack.state_machine_arn
    )["executions"]
    return [e for e in listed if e["name"].startswith(f"{thread_id}-")]


def ended(stack: LocalStack, execution_arn: str) -> str:
    """The execution's final status, once it leaves RUNNING (a wait it was parked in ends a moment later)."""
    return stack.wait_execution(execution_arn, timeout=20)


def last_state(stack: LocalStack, execution_arn: str) -> str:
    entered = [e for e in stack.history(execution_arn) if "stateEnteredEventDetails" in e]
    name: str = entered[-1]["stateEnteredEventDetails"]["name"]
    return name


def waiting_deploybot(stack: LocalStack) -> str:
    thread_id = launch("deploybot", "deploy the latest backend to production")
    assert fold(stack.wait(thread_id)).status == "awaiting_human"
    return thread_id


def assert_error(reply: Reply, status: int, error: str, *words: str) -> None:
    assert reply.status == status, reply.body
    assert reply.body["error"] == error, reply.body
    text = json.dumps(reply.body["detail"])
    for word in words:
        assert word in text, reply.body


# --- launch ----------------------------------------------------------------------------------------------------


def test_launch_returns_201_at_once_and_the_thread_runs_to_done(stack: LocalStack) -> None:
    reply = call("POST", "/threads", {"agent": "calculator", "input": "multiply 3 and 4, then divide it by 2"})
    assert reply.status == 201
    assert reply.body["status"] == "running"
    assert reply.body["created"] is True
    thread_id = reply.body["thread_id"]
    assert fold(stack.wait(thread_id)).status == "done"

    got = call("GET", f"/threads/{thread_id}")
    assert got.status == 200
    assert (got.body["status"], got.body["answer"], got.body["pending"]) == ("done", "The answer is 6.", None)
    assert got.body["agent"] == "calculator"
    assert got.body["steps"] == 3
    assert stack.execution_status(stack.execution_arn(thread_id)) == "SUCCEEDED"


def test_the_same_idempotency_key_returns_the_same_thread_and_starts_one_execution(stack: LocalStack) -> None:
    body = {"agent": "calculator", "input": "add 1 and 2", "idempotency_key": "order-42", "labels": {"team": "ops"}}
    first = call("POST", "/threads", body)
    second = call("POST", "/threads", body)
    assert (first.status, second.status) == (201, 200)
    assert first.body["thread_id"] == second.body["thread_id"]
    assert (first.body["created"], second.body["created"]) == (True, False)
    thread_id = first.body["thread_id"]
    stack.wait(thread_id)
    assert len(executions(stack, thread_id)) == 1
    labels = call("GET", f"/threads/{thread_id}").body["labels"]
    assert labels["team"] == "ops"
    assert labels["idempotency_key"] == "order-42"
    third = call("POST", "/threads", body)
    assert (third.status, third.body["status"]) == (200, "done")
    assert len(executions(stack, thread_id)) == 1


def test_unknown_agent_is_404_and_names_the_agents(stack: LocalStack) -> None:
    assert_error(call("POST", "/threads", {"agent": "nope", "input": "hi"}), 404, "agent_not_found", "calculator")


@pytest.mark.parametrize("text", ["", "   \n"])
def test_empty_input_is_400(stack: LocalStack, text: str) -> None:
    assert_error(call("POST", "/threads", {"agent": "calculator", "input": text}), 400, "bad_request", "empty")


def test_oversized_body_is_413_before_parsing(stack: LocalStack) -> None:
    big = json.dumps({"agent": "calculator", "input": "x" * 300_000})
    assert_error(call("POST", "/threads", big), 413, "too_large", "262144")
    encoded = http_event("POST", "/threads", "")
    encoded.update(body=base64.b64encode(big.encode()).decode(), isBase64Encoded=True)
    assert_error(call("POST", "/threads", event=encoded), 413, "too_large")
    assert_error(call("POST", "/thread", "[" * 270_000), 413, "too_large")


def test_input_over_the_core_limit_is_413(stack: LocalStack) -> None:
    reply = call("POST", "/threads", {"agent": "calculator", "input": "x" * 150_000})
    assert_error(reply, 413, "too_large", "100000")


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        ("{not json", "json_invalid"),
        ("[1, 2]", "model_attributes_type"),
        ('"text"', "model_attributes_type"),
        ({"agent": "calculator"}, "missing"),
        ({"agent": "calculator", "input": "x", "surprise": 1}, "extra_forbidden"),
        ({"agent": "calculator", "input": 3}, "string_type"),
        ({"agent": "calculator", "input": "x", "labels": {"prompt_version": "9"}}, "value_error"),
        (None, "missing"),
    ],
)
def test_malformed_launch_bodies_are_422_with_where_and_why(stack: LocalStack, body: Any, kind: str) -> None:
    reply = call("POST", "/threads", body)
    assert_error(reply, 422, "invalid_request", kind)
    assert all({"loc", "type", "msg"} <= set(error) for error in reply.body["detail"])


def test_undecodable_base64_body_is_400(stack: LocalStack) -> None:
    event = http_event("POST", "/threads", "")
    event.update(body="%%%not base64", isBase64Encoded=True)
    assert_error(call("POST", "/threads", event=event), 400, "invalid_body")


def test_unknown_routes_and_threads_are_404_json(stack: LocalStack) -> None:
    assert_error(call("GET", "/nowhere"), 404, "not_found", "GET /nowhere")
    assert_error(call("DELETE", "/threads"), 404, "not_found")
    for method, path in [
        ("GET", "/threads/th_missing"),
        ("GET", "/threads/th_missing/events"),
        ("POST", "/threads/th_missing/pause"),
        ("POST", "/threads/th_missing/resume"),
        ("POST", "/threads/th_missing/cancel"),
        ("GET", "/thread/th_missing"),
    ]:
        assert_error(call(method, path), 404, "thread_not_found", "th_missing")
    assert_error(call("POST", "/threads/th_missing/messages", {"input": "x"}), 404, "thread_not_found")
    assert_error(call("POST", "/threads/th_missing/responses", {"decision": "approve"}), 404, "thread_not_found")
    compat = call("POST", "/thread/th_missing/response", {"type": "response", "response": "x"})
    assert_error(compat, 404, "thread_not_found")
    assert_error(call("GET", f"/threads/{'x' * 129}"), 422, "invalid_request", "string_too_long")


# --- reading ---------------------------------------------------------------------------------------------------


def test_events_page_by_seq_with_next_after(stack: LocalStack) -> None:
    thread_id = launch("calculator", "multiply 3 and 4, then divide the result by 2 and then add 12")
    total = stack.wait(thread_id).version
    seen: list[int] = []
    after: int | None = -1
    pages = 0
    while after is not None:
        reply = call("GET", f"/threads/{thread_id}/events", query={"after": str(after), "limit": "5"})
        assert reply.status == 200
        assert len(reply.body["events"]) <= 5
        seen += [e["seq"] for e in reply.body["events"]]
        after = reply.body["next_after"]
        pages += 1
    assert seen == list(range(total))
    assert pages == -(-total // 5)
    first = call("GET", f"/threads/{thread_id}/events").body
    assert (len(first["events"]), first["next_after"]) == (total, None)
    assert first["events"][0] == {**first["events"][0], "type": "user_input", "seq": 0, "v": SCHEMA_VERSION}
    assert call("GET", f"/threads/{thread_id}/events", query={"after": "999"}).body == {
        "events": [],
        "next_after": None,
    }
    for bad in ({"limit": "501"}, {"limit": "0"}, {"after": "-2"}, {"after": "two"}):
        assert_error(call("GET", f"/threads/{thread_id}/events", query=bad), 422, "invalid_request")


def test_list_threads_by_status_and_agent_with_a_cursor(stack: LocalStack) -> None:
    done = [launch("calculator", "add 1 and 2"), launch("calculator", "add 2 and 3")]
    waiting = waiting_deploybot(stack)
    for thread_id in done:
        stack.wait(thread_id)

    def ids(query: dict[str, str]) -> list[str]:
        reply = call("GET", "/threads", query=query)
        assert reply.status == 200, reply.body
        return [row["thread_id"] for row in reply.body["threads"]]

    assert sorted(ids({"status": "done"})) == sorted(done)
    assert ids({"agent": "deploybot"}) == [waiting]
    assert ids({"status": "awaiting_human", "agent": "deploybot"}) == [waiting]
    assert ids({"status": "awaiting_human", "agent": "calculator"}) == []
    everything = call("GET", "/threads").body
    rows = everything["threads"]
    assert everything["next_cursor"] is None
    assert sorted(r["thread_id"] for r in rows) == sorted([*done, waiting])
    assert [r["updated_at"] for r in rows] == sorted((r["updated_at"] for r in rows), reverse=True)
    assert {r["thread_id"]: r["status"] for r in rows}[waiting] == "awaiting_human"

    paged: list[str] = []
    query = {"limit": "1"}
    while True:
        reply = call("GET", "/threads", query=query)
        paged += [row["thread_id"] for row in reply.body["threads"]]
        if reply.body["next_cursor"] is None:
            break
        query = {"limit": "1", "cursor": reply.body["next_cursor"]}
    assert paged == [r["thread_id"] for r in rows]

    first = call("GET", "/threads", query={"status": "done", "limit": "1"}).body
    assert len(first["threads"]) == 1
    second = call("GET", "/threads", query={"status": "done", "limit": "1", "cursor": first["next_cursor"]}).body
    assert [r["thread_id"] for r in first["threads"] + second["threads"]] == ids({"status": "done"})
    other = call("GET", "/threads", query={"status": "failed", "cursor": first["next_cursor"]})
    assert_error(other, 400, "invalid_cursor", "other filters")
    assert_error(call("GET", "/threads", query={"cursor": "garbage!"}), 400, "invalid_cursor")
    assert_error(call("GET", "/threads", query={"status": "sleeping"}), 422, "invalid_request")


def _stores() -> Iterator[tuple[str, Callable[[Callable[[], datetime], ScratchAws], ThreadLister]]]:
    yield "memory", lambda clock, _: MemoryThreadStore()

    def dynamo(clock: Callable[[], datetime], aws: ScratchAws) -> ThreadLister:
        return DynamoThreadStore(aws.table, aws.dynamodb, aws.s3, aws.bucket, clock=clock, cache=False)

    yield "dynamodb", dynamo


@pytest.mark.parametrize(("kind", "make"), list(_stores()), ids=["memory", "dynamodb"])
def test_listing_contract_pages_through_every_status_in_time_order(
    kind: str, make: Callable[[Callable[[], datetime], ScratchAws], ThreadLister], scratch: ScratchAws
) -> None:
    """Both stores: newest first, filters, and a cursor that visits every thread exactly once."""
    base = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    now = [base]
    store = make(lambda: now[0], scratch)
    assert isinstance(store, MemoryThreadStore | DynamoThreadStore)
    expected: list[ThreadListing] = []
    plan = ["done", "running", "paused", "done", "failed", "running", "done", "paused", "done"]
    for i, status in enumerate(plan):
        now[0] = base + timedelta(minutes=i)
        agent = "calculator" if i % 3 else "deploybot"
        thread = store.create(start_thread(f"th_{i:02d}", agent, "go", now=now[0]))
        ending = _ending(status, now[0])
        if ending is not None:
            store.append(thread.id, 1, [ending])
        expected.append(ThreadListing(thread.id, agent, fold(store.load(thread.id)).status, now[0]))
    newest = sorted(expected, key=lambda r: r.updated_at, reverse=True)

    def pages(**query: Any) -> list[list[ThreadListing]]:
        out: list[list[ThreadListing]] = []
        cursor: str | None = None
        while True:
            rows, cursor = store.list_threads(cursor=cursor, **query)
            out.append(rows)
            if cursor is None:
                return out
            assert len(out) < 20, "the cursor never ends"

    assert [r for page in pages(limit=2) for r in page] == newest
    assert all(len(page) <= 2 for page in pages(limit=2))
    assert [r for page in pages(limit=50) for r in page] == newest
    assert [r for page in pages(limit=1, status="done") for r in page] == [r for r in newest if r.status == "done"]
    by_agent = [r for page in pages(limit=2, agent="deploybot") for r in page]
    assert by_agent == [r for r in newest if r.agent == "deploybot"]
    both = [r for page in pages(limit=1, status="running", agent="calculator") for r in page]
    assert both == [r for r in newest if r.status == "running" and r.agent == "calculator"]
    assert store.list_threads(status="awaiting_human") == ([], None)
    _, cursor = store.list_threads(limit=1)
    assert cursor is not None
    with pytest.raises(InvalidCursorError):
        store.list_threads(limit=1, status="done", cursor=cursor)
    tampered = base64.urlsafe_b64encode(json.dumps({"q": [None, None], "p": {"done": {"x": 1}}}).encode())
    with pytest.raises(InvalidCursorError):
        store.list_threads(cursor=tampered.decode())
    with pytest.raises(ValueError, match="limit"):
        store.list_threads(limit=0)


def _ending(status: str, ts: datetime) -> Event | None:
    match status:
        case "done":
            return Done(seq=1, ts=ts, answer="ok")
        case "failed":
            return Failed(seq=1, ts=ts, reason="no")
        case "paused":
            return Paused(seq=1, ts=ts, by="ops")
        case _:
            return None


def test_agents_lists_the_three_with_prompt_model_and_tool_policies(stack: LocalStack) -> None:
    reply = call("GET", "/agents")
    assert reply.status == 200
    agents = {a["name"]: a for a in reply.body["agents"]}
    assert set(agents) == set(stack.rt.agents)
    assert {"calculator", "deploybot", "triage"} <= set(agents)
    deploy = agents["deploybot"]
    assert deploy["prompt"]["id"] == "deploybot"
    assert deploy["prompt"]["version"] == 1
    assert len(deploy["prompt"]["hash"]) == 12
    assert deploy["model"] == "scripted:deploybot"
    tools = {t["name"]: t for t in deploy["tools"]}
    assert tools["deploy_backend"] == {"name": "deploy_backend", "policy": "depends on args", "idempotent": False}
    assert tools["list_git_tags"]["policy"] == "auto"
    assert {t["name"]: t["policy"] for t in agents["triage"]["tools"]}["page_oncall"] == "needs_approval"

    stack.rt.settings = stack.rt.settings.model_copy(update={"model": "openai:gpt-4o-mini"})
    models = {a["model"] for a in call("GET", "/agents").body["agents"]}
    assert models == {"openai:gpt-4o-mini"}


def test_openapi_document_is_valid_and_describes_the_api(stack: LocalStack) -> None:
    reply = call("GET", "/openapi.json")
    assert reply.status == 200
    document = reply.body
    validate(document)
    assert document["openapi"].startswith("3.1")
    for path in ("/threads", "/threads/{thread_id}", "/threads/{thread_id}/events", "/threads/{thread_id}/responses"):
        assert path in document["paths"], path
    assert {"/thread", "/thread/{thread_id}", "/thread/{thread_id}/response", "/agents"} <= set(document["paths"])
    assert "/openapi.json" not in document["paths"]
    schemas = document["components"]["schemas"]
    assert {"LaunchRequest", "ThreadView", "ErrorBody", "ResponseRequest", "CompatThread"} <= set(schemas)
    assert set(document["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    launch_op = document["paths"]["/threads"]["post"]
    assert {"201", "404", "413", "422"} <= set(launch_op["responses"])


# --- pause / resume / cancel / messages ------------------------------------------------------------------------


def test_pause_while_waiting_then_approve_ends_the_execution_paused_and_resume_finishes(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    paused = call("POST", f"/threads/{thread_id}/pause", {"reason": "change freeze"}, caller="alice")
    assert paused.status == 200
    assert paused.body["status"] == "paused"
    event = stack.thread(thread_id).events[-1]
    assert isinstance(event, Paused)
    assert (event.by, event.reason) == ("alice", "change freeze")

    approved = call("POST", f"/threads/{thread_id}/responses", {"decision": "approve", "comment": "ok"})
    assert approved.status == 200, approved.body
    first = stack.execution_arn(thread_id)
    assert ended(stack, first) == "FAILED"  # no answer: a parent's .sync:2 catches Paused (ARCHITECTURE.md)
    assert last_state(stack, first) == "Paused"
    assert stack.clients["stepfunctions"].describe_execution(executionArn=first)["error"] == "Paused"
    assert stack.execution_ended(first) == [{"thread_id": thread_id, "recorded": False}]  # not a system failure
    steps_before = fold(stack.thread(thread_id)).steps
    assert deploybot.SERVICE.deployments == []  # approved, but paused: nothing ran

    resumed = call("POST", f"/threads/{thread_id}/resume")
    assert resumed.status == 200, resumed.body
    assert resumed.body["status"] == "running"
    final = stack.wait(thread_id)
    assert fold(final).status == "done"
    assert fold(final).steps == steps_before + 1
    assert [d["environment"] for d in deploybot.SERVICE.deployments] == ["production"]
    assert len(executions(stack, thread_id)) == 2


def test_resume_of_a_thread_that_is_not_paused_is_409_and_says_why(stack: LocalStack) -> None:
    rt = stack.rt
    thread = rt.threads.create(start_thread("th_running", "calculator", "add 1 and 2", now=rt.now()))
    assert_error(call("POST", f"/threads/{thread.id}/resume"), 409, "wrong_state", "is running, not paused")
    assert executions(stack, thread.id) == []
    assert stack.thread(thread.id).version == 1


def test_pause_of_a_finished_thread_is_409(stack: LocalStack) -> None:
    thread_id = launch("calculator", "add 1 and 2")
    stack.wait(thread_id)
    assert_error(call("POST", f"/threads/{thread_id}/pause"), 409, "wrong_state", "done")


def test_cancel_a_waiting_thread_fails_it_and_ends_its_execution(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    approval, _ = stack.notifier.sent[-1]
    reply = call("POST", f"/threads/{thread_id}/cancel", {"reason": "wrong ticket"})
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "failed"
    assert "wrong ticket" in reply.body["failure"]
    execution = stack.execution_arn(thread_id)
    assert ended(stack, execution) == "FAILED"  # a parent's .sync:2 catches Cancelled (ARCHITECTURE.md)
    assert last_state(stack, execution) == "Cancelled"
    assert stack.clients["stepfunctions"].describe_execution(executionArn=execution)["error"] == "Cancelled"
    assert stack.execution_ended(execution) == [{"thread_id": thread_id, "recorded": False}]  # no second record
    assert stack.rt.approvals.get(approval.approval_id).state == "cancelled"
    assert deploybot.SERVICE.deployments == []
    assert_error(call("POST", f"/threads/{thread_id}/cancel"), 409, "wrong_state", "already failed")


def test_a_message_on_a_done_thread_runs_it_again_to_a_new_answer(stack: LocalStack) -> None:
    thread_id = launch("calculator", "add 1 and 2")
    first = stack.wait(thread_id)
    assert fold(first).answer == "The answer is 3."
    reply = call("POST", f"/threads/{thread_id}/messages", {"input": "multiply 6 and 7"})
    assert reply.status == 200, reply.body
    assert reply.body["status"] == "running"
    final = stack.wait(thread_id)
    assert fold(final).answer == "The answer is 42."
    assert len(executions(stack, thread_id)) == 2
    inputs = [e for e in final.events if isinstance(e, UserInput)]
    assert inputs[-1].source == "message:api-key"


def test_a_message_on_a_waiting_thread_is_409_pointing_at_responses(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    reply = call("POST", f"/threads/{thread_id}/messages", {"input": "hurry"})
    assert_error(reply, 409, "wrong_state", "/responses")


# --- responses -------------------------------------------------------------------------------------------------


def test_get_shows_what_a_waiting_thread_needs(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    body = call("GET", f"/threads/{thread_id}").body
    assert body["status"] == "awaiting_human"
    assert body["waiting_for"] == "approval"
    pending = body["pending"]
    assert pending["approval_id"] == body["approval_id"]
    assert (pending["kind"], pending["tool"]) == ("approval", "deploy_backend")
    assert pending["args"] == {"tag": "v1.5.0", "environment": "production"}


def test_approve_through_responses_then_a_second_approval_is_409(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    approval_id = call("GET", f"/threads/{thread_id}").body["approval_id"]
    assert_error(
        call("POST", f"/threads/{thread_id}/responses", {"decision": "answer", "answer": "yes"}),
        400,
        "invalid_decision",
        "approve, reject",
    )
    first = call("POST", f"/threads/{thread_id}/responses", {"decision": "approve", "by": "alice"})
    assert first.status == 200, first.body
    again = call("POST", f"/threads/{thread_id}/responses", {"decision": "approve", "approval_id": approval_id})
    assert_error(again, 409, "already_decided", "approved by api-key")  # the principal, not the body's "by"
    final = stack.wait(thread_id)
    assert fold(final).answer == "Deployed backend v1.5.0 to production."
    assert_error(call("POST", f"/threads/{thread_id}/responses", {"decision": "approve"}), 409, "wrong_state")
    assert len(deploybot.SERVICE.deployments) == 1
    response = stack.rt.approvals.get(approval_id)
    assert (response.state, response.decided_by) == ("approved", "api-key")


def test_edit_args_are_revalidated_and_the_edited_call_runs(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    bad = call("POST", f"/threads/{thread_id}/responses", {"decision": "edit", "args": {"tag": "latest"}})
    assert_error(bad, 400, "invalid_decision", "not valid")
    edited = {"decision": "edit", "args": {"tag": "v1.4.2", "environment": "production"}}
    assert call("POST", f"/threads/{thread_id}/responses", edited).status == 200
    stack.wait(thread_id, until=("done",))
    assert [(d["tag"], d["environment"]) for d in deploybot.SERVICE.deployments] == [("v1.4.2", "production")]


def test_another_threads_approval_id_is_404_and_changes_nothing(stack: LocalStack) -> None:
    one, two = waiting_deploybot(stack), waiting_deploybot_other(stack)
    other_approval = call("GET", f"/threads/{two}").body["approval_id"]
    before = stack.thread(one).version
    reply = call("POST", f"/threads/{one}/responses", {"decision": "approve", "approval_id": other_approval})
    assert_error(reply, 404, "approval_not_found", one)
    assert stack.thread(one).version == before
    assert fold(stack.thread(two)).status == "awaiting_human"


def waiting_deploybot_other(stack: LocalStack) -> str:
    thread_id = launch("deploybot", "deploy v1.4.2 frontend to production")
    stack.wait(thread_id)
    return thread_id


def test_responses_to_a_thread_that_waits_for_nothing_is_409(stack: LocalStack) -> None:
    thread_id = launch("calculator", "add 1 and 2")
    stack.wait(thread_id)
    assert_error(call("POST", f"/threads/{thread_id}/responses", {"decision": "approve"}), 409, "wrong_state")
    assert_error(
        call("POST", f"/threads/{thread_id}/responses", {"decision": "maybe"}), 422, "invalid_request", "decision"
    )


# --- the reference server's routes -----------------------------------------------------------------------------


def test_compat_launch_get_and_continue_a_done_thread(stack: LocalStack) -> None:
    reply = call("POST", "/thread", {"message": "multiply 3 and 4"})
    assert reply.status == 200, reply.body
    thread_id = reply.body["thread_id"]
    assert reply.body["events"][0] == {"type": "user_input", "data": "multiply 3 and 4"}
    assert reply.body["response_url"] == f"/thread/{thread_id}/response"
    assert stack.thread(thread_id).agent == "calculator"
    stack.wait(thread_id)

    shown = call("GET", f"/thread/{thread_id}").body
    assert {"type": "tool_call", "data": {"intent": "multiply", "a": 3, "b": 4}} in shown["events"]
    assert {"type": "tool_response", "data": 12} in shown["events"]
    assert shown["events"][-1] == {
        "type": "tool_call",
        "data": {"intent": "done_for_now", "answer": "The answer is 12."},
    }
    assert (shown["status"], shown["awaitingHumanResponse"], shown["awaitingHumanApproval"]) == ("done", True, False)

    wrong = call("POST", f"/thread/{thread_id}/response", {"type": "approval", "approved": True})
    assert_error(wrong, 400, "wrong_state", "is done")
    assert (wrong.body["awaitingHumanApproval"], wrong.body["awaitingHumanResponse"]) == (False, True)

    more = call("POST", f"/thread/{thread_id}/response", {"type": "response", "response": "add 1 and 1"})
    assert more.status == 200, more.body
    assert fold(stack.wait(thread_id)).answer == "The answer is 2."


def test_compat_answers_a_question_and_refuses_an_approval_for_it(stack: LocalStack) -> None:
    thread_id = call("POST", "/thread", {"message": "multiply 3 and xyz"}).body["thread_id"]
    assert fold(stack.wait(thread_id)).status == "awaiting_human"
    waiting = call("GET", f"/thread/{thread_id}")
    assert (waiting.body["awaitingHumanResponse"], waiting.body["awaitingHumanApproval"]) == (True, False)
    wrong = call("POST", f"/thread/{thread_id}/response", {"type": "approval", "approved": True})
    assert_error(wrong, 400, "wrong_state", "an answer to", "xyz")
    assert wrong.body["waiting_for"] == "question"
    answered = call("POST", f"/thread/{thread_id}/response", {"type": "response", "response": "5"})
    assert answered.status == 200, answered.body
    assert fold(stack.wait(thread_id)).answer == "The answer is 15."


def test_compat_approval_and_wrong_kind_of_response(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    wrong = call("POST", f"/thread/{thread_id}/response", {"type": "response", "response": "sure"})
    assert_error(wrong, 400, "wrong_state", "an approval")
    assert (wrong.body["awaitingHumanApproval"], wrong.body["awaitingHumanResponse"]) == (True, False)
    assert_error(call("POST", f"/thread/{thread_id}/response", {"type": "nod"}), 422, "invalid_request")
    reply = call("POST", f"/thread/{thread_id}/response", {"type": "approval", "approved": True})
    assert reply.status == 200, reply.body
    assert fold(stack.wait(thread_id)).status == "done"
    assert len(deploybot.SERVICE.deployments) == 1


def test_compat_launch_uses_the_configured_default_agent(stack: LocalStack) -> None:
    stack.rt.settings = stack.rt.settings.model_copy(update={"default_agent": "deploybot"})
    thread_id = call("POST", "/thread", {"message": "deploy the latest backend to production"}).body["thread_id"]
    assert stack.thread(thread_id).agent == "deploybot"
    stack.wait(thread_id)


# --- callers ---------------------------------------------------------------------------------------------------


def test_the_authorizers_caller_is_recorded_as_who_decided(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    reply = call("POST", f"/threads/{thread_id}/responses", {"decision": "reject", "comment": "not today"}, caller="ci")
    assert reply.status == 200, reply.body
    thread = stack.wait(thread_id)
    (response,) = [e for e in thread.events if isinstance(e, HumanResponse)][:1]
    assert (response.decision, response.by, response.channel, response.comment) == ("reject", "ci", "api", "not today")
    assert deploybot.SERVICE.deployments == []


# --- fork ---------------------------------------------------------------------------------------------------------


def test_fork_at_an_approval_continues_independently_of_the_original(stack: LocalStack) -> None:
    original = waiting_deploybot(stack)
    at = stack.thread(original).version
    forked = call("POST", f"/threads/{original}/fork", {"at": at})
    assert forked.status == 201, forked.body
    fork_id = forked.body["thread_id"]
    assert fork_id != original
    assert forked.body["labels"]["forked_from"] == original
    waiting = stack.wait(fork_id)
    assert fold(waiting).status == "awaiting_human"
    assert call("POST", f"/threads/{fork_id}/responses", {"decision": "approve", "by": "alice"}).status == 200
    assert (
        call(
            "POST", f"/threads/{original}/responses", {"decision": "reject", "comment": "not today", "by": "bob"}
        ).status
        == 200
    )
    assert fold(stack.wait(fork_id)).answer == "Deployed backend v1.5.0 to production."
    assert "not today" in (fold(stack.wait(original)).answer or "")


def test_fork_refuses_a_cut_in_the_middle_of_a_step_and_an_unknown_thread(stack: LocalStack) -> None:
    original = waiting_deploybot(stack)
    llm_call_seq = next(e.seq for e in stack.thread(original).events if e.type == "llm_call")
    reply = call("POST", f"/threads/{original}/fork", {"at": llm_call_seq + 1})
    assert reply.status == 400, reply.body
    assert call("POST", "/threads/th_nope/fork", {"at": 1}).status == 404
    assert call("POST", f"/threads/{original}/fork", {"at": 0}).status == 422


# --- issue 13: malformed requests are 4xx with a clear message, never a 5xx ------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"agent": "calculator", "input": "x", "labels": ' + "{" * 5_000 + "}" * 5_000 + "}",
        '{"agent": "calculator", "input": ' + "[" * 65 + "]" * 65 + "}",
    ],
)
def test_deeply_nested_json_is_400_not_a_recursion_error(stack: LocalStack, body: str) -> None:
    reply = call("POST", "/threads", body)
    assert_error(reply, 400, "invalid_body", "nested deeper than 64 levels")
    assert stack.clients["stepfunctions"].list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []


@pytest.mark.parametrize(
    "body",
    [
        '{"agent": "calculator", "input": "what is 2+2 \\ud800"}',
        '{"agent": "calculator", "input": "x", "labels": {"\\udfff": "v"}}',
        '{"agent": "calculator", "input": "x", "idempotency_key": "k\\udbff"}',
    ],
)
def test_a_lone_surrogate_in_the_body_is_400_at_the_boundary_and_nothing_is_stored(
    stack: LocalStack, body: str
) -> None:
    reply = call("POST", "/threads", body)
    assert_error(reply, 400, "invalid_body", "unpaired UTF-16 surrogate")
    assert stack.clients["stepfunctions"].list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []


def test_a_lone_surrogate_in_a_base64_body_or_the_query_string_is_400(stack: LocalStack) -> None:
    encoded = http_event("POST", "/threads", "")
    raw = b'{"agent": "calculator", "input": "\\ud800"}'
    encoded.update(body=base64.b64encode(raw).decode(), isBase64Encoded=True)
    assert_error(call("POST", "/threads", event=encoded), 400, "invalid_body", "surrogate")
    listing = http_event("GET", "/threads", query={"agent": "calculator"})
    listing["queryStringParameters"] = {"agent": "\ud800"}  # what a v2 event holds for an undecodable %ED%A0%80
    assert_error(call("GET", "/threads", event=listing), 400, "invalid_body", "query string")


def test_every_json_answer_carries_nosniff(stack: LocalStack) -> None:
    thread_id = launch("calculator", "what is 2 + 2?")
    replies = [
        call("GET", f"/threads/{thread_id}"),
        call("GET", "/agents"),
        call("GET", "/nowhere"),
        call("POST", "/threads", "{not json"),
        call("POST", "/threads", "[" * 1000 + "]" * 1000),
        call("POST", "/threads", "x" * 300_000),
    ]
    assert [r.headers.get("x-content-type-options") for r in replies] == ["nosniff"] * len(replies)


def test_a_5xx_body_names_the_request_but_never_the_exception(stack: LocalStack) -> None:
    stack.clients["dynamodb"].delete_table(TableName="stepfold-threads")  # the store fails under the handler
    reply = call("GET", "/threads/th_gone")
    assert reply.status >= 500, reply.body
    text = json.dumps(reply.body)
    for leaked in ("ResourceNotFound", "Traceback", "botocore", "ClientError", "stepfold-threads", "Exception"):
        assert leaked not in text, text
    assert "request" in reply.body["detail"]


# --- issue 13: what an API key holder cannot do ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "refused"),
    [
        ({"reply_to": "http://127.0.0.1:9/x", "reply_format": "stepfold"}, "reply_to"),
        ({"reply_format": "slack", "reply_to": "https://hooks.slack.com/commands/T/1/x"}, "reply_format"),
        ({"reply_secret": "x"}, "reply_secret"),
        ({"trigger": "webhook:github"}, "trigger"),
        ({"delivery_id": "d-1", "team": "ops"}, "delivery_id"),
        ({"trigger_event": "issues.opened"}, "trigger_event"),
        ({"forked_from": "th_someone_else"}, "forked_from"),
    ],
)
def test_launch_refuses_labels_only_triggers_or_stepfold_set_with_422(
    stack: LocalStack, labels: dict[str, str], refused: str
) -> None:
    reply = call("POST", "/threads", {"agent": "calculator", "input": "add 1 and 2", "labels": labels})
    assert_error(reply, 422, "reserved_label", repr(refused), "choose another label name")
    assert call("GET", "/threads").body["threads"] == []  # nothing was created
    assert stack.clients["stepfunctions"].list_executions(stateMachineArn=stack.state_machine_arn)["executions"] == []
    ok = call("POST", "/threads", {"agent": "calculator", "input": "add 1 and 2", "labels": {"team": "ops"}})
    assert ok.status == 201, ok.body  # ordinary labels still work


def test_a_decision_is_recorded_as_the_authenticated_caller_and_the_body_only_adds_a_note(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    approval_id = call("GET", f"/threads/{thread_id}").body["approval_id"]
    body = {"decision": "approve", "by": "alice@example.com (CFO)", "comment": "ship it"}
    assert call("POST", f"/threads/{thread_id}/responses", body, caller="api-key").status == 200
    final = stack.wait(thread_id)
    (response,) = [e for e in final.events if isinstance(e, HumanResponse)]
    assert response.by == "api-key"
    assert response.comment == "ship it"
    assert response.note == "alice@example.com (CFO)"
    assert stack.rt.approvals.get(approval_id).decided_by == "api-key"
    assert "alice" not in json.dumps(stack.rt.approvals.get(approval_id).model_dump())


def test_replies_are_signed_with_their_own_key_and_sent_only_where_the_policy_allows(stack: LocalStack) -> None:
    import threading  # noqa: PLC0415
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

    from core.services.notify import verify_webhook  # noqa: PLC0415
    from functions._wiring import Secrets  # noqa: PLC0415

    received: list[tuple[dict[str, str], bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(
                ({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(int(self.headers["content-length"])))
            )
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rt = stack.rt
        rt.replier = None  # the runtime builds its real HTTP replier, as a deployed function does
        rt._secrets = Secrets(
            link_signing_key="k", stepfold_webhook_secret="inbound-secret", reply_signing_key="reply-key"
        )
        url = f"http://127.0.0.1:{server.server_port}/agent-results"
        labels = {"reply_to": url, "reply_format": "stepfold", "trigger": "webhook:shop"}
        thread = start_thread("th_reply_policy_1", "calculator", "add 1 and 2", now=rt.now(), **labels)
        rt.threads.create(thread.extend([Done(seq=1, ts=rt.now(), answer="3")]))

        refused = rt.send_reply("th_reply_policy_1")  # AWS settings: loopback is never a destination
        assert refused is not None
        assert not refused.sent
        assert "loopback" in refused.error
        assert received == []

        rt.settings = rt.settings.model_copy(update={"reply_allow_loopback": True})  # the local stack's switch
        sent = rt.send_reply("th_reply_policy_1")
        assert sent is not None
        assert sent.sent, sent.error
        ((headers, content),) = received
        now = int(time.time())
        assert verify_webhook("reply-key", headers["x-stepfold-signature"], content, now=now)
        assert not verify_webhook("inbound-secret", headers["x-stepfold-signature"], content, now=now)
    finally:
        server.shutdown()
        server.server_close()


# --- issue 13: named principals and scopes -------------------------------------------------------------------------


def as_key(method: str, path: str, body: Any = None, *, caller: str, scopes: str) -> Reply:
    """Call the API as the Lambda authorizer lets a named key in: ``requestContext.authorizer.lambda``."""
    event = http_event(method, path, body)
    event["requestContext"]["authorizer"] = {"lambda": {"caller": caller, "scopes": scopes}}
    return call(method, path, event=event)


def as_token(method: str, path: str, body: Any = None, **claims: str) -> Reply:
    """Call the API as API Gateway's JWT authorizer lets a token in: ``requestContext.authorizer.jwt``."""
    event = http_event(method, path, body)
    base = {"iss": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc", "sub": "7f1c-user", "exp": "1"}
    event["requestContext"]["authorizer"] = {"jwt": {"claims": {**base, **claims}, "scopes": None}}
    return call(method, path, event=event)


def test_a_key_without_the_scope_is_403_naming_what_it_may_and_may_not_do(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    reader = as_key("POST", "/threads", {"agent": "calculator", "input": "add 1 and 2"}, caller="dash", scopes="read")
    assert_error(reader, 403, "forbidden", "this key (dash) may read, not operate")
    approve = {"decision": "approve"}
    ops = as_key("POST", f"/threads/{thread_id}/responses", approve, caller="ops-bot", scopes="read operate")
    assert_error(ops, 403, "forbidden", "this key (ops-bot) may read and operate, not approve")
    blind = as_key("GET", f"/threads/{thread_id}", caller="alice", scopes="approve")
    assert_error(blind, 403, "forbidden", "this key (alice) may approve, not read")
    for path in ("pause", "resume", "cancel", "retry", "messages", "fork"):
        refused = as_key("POST", f"/threads/{thread_id}/{path}", {}, caller="alice", scopes="read approve")
        assert_error(refused, 403, "forbidden", "not operate")
    compat = as_key(
        "POST",
        f"/thread/{thread_id}/response",
        {"type": "approval", "approved": True},
        caller="x",
        scopes="read operate",
    )
    assert_error(compat, 403, "forbidden", "not approve")
    assert fold(stack.thread(thread_id)).status == "awaiting_human"  # nothing of the above touched it


def test_each_scope_lets_its_routes_through_and_by_is_the_keys_name(stack: LocalStack) -> None:
    launched = as_key(
        "POST", "/threads", {"agent": "deploybot", "input": "deploy the backend"}, caller="ops-bot", scopes="operate"
    )
    assert launched.status == 201, launched.body
    thread_id = launched.body["thread_id"]
    assert fold(stack.wait(thread_id)).status == "awaiting_human"
    assert as_key("GET", f"/threads/{thread_id}", caller="dash", scopes="read").status == 200
    answer = {"decision": "reject", "comment": "not today", "by": "someone-else"}
    decided = as_key("POST", f"/threads/{thread_id}/responses", answer, caller="alice", scopes="approve")
    assert decided.status == 200, decided.body
    thread = stack.wait(thread_id)
    (response,) = [e for e in thread.events if isinstance(e, HumanResponse)]
    assert response.by == "alice"  # the principal, never the body's "by"


def test_an_approve_only_key_cannot_continue_a_done_thread_through_the_compat_response_route(stack: LocalStack) -> None:
    thread_id = launch("calculator", "add 1 and 2")
    assert fold(stack.wait(thread_id)).status == "done"
    sent = {"type": "response", "response": "multiply 6 and 7"}
    refused = as_key("POST", f"/thread/{thread_id}/response", sent, caller="alice", scopes="read approve")
    assert_error(refused, 403, "forbidden", "this key (alice) may read and approve, not operate")
    assert len(stack.thread(thread_id).events) == len(stack.wait(thread_id).events)
    assert as_key("POST", f"/thread/{thread_id}/response", sent, caller="ops", scopes="approve operate").status == 200
    inputs = [e for e in stack.wait(thread_id).events if isinstance(e, UserInput)]
    assert inputs[-1].source == "message:ops"


def test_a_jwt_principal_is_named_by_its_claims_and_scoped_by_its_scope_claim(stack: LocalStack) -> None:
    """API Gateway's JWT authorizer (template.yaml JwtIssuer): the name from the claims, scopes from ``scope``
    (Cognito writes them ``<resource server>/<scope>``) or ``scp`` (flattened to ``"[a b]"`` by API Gateway)."""
    launched = as_token(
        "POST",
        "/threads",
        {"agent": "deploybot", "input": "deploy the backend"},
        scope="stepfold/operate stepfold/read",
    )
    assert launched.status == 201, launched.body
    thread_id = launched.body["thread_id"]
    assert fold(stack.wait(thread_id)).status == "awaiting_human"
    refused = as_token("POST", f"/threads/{thread_id}/responses", {"decision": "approve"}, scope="stepfold/read")
    assert_error(refused, 403, "forbidden", "this token (7f1c-user) may read, not approve", "scope or scp claim")
    unverified = {"email": "mallory@example.com", "email_verified": "false", "username": "mallory"}
    assert_error(as_token("GET", f"/threads/{thread_id}", **unverified), 403, "forbidden", "(mallory) has no")
    decided = as_token(
        "POST",
        f"/threads/{thread_id}/responses",
        {"decision": "reject", "by": "bob"},
        scp="[read approve]",
        email="alice@example.com",
        email_verified="true",
    )
    assert decided.status == 200, decided.body
    (response,) = [e for e in stack.wait(thread_id).events if isinstance(e, HumanResponse)]
    assert response.by == "alice@example.com"


def test_pause_resume_cancel_record_the_principal_as_by(stack: LocalStack) -> None:
    thread_id = waiting_deploybot(stack)
    assert (
        as_key("POST", f"/threads/{thread_id}/pause", {"reason": "lunch"}, caller="ops-bot", scopes="operate").status
        == 200
    )
    paused = [e for e in stack.thread(thread_id).events if isinstance(e, Paused)]
    assert paused[-1].by == "ops-bot"
    assert as_key("POST", f"/threads/{thread_id}/cancel", {}, caller="ops-bot", scopes="operate").status == 200
    failed = [e for e in stack.thread(thread_id).events if isinstance(e, Failed)]
    assert "ops-bot" in failed[-1].reason


def test_an_authorizer_context_of_another_kind_grants_nothing(stack: LocalStack) -> None:
    event = http_event("GET", "/agents")
    event["requestContext"]["authorizer"] = {"iam": {"userArn": "arn:aws:iam::123456789012:user/x"}}
    assert_error(call("GET", "/agents", event=event), 403, "forbidden", "has no stepfold scope")


def _json_body_routes() -> list[tuple[str, str]]:
    """Every route of the OpenAPI document that takes a JSON body: (method, path template)."""
    document = json.loads(api.openapi_json())
    found = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            content = (operation.get("requestBody") or {}).get("content", {})
            if "application/json" in content:
                found.append((method.upper(), path))
    return found


def test_no_route_takes_a_json_array_so_the_api_may_refuse_every_array_body() -> None:
    document = json.loads(api.openapi_json())
    schemas = document["components"]["schemas"]
    for method, path in _json_body_routes():
        schema = document["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
        for option in schema.get("anyOf", [schema]):
            resolved = schemas[option["$ref"].rsplit("/", 1)[1]] if "$ref" in option else option
            assert resolved.get("type") != "array", f"{method} {path} takes an array: the refusal in api.py is wrong"


def test_a_body_wrapped_in_an_array_is_422_on_every_route_not_its_first_element(stack: LocalStack) -> None:
    """Powertools' validation reads a list given for a non-list field as its first element, so ``[{}]`` passed as
    ``{}``: a pause, cancel or launch went through on a body that is not the documented object."""
    thread_id = waiting_deploybot(stack)
    routes = _json_body_routes()
    assert {"/threads", "/threads/{thread_id}/pause", "/threads/{thread_id}/cancel"} <= {path for _, path in routes}
    for method, path in routes:
        reply = call(method, path.replace("{thread_id}", thread_id), [{}])
        assert_error(reply, 422, "invalid_request", "model_attributes_type")
    assert call("GET", f"/threads/{thread_id}").body["status"] == "awaiting_human"
