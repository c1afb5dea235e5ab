"""The local front door: real HTTP in, real API Gateway v2 events out, to the handlers template.yaml deploys."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from core.kernel.events import HumanResponse, Paused
from core.kernel.thread import fold
from functions._wiring import ApiKey, Secrets
from infra.local.http import MAX_BODY_BYTES, FrontDoor, front_door
from infra.local.stack import LambdaContext, LocalStack
from tests.functional.conftest import Shared

KEY = "front-door-test-key"


@pytest.fixture(scope="module")
def running(shared: Shared) -> Iterator[tuple[LocalStack, FrontDoor]]:
    with (
        shared.lease({"POWERTOOLS_LOG_LEVEL": "WARNING", "STEPFOLD_API_KEY": KEY}) as stack,
        front_door(stack) as server,
    ):
        yield stack, server


@pytest.fixture
def stack(running: tuple[LocalStack, FrontDoor]) -> Iterator[LocalStack]:
    """The module's stack; functions a test replaced with probes are the real ones again afterwards."""
    stack = running[0]
    real = dict(stack._handlers)
    yield stack
    stack._handlers.clear()
    stack._handlers.update(real)


@pytest.fixture
def door(running: tuple[LocalStack, FrontDoor], stack: LocalStack) -> FrontDoor:
    return running[1]


@pytest.fixture
def http(door: FrontDoor) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=door.base_url, timeout=10) as client:
        yield client


AUTH = {"authorization": f"Bearer {KEY}"}


