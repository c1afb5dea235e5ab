"""The thread timeline page and "what the model saw": real v2 events into functions.api, the real ASL on moto."""

from __future__ import annotations

import argparse
import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from agents import deploybot, scripted_model
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import ScriptedLLM
from core.kernel.context import approx_tokens, render
from core.kernel.events import (
    Done,
    Error,
    Event,
    Failed,
    HumanRequest,
    HumanResponse,
    LLMCall,
    Paused,
    Resumed,
    ToolCall,
    ToolResult,
    ToolStarted,
    UserInput,
)
from core.kernel.prompts import PromptLibrary
from core.kernel.thread import Thread, fold
from functions import api, timeline
from infra import cli_views
from infra.cli import Api, ApiError
from infra.local.http import FrontDoor, front_door
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http import http_event
from tests.functional.conftest import Shared

KEY = "timeline-test-key"
XSS = "<script>alert(1)</script>"
XSS_ATTR = '"><img src=x onerror=alert(1)>'
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
PAGE_TAGS = {
    "html", "head", "meta", "title", "style", "body", "main", "h1", "h2", "h3", "dl", "dt", "dd", "code", "ol",
    "li", "p", "time", "span", "pre", "details", "summary", "a", "section", "strong", "nav",
}  # fmt: skip
"""Every element a page may contain: no script, img, form, iframe or anything else a value could smuggle in."""


# --- one stack and front door for the module ----------------------------------------------------------------


@pytest.fixture(scope="module")
def running(shared: Shared) -> Iterator[tuple[LocalStack, FrontDoor]]:
    with (
        shared.lease({"POWERTOOLS_LOG_LEVEL": "WARNING", "STEPFOLD_API_KEY": KEY}) as stack,
        front_door(stack) as door,
    ):
        yield stack, door


@pytest.fixture
def stack(running: tuple[LocalStack, FrontDoor]) -> Iterator[LocalStack]:
    """The module's stack; a test that swaps its agents or models gets the real ones back afterwards."""
    stack = running[0]
    agents, config = stack.rt.agents, stack.rt.provider_config
    yield stack
    stack.rt.agents = agents
    stack.rt.use_provider_config(config)


@pytest.fixture
def door(running: tuple[LocalStack, FrontDoor], stack: LocalStack) -> FrontDoor:
    return running[1]


@pytest.fixture
def recorder(stack: LocalStack) -> ScriptedLLM:
    """deploybot's scripted model, keeping every request it was sent (system prompt and context included)."""
    llm = scripted_model("deploybot")
    stack.rt.use_provider_config(
        ProviderConfig(scripted=lambda name: llm if name == "deploybot" else scripted_model(name))
    )
    return llm


# --- helpers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self
        return json.loads(self.body)

    def page(self) -> str:
        assert self.status == 200, self.body
        assert self.headers["content-type"] == "text/html; charset=utf-8"
        assert {k.lower(): v for k, v in SECURITY_HEADERS.items()}.items() <= self.headers.items()
        return self.body


def get(path: str, query: dict[str, str] | None = None) -> Reply:
    """GET through the API handler with a real v2 event (the authorizer already let it in)."""
    result = api.handler(http_event("GET", path, None, query, caller="api-key"), LambdaContext("ApiFunction"))
    headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
    return Reply(result["statusCode"], headers, result["body"])


def post(path: str, body: dict[str, Any]) -> Any:
    result = api.handler(http_event("POST", path, body, caller="api-key"), LambdaContext("ApiFunction"))
    assert result["statusCode"] in (200, 201), result
    return json.loads(result["body"])


def finished_deploybot(stack: LocalStack, text: str = "deploy the latest backend to production") -> Thread:
    """A deploybot thread that asked to deploy to production, was approved through the API and finished.

    The body names alice, but the record names the authenticated caller; alice is only a note."""
    thread_id = post("/threads", {"agent": "deploybot", "input": text})["thread_id"]
    assert fold(stack.wait(thread_id)).status == "awaiting_human"
    post(f"/threads/{thread_id}/responses", {"decision": "approve", "by": "alice", "comment": "ship it"})
    thread = stack.wait(thread_id, until=("done", "failed"))
    assert fold(thread).status == "done"
    return thread


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)


def assert_inert(body: str) -> None:
    """Only the page's own elements and attributes, however the values were crafted."""
    parsed = _Tags()
    parsed.feed(body)
    assert parsed.tags <= PAGE_TAGS, parsed.tags - PAGE_TAGS
    assert not {a for a in parsed.attributes if a.startswith("on") or a in ("src", "srcdoc", "action")}
    assert "<script" not in body.lower()
    assert "<img" not in body.lower()


