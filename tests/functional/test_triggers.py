"""Triggers end to end: real API Gateway v2 webhooks, Scheduler inputs, EventBridge envelopes and SQS batches
into functions/triggers.py, the threads they start running through the real state machine on the local stack."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from agents import orders, standup, triage
from core.adapters.replies import HttpReplier
from core.kernel.store import ThreadNotFoundError
from core.kernel.thread import fold
from core.services.control import thread_id_for
from core.services.notify import verify_webhook
from core.services.replies import DELIVERY_HEADER
from core.services.triggers import sign_github, sign_slack, sign_stepfold
from infra.local.stack import LocalStack
from infra.local.triggers import deliver, event_envelope, fire_schedule, list_schedules, sqs_event
from tests.functional._http_events import http_event
from tests.functional.conftest import Shared

GITHUB_SECRET = "gh-functional-secret"
SLACK_SECRET = "slack-functional-secret"
STEPFOLD_SECRET = "sf-functional-secret"
ROUTE = "/webhooks/{source}"
ISSUE = {
    "action": "opened",
    "issue": {
        "number": 42,
        "title": "App crashes on login",
        "body": "Stack trace: NullPointerException in SessionStore",
        "user": {"login": "octocat"},
        "html_url": "https://github.com/acme/app/issues/42",
    },
    "repository": {"full_name": "acme/app", "private": False},
    "sender": {"login": "octocat", "type": "User"},
}


@pytest.fixture(autouse=True)
def _fresh_trigger_fakes() -> Iterator[None]:
    standup.BOARD.reset()
    orders.DESK.reset()
    yield
    standup.BOARD.reset()
    orders.DESK.reset()


@pytest.fixture
def stack(shared: Shared) -> Iterator[LocalStack]:
    """The local stack with the webhook secrets in the environment, as STEPFOLD_* variables set them locally."""
    env = {
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "STEPFOLD_GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
        "STEPFOLD_SLACK_SIGNING_SECRET": SLACK_SECRET,
        "STEPFOLD_WEBHOOK_SECRET": STEPFOLD_SECRET,
    }
    with shared.lease(env) as running:
        yield running


@pytest.fixture
def replies(stack: LocalStack) -> list[httpx.Request]:
    """Replies the step sends to callback and response URLs, caught by an ``httpx.MockTransport``."""
    caught: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        caught.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(receive))
    stack.rt.replier = HttpReplier(  # the test hosts are in no DNS here: each name resolves to a public address
        lambda: stack.rt.secrets.stepfold_webhook_secret, client=client, resolve=lambda host, port: ["93.184.216.34"]
    )
    return caught


def _post(stack: LocalStack, source: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    event = http_event("POST", ROUTE, {"source": source}, headers=headers, body=body.decode())
    result = deliver(stack, event)
    return result["statusCode"], json.loads(result["body"])


def _github(body: bytes, delivery: str, *, secret: str = GITHUB_SECRET, event: str = "issues") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "x-github-event": event,
        "x-github-delivery": delivery,
        "x-github-hook-id": "512345678",
        "x-hub-signature-256": sign_github(secret, body),
        "user-agent": "GitHub-Hookshot/a1b2c3d",
    }


def _sf(body: bytes, *, at: int | None = None, secret: str = STEPFOLD_SECRET, source: str = "shop") -> str:
    """The X-Stepfold-Signature a sender computes for POST /webhooks/<source>."""
    return sign_stepfold(secret, int(time.time()) if at is None else at, body, path=f"/webhooks/{source}")


def _executions(stack: LocalStack, thread_id: str) -> list[str]:
    sfn = stack.clients["stepfunctions"]
    found = sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    return [e["name"] for e in found if e["name"].startswith(f"{thread_id}-")]


def _all_executions(stack: LocalStack) -> list[str]:
    found = stack.clients["stepfunctions"].list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
    return [e["name"] for e in found]


# --- webhooks --------------------------------------------------------------------------------------------------


def test_a_signed_github_issue_starts_triage_once_and_a_redelivery_starts_nothing(stack: LocalStack) -> None:
    body = json.dumps(ISSUE).encode()
    delivery = str(uuid.uuid4())

    status, answer = _post(stack, "github", body, _github(body, delivery))
    assert status == 202
    assert answer == {"thread_id": answer["thread_id"], "agent": "triage"}
    thread_id = answer["thread_id"]
    final = stack.wait(thread_id)
    state = fold(final)
    assert state.status == "done"
    assert state.answer == "Issue #42: labelled bug, routed to backend, reporter acknowledged."
    assert triage.TRACKER.labels == {42: {"bug"}}
    assert final.labels["trigger"] == "webhook:github"
    assert final.labels["delivery_id"] == delivery

    runs = dict(triage.TRACKER.runs)
    status, again = _post(stack, "github", body, _github(body, delivery))
    assert (status, again) == (200, {"thread_id": thread_id, "agent": "triage", "duplicate": True})
    stack.wait_idle()
    assert _executions(stack, thread_id) == [f"{thread_id}-1"]
    assert stack.thread(thread_id).version == final.version
    assert dict(triage.TRACKER.runs) == runs


def _stale_slack(body: bytes) -> dict[str, str]:
    old = int(time.time()) - 301
    return {"x-slack-request-timestamp": str(old), "x-slack-signature": sign_slack(SLACK_SECRET, old, body)}


def _stale_stepfold(body: bytes) -> dict[str, str]:
    return {"x-stepfold-signature": _sf(body, at=int(time.time()) - 301)}


@pytest.mark.parametrize(
    ("source", "headers", "detail"),
    [
        ("github", lambda b: {k: v for k, v in _github(b, "d-1").items() if k != "x-hub-signature-256"}, "missing"),
        ("github", lambda b: _github(b, "d-1", secret="not-the-secret"), "does not match"),
        ("github", lambda b: _github(b + b" ", "d-1"), "does not match"),
        ("slack", lambda b: {}, "are required"),
        ("slack", _stale_slack, "from our clock"),
        ("shop", lambda b: {}, "X-Stepfold-Signature header is missing"),
        ("shop", _stale_stepfold, "from our clock"),
        ("shop", lambda b: {"x-stepfold-signature": _sf(b, secret="guess")}, "does not match"),
    ],
)
def test_unsigned_badly_signed_and_stale_deliveries_are_401_and_start_nothing(
    stack: LocalStack, source: str, headers: Any, detail: str
) -> None:
    payload = ISSUE if source == "github" else {"id": "evt_9", "type": "order.failed", "data": {"order_id": "ord_1001"}}
    body = json.dumps(payload).encode()
    status, answer = _post(stack, source, body, headers(body))
    assert status == 401
    assert answer["error"] == "unauthorized"
    assert detail in answer["detail"]
    assert _all_executions(stack) == []
    with pytest.raises(ThreadNotFoundError):
        stack.thread(thread_id_for("triage", "webhook:github:d-1"))


def test_unknown_sources_are_404_and_unsubscribed_events_are_accepted_and_ignored(stack: LocalStack) -> None:
    body = json.dumps(ISSUE).encode()
    assert _post(stack, "gitlab", body, _github(body, "d-2"))[0] == 404
    closed = json.dumps({**ISSUE, "action": "closed"}).encode()
    assert _post(stack, "github", closed, _github(closed, "d-3")) == (
        202,
        {"ignored": "no agent subscribes to github issues.closed"},
    )
    ping = b'{"zen":"Keep it logically awesome.","hook_id":512345678}'
    assert _post(stack, "github", ping, _github(ping, "d-4", event="ping"))[0] == 202
    wrong_route = deliver(stack, http_event("GET", ROUTE, {"source": "github"}))
    assert wrong_route["statusCode"] == 404
    assert _all_executions(stack) == []


def test_slack_url_verification_is_answered_with_the_challenge(stack: LocalStack) -> None:
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}
    ).encode()
    now = int(time.time())
    headers = {
        "content-type": "application/json",
        "x-slack-request-timestamp": str(now),
        "x-slack-signature": sign_slack(SLACK_SECRET, now, body),
    }
    assert _post(stack, "slack", body, headers) == (200, {"challenge": challenge})
    assert _all_executions(stack) == []


def test_a_slack_slash_command_gets_its_answer_posted_to_the_response_url(
    stack: LocalStack, replies: list[httpx.Request]
) -> None:
    response_url = "https://hooks.slack.com/commands/T0001/1234567890/AbCdEfGhIjKl"
    body = urlencode(
        {
            "token": "gIkuvaNzQIHg97ATvDxqgjtO",
            "team_id": "T0001",
            "channel_name": "eng",
            "user_name": "alice",
            "command": "/standup",
            "text": "",
            "response_url": response_url,
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
    ).encode()
    now = int(time.time())
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": str(now),
        "x-slack-signature": sign_slack(SLACK_SECRET, now, body),
    }
    event = http_event("POST", ROUTE, {"source": "slack"}, headers=headers, body=body, base64_body=True)
    result = deliver(stack, event)
    ack = json.loads(result["body"])
    assert result["statusCode"] == 200
    assert ack["response_type"] == "ephemeral"
    thread_id = ack["text"].split("(thread ")[1].split(")")[0]
    assert fold(stack.wait(thread_id)).status == "done"
    (reply,) = replies
    assert str(reply.url) == response_url
    assert json.loads(reply.content) == {
        "response_type": "in_channel",
        "text": "Posted the standup digest to #standup: 3 merged pull requests, 1 open incident.",
    }


def test_the_answer_goes_back_to_the_callback_url_signed(stack: LocalStack, replies: list[httpx.Request]) -> None:
    callback = "https://shop.example.com/agent-results"
    body = json.dumps(
        {
            "id": "evt_01HQ3",
            "type": "order.failed",
            "data": {"order_id": "ord_1001", "reason": "payment_declined"},
            "callback_url": callback,
        }
    ).encode()
    headers = {
        "content-type": "application/json",
        "x-stepfold-signature": _sf(body),
    }
    status, answer = _post(stack, "shop", body, headers)
    assert (status, answer["agent"]) == (202, "orders")
    final = stack.wait(answer["thread_id"])
    (reply,) = replies
    assert str(reply.url) == callback
    assert verify_webhook(STEPFOLD_SECRET, reply.headers["x-stepfold-signature"], reply.content, now=int(time.time()))
    assert reply.headers[DELIVERY_HEADER] == f"{final.id}-{final.version - 1}"
    document = json.loads(reply.content)
    assert document["status"] == "done"
    assert document["answer"] == "Order ord_1001: payment declined; asked the customer to update their card."
    assert (document["trigger"], document["trigger_delivery_id"]) == ("webhook:shop", "evt_01HQ3")


# --- schedules -------------------------------------------------------------------------------------------------


def test_a_scheduled_time_delivered_twice_starts_one_thread(stack: LocalStack) -> None:
    monday = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
    first = fire_schedule(stack, "standup-weekdays", monday)
    again = fire_schedule(stack, "standup-weekdays", monday)
    ((started,), (repeated,)) = first["threads"], again["threads"]
    assert (started["agent"], started["created"], repeated["created"]) == ("standup", True, False)
    assert repeated["thread_id"] == started["thread_id"]
    final = stack.wait(started["thread_id"])
    assert fold(final).answer == (
        "Posted the standup digest for Monday 2025-01-06 to #standup: 3 merged pull requests, 1 open incident."
    )
    assert len(standup.BOARD.posts) == 1
    stack.wait_idle()
    assert _executions(stack, started["thread_id"]) == [f"{started['thread_id']}-1"]

    tuesday = fire_schedule(stack, "standup-weekdays", datetime(2025, 1, 7, 9, 0, tzinfo=UTC))
    assert tuesday["threads"][0]["thread_id"] != started["thread_id"]
    stack.wait(tuesday["threads"][0]["thread_id"])


def test_an_unknown_schedule_is_an_error_for_scheduler_to_retry_and_dead_letter(stack: LocalStack) -> None:
    with pytest.raises(Exception, match="no schedule 'nightly'"):
        deliver(stack, {"schedule": "nightly", "scheduled_time": "2025-01-06T09:00:00Z"})


def test_the_local_schedule_listing_reads_the_declarations(stack: LocalStack) -> None:
    (row,) = list_schedules(stack.rt.agents, datetime(2025, 1, 3, 10, 0, tzinfo=UTC))
    assert row.as_dict() == {
        "name": "standup-weekdays",
        "agent": "standup",
        "expression": "cron(0 9 ? * MON-FRI *)",
        "timezone": "UTC",
        "next_fire": "2025-01-06T09:00:00Z",
        "previous_fire": "2025-01-03T09:00:00Z",
    }


# --- EventBridge rules and SQS ---------------------------------------------------------------------------------


def test_an_eventbridge_event_matching_a_rule_starts_the_subscribed_agent(stack: LocalStack) -> None:
    event = event_envelope(
        "order.failed",
        "shop.checkout",
        {"order_id": "ord_1001", "reason": "payment_declined", "amount": 42.5},
        resources=["arn:aws:states:us-east-1:123456789012:execution:checkout:ord_1001"],
    )
    result = deliver(stack, event)
    ((started,),) = [result["threads"]]
    assert started["agent"] == "orders"
    final = stack.wait(started["thread_id"])
    assert fold(final).answer == "Order ord_1001: payment declined; asked the customer to update their card."
    assert [order for order, _ in orders.DESK.notices] == ["ord_1001"]
    assert final.labels["trigger"] == "rule:orders-order-failed"
    assert final.labels["delivery_id"] == event["id"]

    assert deliver(stack, event)["threads"][0]["created"] is False  # EventBridge retried the same event id
    shipped = event_envelope("order.shipped", "shop.checkout", {"order_id": "ord_1001"})
    assert deliver(stack, shipped) == {"ignored": "no agent subscribes to this"}
    elsewhere = event_envelope("order.failed", "billing.invoices", {"order_id": "ord_1001"})
    assert deliver(stack, elsewhere) == {"ignored": "no agent subscribes to this"}


def test_an_sqs_batch_reports_only_the_records_that_failed(stack: LocalStack) -> None:
    good = event_envelope("order.failed", "shop.web", {"order_id": "ord_1001", "reason": "payment_declined"})
    issue = json.dumps(ISSUE)
    forged = {"webhook": "github", "headers": _github(issue.encode(), "d-forged", secret="nope"), "body": issue}
    unknown = {"schedule": "nightly", "scheduled_time": "2025-01-06T09:00:00Z"}
    batch = sqs_event([json.dumps(good), "{not json", json.dumps(forged), "[1, 2]", json.dumps(unknown)])
    records = batch["Records"]

    result = deliver(stack, batch)

    bad = [r["messageId"] for r in records[1:]]
    assert result == {"batchItemFailures": [{"itemIdentifier": m} for m in bad]}
    started = thread_id_for("orders", f"event:{good['id']}")
    assert fold(stack.wait(started)).status == "done"
    assert _all_executions(stack) == [f"{started}-1"]
    with pytest.raises(ThreadNotFoundError):
        stack.thread(thread_id_for("triage", "webhook:github:d-forged"))


def test_a_queued_webhook_is_checked_against_when_sqs_received_it(stack: LocalStack) -> None:
    body = json.dumps({"id": "evt_q", "type": "order.failed", "data": {"order_id": "ord_1001"}})
    signed_at = int(time.time()) - 3600  # signed an hour ago, queued right then, processed now
    message = {
        "webhook": "shop",
        "headers": {"x-stepfold-signature": _sf(body.encode(), at=signed_at)},
        "body": body,
    }
    assert deliver(stack, sqs_event([json.dumps(message)], sent_at=signed_at + 2)) == {"batchItemFailures": []}
    assert fold(stack.wait(thread_id_for("orders", "webhook:shop:evt_q"))).status == "done"
    late = sqs_event([json.dumps({**message, "body": body})], sent_at=signed_at + 600)
    assert len(deliver(stack, late)["batchItemFailures"]) == 1


# --- issue 13: what a captured delivery or a malformed request can do -------------------------------------------


def _raw_post(stack: LocalStack, source: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
    """The handler's whole v2 result (status, headers, body) for a webhook POST through API Gateway's event."""
    event = http_event("POST", ROUTE, {"source": source}, headers=headers, body=body.decode("utf-8", "surrogatepass"))
    result: dict[str, Any] = deliver(stack, event)
    return result


def test_a_captured_github_delivery_replayed_with_a_new_delivery_id_starts_nothing(stack: LocalStack) -> None:
    body = json.dumps(ISSUE).encode()
    status, first = _post(stack, "github", body, _github(body, "d-original"))
    assert status == 202
    thread_id = first["thread_id"]
    stack.wait(thread_id)

    # X-GitHub-Delivery is not signed: an attacker with a captured request can put anything there.
    for forged in ("d-replay-1", str(uuid.uuid4()), "x" * 200):
        status, again = _post(stack, "github", body, _github(body, forged))
        assert (status, again) == (200, {"thread_id": thread_id, "agent": "triage", "duplicate": True})
    stack.wait_idle()
    assert _all_executions(stack) == [f"{thread_id}-1"]
    assert stack.thread(thread_id).labels["delivery_id"] == "d-original"


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u0663\u0663", "9" * 5000])
def test_a_slack_timestamp_that_is_not_ascii_digits_is_401_not_500(stack: LocalStack, timestamp: str) -> None:
    body = b'{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention"}}'
    headers = {"content-type": "application/json", "x-slack-request-timestamp": timestamp, "x-slack-signature": "v0=0"}
    status, answer = _post(stack, "slack", body, headers)
    assert (status, answer["error"]) == (401, "unauthorized")
    assert "X-Slack-Request-Timestamp must be unix seconds: 1-12 ASCII digits" in answer["detail"]


@pytest.mark.parametrize("timestamp", ["\u00b2", "9" * 5000])
def test_a_stepfold_signature_with_a_non_ascii_or_huge_t_is_401_not_500(stack: LocalStack, timestamp: str) -> None:
    body = json.dumps({"id": "evt_t", "type": "order.failed", "data": {}}).encode()
    status, answer = _post(stack, "shop", body, {"x-stepfold-signature": f"t={timestamp},v2=00"})
    assert (status, answer["error"]) == (401, "unauthorized")
    assert "unix seconds" in answer["detail"]


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u0663\u0663", "9" * 5000])
def test_an_old_form_v1_stepfold_signature_with_a_non_ascii_or_huge_t_is_401_not_500(
    stack: LocalStack, timestamp: str
) -> None:
    """The header form senders used before v2 (``t=<unix>,v1=<hex>``) with a ``t`` that ``int()`` cannot take (a
    superscript two, Arabic-Indic digits, 5,000 digits: issue 13, 3b). The v2 cases above never reach the parsing of
    ``t`` in code that still reads v1; this one does, and was a 500. It is refused as a v1 signature, saying how to
    sign v2, and starts nothing."""
    body = json.dumps({"id": "evt_t1", "type": "order.failed", "data": {}}).encode()
    headers = {"content-type": "application/json", "x-stepfold-signature": f"t={timestamp},v1=00"}
    status, answer = _post(stack, "shop", body, headers)
    assert (status, answer["error"]) == (401, "unauthorized")
    assert answer["detail"].startswith("X-Stepfold-Signature v1 (timestamp and body only) is not accepted: sign v2")
    assert _all_executions(stack) == []


def test_a_stepfold_delivery_signed_for_one_source_is_refused_on_another(stack: LocalStack) -> None:
    """Every non-GitHub, non-Slack source shares one secret: the signed path is what tells them apart."""
    body = json.dumps({"id": "evt_path", "type": "order.failed", "data": {"order_id": "ord_1001"}}).encode()
    signed_for_billing = {"content-type": "application/json", "x-stepfold-signature": _sf(body, source="billing")}
    status, answer = _post(stack, "shop", body, signed_for_billing)
    assert (status, answer["error"]) == (401, "unauthorized")
    assert "signed POST /webhooks/shop" in answer["detail"]
    assert _all_executions(stack) == []


def test_a_v1_stepfold_signature_is_refused_with_how_to_sign_v2(stack: LocalStack) -> None:
    from core.services.notify import sign_webhook  # noqa: PLC0415 - the old scheme, only to show it is refused

    body = json.dumps({"id": "evt_v1", "type": "order.failed", "data": {}}).encode()
    status, answer = _post(
        stack, "shop", body, {"x-stepfold-signature": sign_webhook(STEPFOLD_SECRET, int(time.time()), body)}
    )
    assert status == 401
    assert "sign v2" in answer["detail"]


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b'{"id":"evt_deep","type":"order.failed","data":' + b"[" * 20_000 + b"]" * 20_000 + b"}", "nested deeper"),
        (b'{"id":"evt_sur","type":"order.failed","data":{"note":"\\ud800"}}', "unpaired UTF-16 surrogate"),
    ],
)
def test_a_signed_webhook_too_deep_or_with_a_lone_surrogate_is_400_and_starts_nothing(
    stack: LocalStack, body: bytes, detail: str
) -> None:
    status, answer = _post(stack, "shop", body, {"content-type": "application/json", "x-stepfold-signature": _sf(body)})
    assert (status, answer["error"]) == (400, "bad_request")
    assert detail in answer["detail"]
    assert _all_executions(stack) == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/results", "https://169.254.169.254/latest/meta-data/"])
def test_a_callback_url_on_loopback_or_link_local_is_refused(stack: LocalStack, url: str) -> None:
    body = json.dumps({"id": "evt_cb", "type": "order.failed", "data": {}, "callback_url": url}).encode()
    status, answer = _post(stack, "shop", body, {"content-type": "application/json", "x-stepfold-signature": _sf(body)})
    assert (status, answer["error"]) == (400, "bad_request")
    assert "loopback or link-local" in answer["detail"]
    assert _all_executions(stack) == []


def test_the_unknown_source_404_lists_no_configured_source(stack: LocalStack) -> None:
    status, answer = _post(stack, "gitlab", b"{}", {"content-type": "application/json"})
    assert status == 404
    for configured in ("github", "slack", "shop", "stepfold"):
        assert configured not in answer["detail"].replace("'gitlab'", "")


def test_webhook_answers_are_json_with_nosniff(stack: LocalStack) -> None:
    body = json.dumps(ISSUE).encode()
    for result in (
        _raw_post(stack, "github", body, _github(body, "d-nosniff")),
        _raw_post(stack, "github", body, {}),
        _raw_post(stack, "gitlab", body, {}),
        deliver(stack, http_event("GET", ROUTE, {"source": "github"})),
    ):
        headers = {k.lower(): v for k, v in result["headers"].items()}
        assert headers["content-type"] == "application/json"
        assert headers["x-content-type-options"] == "nosniff"


def test_a_body_flagged_base64_that_is_not_base64_is_400(stack: LocalStack) -> None:
    event = http_event(
        "POST", ROUTE, {"source": "github"}, headers={"content-type": "application/octet-stream"}, body="x"
    )
    event["body"], event["isBase64Encoded"] = "abc", True  # 3 characters: incorrect padding
    result = deliver(stack, event)
    assert result["statusCode"] == 400
    assert "not valid base64" in json.loads(result["body"])["detail"]