class Probe:
    """Stands in for a function in the stack's handler registry and records what it was called with."""

    def __init__(self, result: Any = None, error: Exception | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self.contexts: list[LambdaContext] = []
        self.result = result if result is not None else {"statusCode": 200, "body": "{}"}
        self.error = error

    def __call__(self, event: dict[str, Any], context: LambdaContext) -> Any:
        self.events.append(event)
        self.contexts.append(context)
        if self.error is not None:
            raise self.error
        return self.result


def _install(stack: LocalStack, function: str, probe: Probe) -> None:
    assert stack.handler(function) is not None, f"template.yaml has no {function}"
    stack._handlers[function] = probe


def test_routes_and_auth_are_the_templates(door: FrontDoor) -> None:
    def who(method: str, path: str) -> tuple[str, str | None, str]:
        found = door.route(method, path)
        assert found is not None, f"no route for {method} {path}"
        route, _ = found
        authorizer = door.authorizers[route.authorizer].function if route.authorizer else None
        return route.function, authorizer, route.key

    assert who("GET", "/approvals/apr_1") == ("ApprovalsFunction", None, "GET /approvals/{approval_id}")
    assert who("POST", "/approvals/apr_1")[:2] == ("ApprovalsFunction", None)
    assert who("GET", "/openapi.json")[:2] == ("ApiFunction", None)
    for method, path in (("POST", "/threads"), ("GET", "/threads/th_1/events"), ("GET", "/agents")):
        assert who(method, path)[:2] == ("ApiFunction", "AuthorizerFunction")


def test_a_request_becomes_a_real_http_api_v2_event(stack: LocalStack, door: FrontDoor, http: httpx.Client) -> None:
    probe = Probe({"statusCode": 202, "headers": {"X-Thing": "1"}, "cookies": ["a=1", "b=2"], "body": '{"ok":true}'})
    _install(stack, "ApiFunction", probe)

    response = http.post(
        "/threads/th_1/pause?x=1&x=2&empty=",
        json={"reason": "lunch"},
        headers={**AUTH, "cookie": "c=3; d=4", "x-multi": "one", "user-agent": "probe/1"},
    )

    assert response.status_code == 202
    assert response.json() == {"ok": True}
    assert response.headers["x-thing"] == "1"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    (event,) = probe.events
    assert event["version"] == "2.0"
    assert event["rawPath"] == "/threads/th_1/pause"
    assert event["rawQueryString"] == "x=1&x=2&empty="
    assert event["queryStringParameters"] == {"x": "1,2", "empty": ""}
    assert event["cookies"] == ["c=3", "d=4"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "one"
    assert event["headers"]["content-type"] == "application/json"
    assert all(name == name.lower() for name in event["headers"])
    assert event["isBase64Encoded"] is False
    assert json.loads(event["body"]) == {"reason": "lunch"}
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/threads/th_1/pause",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "probe/1",
    }
    assert context["stage"] == "$default"
    assert context["routeKey"] == event["routeKey"]
    assert [bool(context[k]) for k in ("accountId", "apiId", "requestId")] == [True, True, True]
    assert context["domainName"] == urlsplit(door.base_url).netloc
    assert isinstance(context["timeEpoch"], int)
    assert context["time"].endswith(" +0000")
    assert isinstance(context["authorizer"]["lambda"], dict)  # what the real authorizer allowed it with
    assert probe.contexts[0].function_name == "ApiFunction"
    assert probe.contexts[0].get_remaining_time_in_millis() > 0


def test_form_posts_arrive_base64_encoded_as_on_api_gateway(
    stack: LocalStack, door: FrontDoor, http: httpx.Client
) -> None:
    probe = Probe({"statusCode": 200, "headers": {"content-type": "text/html"}, "body": "<p>ok</p>"})
    _install(stack, "ApprovalsFunction", probe)

    response = http.post("/approvals/apr_9?exp=1&sig=ab", data={"decision": "approve", "by": "Ann Lee"})

    assert response.status_code == 200
    assert response.text == "<p>ok</p>"
    (event,) = probe.events
    assert event["isBase64Encoded"] is True
    assert parse_qs(base64.b64decode(event["body"]).decode()) == {"decision": ["approve"], "by": ["Ann Lee"]}
    assert event["pathParameters"] == {"approval_id": "apr_9"}
    assert event["routeKey"] == "POST /approvals/{approval_id}"
    assert "authorizer" not in event["requestContext"]


def test_the_api_needs_the_key_and_accepts_bearer_or_x_api_key(stack: LocalStack, http: httpx.Client) -> None:
    probe = Probe()
    _install(stack, "ApiFunction", probe)

    for headers in ({}, {"authorization": "Bearer wrong"}, {"x-api-key": "wrong"}, {"authorization": KEY + "x"}):
        refused = http.get("/agents", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.json()["error"] == "unauthorized"
        assert "API key" in refused.json()["detail"]
    assert probe.events == []  # a refused request never reaches the function

    assert http.get("/agents", headers=AUTH).status_code == 200
    assert http.get("/agents", headers={"x-api-key": KEY}).status_code == 200
    assert len(probe.events) == 2


def test_the_real_api_answers_through_the_door(http: httpx.Client) -> None:
    agents = http.get("/agents", headers=AUTH)
    assert agents.status_code == 200
    assert "deploybot" in {a["name"] for a in agents.json()["agents"]}
    openapi = http.get("/openapi.json")  # no key: the schema is public
    assert openapi.status_code == 200
    assert "/threads" in openapi.json()["paths"]


def test_approval_pages_need_no_key_only_their_signature(http: httpx.Client) -> None:
    forged = http.get("/approvals/apr_0000?exp=9999999999&sig=00")
    assert forged.status_code == 403  # the approvals function refused the signature, not the authorizer
    assert forged.headers["content-type"].startswith("text/html")


def test_an_oversized_body_is_refused_before_any_function_runs(
    stack: LocalStack, door: FrontDoor, http: httpx.Client
) -> None:
    probe = Probe()
    _install(stack, "ApiFunction", probe)

    too_big = http.post("/threads", content=b"x" * (MAX_BODY_BYTES + 1), headers=AUTH)

    assert too_big.status_code == 413
    assert too_big.json()["error"] == "payload_too_large"
    assert probe.events == []
    assert http.get("/agents", headers=AUTH).status_code == 200  # the server is still there


def test_a_function_that_raises_is_a_500_and_the_server_carries_on(stack: LocalStack, http: httpx.Client) -> None:
    _install(stack, "ApiFunction", Probe(error=RuntimeError("boom")))

    failed = http.get("/agents", headers=AUTH)

    assert failed.status_code == 500
    assert failed.json()["error"] == "internal"
    assert "ApiFunction failed (request " in failed.json()["detail"]
    assert "boom" not in failed.text, "no exception text in a 5xx body"
    _install(stack, "ApiFunction", Probe({"bare": "dict"}))  # no statusCode: API Gateway sends it as JSON
    bare = http.get("/agents", headers=AUTH)
    assert (bare.status_code, bare.json()) == (200, {"bare": "dict"})
    _install(stack, "ApiFunction", Probe({"statusCode": "teapot"}))
    assert http.get("/agents", headers=AUTH).status_code == 500


def test_deploybot_lifecycle_over_http_with_links_pointing_at_the_door(
    stack: LocalStack, door: FrontDoor, http: httpx.Client
) -> None:
    launched = http.post(
        "/threads", json={"agent": "deploybot", "input": "deploy the latest backend to production"}, headers=AUTH
    )
    assert launched.status_code == 201
    thread_id = launched.json()["thread_id"]
    stack.wait(thread_id)
    sent = stack.notifier.last_for(thread_id)
    assert sent is not None
    link = sent[1]
    assert link.startswith(f"{door.base_url}/approvals/")

    page = http.get(link)
    assert page.status_code == 200
    assert "deploy_backend" in page.text
    decided = http.post(link, data={"decision": "approve", "by": "Ann Lee"}, headers={"origin": door.base_url})
    assert decided.status_code == 200, decided.text

    final = stack.wait(thread_id)
    assert fold(final).status == "done"
    summary = http.get(f"/threads/{thread_id}", headers=AUTH).json()
    assert (summary["status"], summary["answer"]) == ("done", "Deployed backend v1.5.0 to production.")


# --- issue 13: named keys with scopes, through the door --------------------------------------------------------------


def test_named_keys_reach_the_api_with_their_name_and_scopes_and_the_api_enforces_them(
    stack: LocalStack, http: httpx.Client
) -> None:
    """The door runs the real authorizer and hands its context on as API Gateway does
    (``requestContext.authorizer.lambda``); the real API refuses what the key's scopes do not cover."""
    saved = stack.rt._secrets
    named = {
        "ops-bot": ApiKey(key="ops-bot-key-0123456789", scopes=("read", "operate")),
        "alice": ApiKey(key="alice-key-0123456789ab", scopes=("read", "approve")),
    }
    stack.rt._secrets = Secrets(link_signing_key="k", api_key=KEY, api_keys=named)
    try:
        ops = {"x-api-key": "ops-bot-key-0123456789"}
        alice = {"authorization": "Bearer alice-key-0123456789ab"}
        refused = http.post("/threads", json={"agent": "deploybot", "input": "deploy the backend"}, headers=alice)
        assert refused.status_code == 403, refused.text
        assert refused.json() == {
            "error": "forbidden",
            "detail": "this key (alice) may read and approve, not operate: use a key that has it (api_keys in the "
            "API keys secret)",
        }
        launched = http.post("/threads", json={"agent": "deploybot", "input": "deploy the backend"}, headers=ops)
        assert launched.status_code == 201, launched.text
        thread_id = launched.json()["thread_id"]
        assert fold(stack.wait(thread_id)).status == "awaiting_human"
        assert (
            http.post(f"/threads/{thread_id}/responses", json={"decision": "approve"}, headers=ops).status_code == 403
        )
        paused = http.post(f"/threads/{thread_id}/pause", json={"reason": "wait"}, headers=ops)
        assert paused.status_code == 200, paused.text
        assert [e.by for e in stack.thread(thread_id).events if isinstance(e, Paused)] == ["ops-bot"]
        decided = http.post(f"/threads/{thread_id}/responses", json={"decision": "reject", "by": "x"}, headers=alice)
        assert decided.status_code == 200, decided.text
        decisions = [e.by for e in stack.thread(thread_id).events if isinstance(e, HumanResponse)]
        assert decisions == ["alice"]
    finally:
        stack.rt._secrets = saved


def test_the_door_hands_the_authorizers_context_on_as_api_gateway_does(stack: LocalStack, http: httpx.Client) -> None:
    probe = Probe()
    _install(stack, "ApiFunction", probe)
    assert http.get("/agents", headers=AUTH).status_code == 200
    (event,) = probe.events
    assert event["requestContext"]["authorizer"] == {"lambda": {"caller": "api-key", "scopes": "read operate approve"}}