def usd(value: float) -> str:
    return f"${value:,.6f}"


# --- the timeline page ------------------------------------------------------------------------------------------


def test_the_page_of_a_finished_deploybot_thread_shows_every_step_the_approval_and_the_cost(stack: LocalStack) -> None:
    thread = finished_deploybot(stack)
    body = get(f"/threads/{thread.id}/view").page()
    assert_inert(body)
    state = fold(thread)

    assert "<h1>deploybot · " in body
    assert f"<code>{thread.id}</code>" in body
    assert f"<dt>Total cost</dt><dd>{usd(state.cost_usd)}</dd>" in body
    assert state.cost_usd > 0
    assert f"<dt>Tokens</dt><dd>{state.input_tokens:,} in · {state.output_tokens:,} out</dd>" in body
    assert "<dt>Steps</dt><dd>2 model calls, " in body
    assert "<dt>Labels</dt><dd><code>prompt_version=1</code></dd>" in body

    calls = [e for e in thread.events if isinstance(e, LLMCall)]
    tools = [e.tool for e in thread.events if isinstance(e, ToolCall) and not e.prefetch]
    assert tools == ["deploy_backend", "done_for_now"]
    for step, (call, tool) in enumerate(zip(calls, tools, strict=True), start=1):
        assert f"<h3>Step {step} · the model chose <code>{tool}</code></h3>" in body
        assert f"<code>{call.prompt_id}</code> <code>{call.prompt_hash[:12]}</code>" in body
        assert f"<span>{call.input_tokens:,} tokens in</span> · <span>{call.output_tokens:,} out</span>" in body
        assert f"<span>{usd(call.cost_usd)}</span>" in body
        assert f'<a href="context.html?seq={call.seq}">What the model saw</a>' in body
    assert PromptLibrary().load("deploybot", 1).short_hash in body

    assert "Tool call <code>list_git_tags</code> (run by code before the first model call)" in body
    assert html.escape(json.dumps({"tag": "v1.5.0", "environment": "production"}, indent=2)) in body
    assert "Result of <code>deploy_backend</code>" in body
    assert html.escape('"url": "https://example.com"') in body
    assert "<h3>Approval requested</h3>" in body
    assert "<h3>Approved <code>deploy_backend</code> by api-key</h3>" in body  # the caller, never the body
    assert "<span>via api</span>" in body
    assert '<p class="text">ship it</p>' in body

    status = body[body.index('<section id="status">') :]
    assert '<strong id="current-status">done</strong>' in status
    assert "Deployed backend v1.5.0 to production." in status
    assert body.index("<h2>Timeline</h2>") < body.index('<section id="status">')


def test_every_value_on_the_page_is_escaped_and_large_results_are_collapsed(stack: LocalStack) -> None:
    thread = stack.rt.threads.create(crafted_thread("th_xss_timeline"))
    body = get(f"/threads/{thread.id}/view").page()
    assert_inert(body)
    assert html.escape(XSS) in body
    assert html.escape(XSS_ATTR) in body
    for heading in (
        "User input from webhook&quot;&gt;&lt;img",
        "Step 1 · the model chose <code>deploy_backend</code>",
        "Step 2 · the model answered in text, not with a tool",
        "Step 3 · the model chose <code>deploy_frontend</code>",
        "Approved <code>deploy_backend</code> with changes by mallory&lt;script&gt;",
        "<code>deploy_backend</code> started",
        "Error <code>tool_failed</code> in <code>deploy_backend</code>",
        "Paused by &lt;script&gt;",
        "Resumed by &lt;script&gt;",
        "<h3>Failed</h3>",
    ):
        assert heading in body, heading
    # step 3's call was refused before it became a tool call: its arguments are shown with the decision
    assert "With these arguments, which were not run:" in body
    assert "<span>$0.012500</span>" in body
    assert "<span>1,234 ms</span>" in body

    text = json.dumps(BIG_RESULT, indent=2, ensure_ascii=False)
    assert f"<summary>The result: {len(text):,} characters, " in body
    assert "the first 2,000 characters</summary>" in body
    assert html.escape(text[:2_000]) in body
    assert "y" * 2_100 not in body
    assert len(body) < 40_000

    status = body[body.index('<section id="status">') :]
    assert '<strong id="current-status">failed</strong>' in status
    assert html.escape(XSS) in status


def test_unknown_threads_are_404_json_on_every_view(stack: LocalStack) -> None:
    for path in ("/threads/th_missing/view", "/threads/th_missing/context", "/threads/th_missing/context.html"):
        reply = get(path)
        assert reply.status == 404
        assert reply.json()["error"] == "thread_not_found"
        assert "th_missing" in reply.json()["detail"]


# --- what the model saw ----------------------------------------------------------------------------------------


def test_context_is_exactly_what_the_step_rendered_and_sent_to_the_model(
    stack: LocalStack, recorder: ScriptedLLM
) -> None:
    thread = finished_deploybot(stack)
    calls = [e for e in thread.events if isinstance(e, LLMCall)]
    agent = deploybot.AGENT
    system = PromptLibrary().load("deploybot", 1).render(agent="deploybot", tools=", ".join(agent.registry.names))
    assert len(recorder.calls) == len(calls) == 2
    for step, (call, request) in enumerate(zip(calls, recorder.calls, strict=True), start=1):
        reply = get(f"/threads/{thread.id}/context", {"seq": str(call.seq)})
        assert reply.status == 200, reply.body
        view = reply.json()
        before = thread.model_copy(update={"events": thread.events[: call.seq]})
        assert view["context"] == render(before, agent.context)
        assert view["context"] == request.context
        assert view["system"] == system == request.system
        assert view["prompt"] == {"id": "deploybot", "version": 1, "hash": call.prompt_hash, "current": True}
        assert (view["seq"], view["step"], view["model"]) == (call.seq, step, call.model)
        assert view["tokens"] == approx_tokens(view["context"])
        assert view["input_tokens"] == call.input_tokens
        assert view["max_tokens"] == agent.context.max_tokens
        assert view["tools"] == list(agent.registry.names)
    first, second = calls
    assert get(f"/threads/{thread.id}/context", {"seq": "0"}).json()["seq"] == first.seq
    assert get(f"/threads/{thread.id}/context", {"seq": str(first.seq + 1)}).json()["seq"] == second.seq
    latest = get(f"/threads/{thread.id}/context").json()
    assert (latest["seq"], latest["previous_seq"], latest["next_seq"]) == (second.seq, first.seq, None)


def test_the_system_prompt_is_the_version_recorded_on_the_call(stack: LocalStack, recorder: ScriptedLLM) -> None:
    agents = stack.rt.agents
    stack.rt.agents = {**agents, "deploybot": replace(deploybot.AGENT, prompt_version=2)}
    thread_id = post("/threads", {"agent": "deploybot", "input": "deploy the latest backend to staging"})["thread_id"]
    thread = stack.wait(thread_id)
    stack.rt.agents = agents  # new threads are back on v1; this one keeps v2
    call = next(e for e in thread.events if isinstance(e, LLMCall))
    assert call.prompt_id == "deploybot/v2"

    view = get(f"/threads/{thread_id}/context", {"seq": str(call.seq)}).json()
    tools = ", ".join(deploybot.AGENT.registry.names)
    v2 = PromptLibrary().load("deploybot", 2).render(agent="deploybot", tools=tools)
    assert view["system"] == v2 == recorder.calls[0].system
    assert view["system"] != PromptLibrary().load("deploybot", 1).render(agent="deploybot", tools=tools)
    assert view["prompt"] == {"id": "deploybot", "version": 2, "hash": call.prompt_hash, "current": True}


def test_a_seq_out_of_range_says_what_there_is(stack: LocalStack) -> None:
    thread = finished_deploybot(stack)
    calls = [e.seq for e in thread.events if isinstance(e, LLMCall)]

    past = get(f"/threads/{thread.id}/context", {"seq": str(thread.version)})
    assert past.status == 400
    assert past.json()["error"] == "seq_out_of_range"
    assert f"has {thread.version} events (seq 0 to {thread.version - 1})" in past.json()["detail"]

    after_last = get(f"/threads/{thread.id}/context", {"seq": str(calls[-1] + 1)})
    assert after_last.status == 404
    assert after_last.json()["error"] == "no_model_call"
    assert f"its model calls are at seq {calls[0]}, {calls[1]}" in after_last.json()["detail"]

    for bad in ("-1", "two"):
        invalid = get(f"/threads/{thread.id}/context", {"seq": bad})
        assert invalid.status == 422
        assert invalid.json()["error"] == "invalid_request"
    page = get(f"/threads/{thread.id}/context.html", {"seq": str(thread.version + 5)})
    assert (page.status, page.json()["error"]) == (400, "seq_out_of_range")

    fresh = stack.rt.threads.create(Thread(id="th_no_calls", agent="deploybot", events=(_input(0, "hi"),)))
    none_yet = get(f"/threads/{fresh.id}/context")
    assert (none_yet.status, none_yet.json()["error"]) == (404, "no_model_call")
    assert none_yet.json()["detail"] == "thread th_no_calls has made no model call yet"
    at_zero = get(f"/threads/{fresh.id}/context", {"seq": "0"})
    assert at_zero.json()["detail"] == "thread th_no_calls has no model call at or after seq 0; it has made none so far"


def test_the_context_page_shows_the_prompt_and_context_escaped(stack: LocalStack) -> None:
    thread = stack.rt.threads.create(crafted_thread("th_xss_context"))
    view = get(f"/threads/{thread.id}/context", {"seq": "1"}).json()
    assert view["prompt"]["current"] is False  # the crafted call recorded another hash
    assert "&lt;script&gt;" in view["context"]  # core.kernel.context escapes what it renders; the page escapes again

    body = get(f"/threads/{thread.id}/context.html", {"seq": "1"}).page()
    assert_inert(body)
    assert "<h1>What the model saw at step 1</h1>" in body
    assert html.escape(view["system"]) in body
    assert html.escape(view["context"]) in body
    assert "The prompt file has changed since this call" in body
    assert '<a href="view#seq-1">Back to the timeline</a>' in body
    assert '<a href="context.html?seq=10">Next step</a>' in body
    assert "Previous step" not in body


# --- through the front door and the CLI ------------------------------------------------------------------------


def test_the_views_need_the_api_key_and_the_approval_page_links_to_a_signed_timeline(
    stack: LocalStack, door: FrontDoor
) -> None:
    with httpx.Client(base_url=door.base_url, timeout=10, trust_env=False) as http:
        launched = http.post(
            "/threads",
            json={"agent": "deploybot", "input": "deploy the latest backend to production"},
            headers={"authorization": f"Bearer {KEY}"},
        )
        thread_id = launched.raise_for_status().json()["thread_id"]
        stack.wait(thread_id)
        sent = stack.notifier.last_for(thread_id)
        assert sent is not None
        approval_page = http.get(sent[1])
        assert approval_page.status_code == 200
        link = re.search(r'href="(\./apr_[^"]+/thread\?[^"]+)"', approval_page.text)
        assert link is not None, "the approval page links to the thread, signed like the link itself"
        signed = http.get(urljoin(sent[1], html.unescape(link.group(1))))  # no API key: a person's browser
        assert signed.status_code == 200
        assert "Approval requested" in signed.text
        timeline_url = f"{door.base_url}/threads/{thread_id}/view"

        refused = http.get(timeline_url)
        assert refused.status_code == 401
        assert refused.json()["error"] == "unauthorized"
        for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
            shown = http.get(timeline_url, headers=headers)
            assert shown.status_code == 200
            assert shown.headers["content-type"] == "text/html; charset=utf-8"
            assert shown.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
            assert "Approval requested" in shown.text
        context_page = http.get(f"/threads/{thread_id}/context.html", headers={"x-api-key": KEY})
        assert context_page.status_code == 200
        assert "What the model saw at step 1" in context_page.text


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="stepfold")
    cli_views.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_stepfold_context_prints_what_the_model_saw(stack: LocalStack, door: FrontDoor) -> None:
    thread = finished_deploybot(stack)
    calls = [e for e in thread.events if isinstance(e, LLMCall)]
    client = Api(door.base_url, KEY)
    try:
        lines: list[str] = []
        assert cli_views.cmd_context(client, _cli("context", thread.id, "--seq", "0"), lines.append) == 0
        view = get(f"/threads/{thread.id}/context", {"seq": "0"}).json()
        text = "\n".join(lines)
        assert lines[0] == f"step     1 (model call at seq {calls[0].seq}), model scripted:deploybot"
        assert lines[1] == f"prompt   deploybot/v1 {calls[0].prompt_hash[:12]}"
        assert f"see      next: --seq {calls[1].seq}" in lines
        assert lines[2].endswith(  # an estimate is never shown as a provider's count
            f"(estimated); the scripted model estimated {calls[0].input_tokens} input tokens (no provider counted them)"
        )
        assert "--- system prompt" in text
        assert "You are deploybot, a deployment assistant" in text
        assert text.endswith("--- context " + "-" * 46 + "\n" + view["context"])

        only: list[str] = []
        cli_views.cmd_context(client, _cli("context", thread.id, "--only", "context"), only.append)
        latest = get(f"/threads/{thread.id}/context").json()
        assert only == [latest["context"]]
        assert only[0] == render(thread.model_copy(update={"events": thread.events[: calls[-1].seq]}))

        as_json: list[str] = []
        cli_views.cmd_context(client, _cli("context", thread.id, "--seq", "0", "--json"), as_json.append)
        assert json.loads(as_json[0]) == view

        with pytest.raises(ApiError) as refused:
            cli_views.cmd_context(client, _cli("context", thread.id, "--seq", "999"), lines.append)
        assert refused.value.status == 400
        assert "seq 999 is past its end" in refused.value.detail
    finally:
        client.close()
    with pytest.raises(SystemExit):
        _cli("context", thread.id, "--seq", "-3")


# --- a thread crafted to try every event with hostile text -----------------------------------------------------

_T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BIG_RESULT = {"log": XSS + "y" * 10_000, "note": XSS_ATTR}


def _input(seq: int, text: str) -> UserInput:
    return UserInput(seq=seq, ts=_T0, text=text)


def crafted_thread(thread_id: str) -> Thread:
    """Every kind of event, with a script and an attribute breakout in every field a model or person fills in."""
    at = [_T0 + timedelta(seconds=i) for i in range(16)]
    llm = {"model": "openai:gpt-4o", "prompt_id": "deploybot/v1", "prompt_hash": "f" * 64, "latency_ms": 1234}
    events: list[Event] = [
        UserInput(seq=0, ts=at[0], text=f"deploy {XSS}", source=f"webhook{XSS_ATTR}"),
        LLMCall(
            seq=1,
            ts=at[1],
            input_tokens=1000,
            output_tokens=100,
            cost_usd=0.0125,
            output={"name": "deploy_backend", "arguments": {"tag": XSS}},
            **llm,
        ),
        ToolCall(seq=2, ts=at[2], call_id="call_1", tool="deploy_backend", args={"tag": XSS, "note": XSS_ATTR}),
        HumanRequest(
            seq=3,
            ts=at[3],
            kind="approval",
            approval_id="apr_1",
            call_id="call_1",
            question=f"Approve {XSS}?",
            context=XSS_ATTR,
            format="multiple_choice",
            choices=[XSS, XSS_ATTR],
            origin="policy",
        ),
        HumanResponse(
            seq=4,
            ts=at[4],
            approval_id="apr_1",
            decision="edit",
            by=f"mallory{XSS}",
            channel=f"slack{XSS_ATTR}",
            comment=XSS,
            args={"tag": XSS_ATTR},
        ),
        ToolStarted(seq=5, ts=at[5], call_id="call_1"),
        ToolResult(seq=6, ts=at[6], call_id="call_1", tool="deploy_backend", result=BIG_RESULT),
        Paused(seq=7, ts=at[7], by=XSS, reason=XSS_ATTR),
        Resumed(seq=8, ts=at[8], by=XSS),
        HumanRequest(seq=9, ts=at[9], kind="question", approval_id="apr_2", question=XSS, origin="model"),
        LLMCall(seq=10, ts=at[10], input_tokens=10, output_tokens=5, cost_usd=0.0, output={"text": XSS}, **llm),
        Error(seq=11, ts=at[11], kind="no_tool_call", message=XSS),
        HumanResponse(seq=12, ts=at[12], approval_id="apr_2", decision="answer", by=XSS_ATTR, answer=XSS),
        LLMCall(
            seq=13,
            ts=at[13],
            input_tokens=10,
            output_tokens=5,
            cost_usd=0.0,
            output={"name": "deploy_frontend", "arguments": {"tag": XSS_ATTR}},
            **llm,
        ),
        Error(seq=14, ts=at[14], kind="tool_failed", message=XSS, call_id="call_1", tool="deploy_backend"),
        Failed(seq=15, ts=at[15], reason=XSS),
    ]
    return Thread(id=thread_id, agent="deploybot", events=tuple(events), labels={"team": XSS_ATTR})


def test_the_crafted_thread_has_every_kind_of_event_and_done_is_escaped_too() -> None:
    kinds = {type(e) for e in crafted_thread("th_x").events}
    assert kinds == {UserInput, LLMCall, ToolCall, ToolStarted, ToolResult, Error, HumanRequest, HumanResponse} | {
        Paused,
        Resumed,
        Failed,
    }
    done = Thread(id="th_done", agent="deploybot", events=(_input(0, "hi"), Done(seq=1, ts=_T0, answer=XSS)))
    body = timeline.render_timeline(done)
    assert_inert(body)
    assert body.count(html.escape(XSS)) == 2  # the event and the status
