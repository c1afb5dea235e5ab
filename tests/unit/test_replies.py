"""Outbound results: what a finished triggered thread sends back, signed, retried, never failing the step."""

from __future__ import annotations

import json

import httpx
import pytest

from core.adapters.replies import HttpReplier
from core.kernel.events import Done, Failed
from core.kernel.thread import Thread, start_thread
from core.services.notify import SIGNATURE_HEADER, verify_webhook
from core.services.replies import (
    DELIVERY_HEADER,
    RecordingReplier,
    Reply,
    ReplyError,
    ReplyPolicy,
    reply_for,
    send_reply,
)
from tests.unit.conftest import FIXED_NOW

NOW = 1_735_787_045
CALLBACK = "https://shop.example.com/agent-results?token=s3cret-capability"
SLACK = "https://hooks.slack.com/commands/T0001/1234/abcd-secret"


def _thread(*, labels: dict[str, str], ended: str | None = "done") -> Thread:
    thread = start_thread("th_1", "orders", "Order ord_1001 failed.", now=FIXED_NOW, **labels)
    if ended == "done":
        return thread.extend([Done(seq=1, ts=FIXED_NOW, answer="Order ord_1001: payment declined <b>.")])
    if ended == "failed":
        return thread.extend([Failed(seq=1, ts=FIXED_NOW, reason="cancelled by alice")])
    return thread


STEPFOLD = {
    "reply_to": CALLBACK,
    "reply_format": "stepfold",
    "trigger": "webhook:shop",
    "trigger_event": "order.failed",
    "delivery_id": "evt_1",
}


def test_a_finished_thread_owes_its_callback_a_thread_ended_document() -> None:
    reply = reply_for(_thread(labels=STEPFOLD))
    assert reply is not None
    assert (reply.url, reply.format, reply.delivery_id, reply.host) == (
        CALLBACK,
        "stepfold",
        "th_1-1",
        "shop.example.com",
    )
    assert reply.document == {
        "type": "thread_ended",
        "delivery_id": "th_1-1",
        "thread_id": "th_1",
        "agent": "orders",
        "status": "done",
        "answer": "Order ord_1001: payment declined <b>.",
        "reason": None,
        "trigger": "webhook:shop",
        "trigger_event": "order.failed",
        "trigger_delivery_id": "evt_1",
    }
    assert CALLBACK not in repr(reply)


def test_a_failed_thread_reports_why_and_slack_gets_escaped_text() -> None:
    failed = reply_for(_thread(labels=STEPFOLD, ended="failed"))
    assert failed is not None
    assert (failed.document["status"], failed.document["answer"]) == ("failed", None)
    assert failed.document["reason"] == "cancelled by alice"
    slack = reply_for(_thread(labels={"reply_to": SLACK, "reply_format": "slack"}))
    assert slack is not None
    assert slack.document == {"response_type": "in_channel", "text": "Order ord_1001: payment declined &lt;b&gt;."}


@pytest.mark.parametrize(
    ("labels", "ended"),
    [({}, "done"), (STEPFOLD, None), ({"reply_to": CALLBACK, "reply_format": "carrier-pigeon"}, "done")],
)
def test_no_reply_without_a_reply_to_label_or_before_the_end(labels: dict[str, str], ended: str | None) -> None:
    assert reply_for(_thread(labels=labels, ended=ended)) is None
    assert send_reply(_thread(labels=labels, ended=ended), RecordingReplier()) is None


def _public(host: str, port: int) -> list[str]:
    """A resolver that puts every name on a public address (the tests' hosts are not in any real DNS here)."""
    return ["93.184.216.34"]


def _replier(handler: httpx.MockTransport, *, attempts: int = 3) -> HttpReplier:
    client = httpx.Client(transport=handler)
    return HttpReplier(
        "sf-secret", client=client, clock=lambda: NOW, sleep=lambda _: None, attempts=attempts, resolve=_public
    )


def test_the_callback_gets_a_signed_json_post_it_can_verify() -> None:
    seen: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    result = send_reply(_thread(labels=STEPFOLD), _replier(httpx.MockTransport(receive)))
    assert result is not None
    assert result.sent
    (request,) = seen
    assert str(request.url) == CALLBACK
    assert request.headers[DELIVERY_HEADER] == "th_1-1"
    assert verify_webhook("sf-secret", request.headers[SIGNATURE_HEADER], request.content, now=NOW)
    assert json.loads(request.content)["answer"] == "Order ord_1001: payment declined <b>."


def test_transient_failures_are_retried_and_client_errors_are_not() -> None:
    statuses = iter([503, 429, 200])
    calls: list[int] = []

    def flaky(_: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(next(statuses))

    assert send_reply(_thread(labels=STEPFOLD), _replier(httpx.MockTransport(flaky))).sent  # type: ignore[union-attr]
    assert len(calls) == 3

    gone: list[int] = []

    def missing(_: httpx.Request) -> httpx.Response:
        gone.append(1)
        return httpx.Response(404, text=f"nothing at {CALLBACK}")

    result = send_reply(_thread(labels=STEPFOLD), _replier(httpx.MockTransport(missing)))
    assert result is not None
    assert (result.sent, result.error, len(gone)) == (False, "reply to shop.example.com not delivered: HTTP 404", 1)


def test_a_transport_error_is_reported_without_the_url_or_the_secret() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    result = send_reply(_thread(labels=STEPFOLD), _replier(httpx.MockTransport(down), attempts=2))
    assert result is not None
    assert not result.sent
    assert "ConnectError" in result.error
    assert "s3cret-capability" not in result.error
    assert result.log_fields()["reply_host"] == "shop.example.com"


def test_an_unsigned_callback_reply_is_refused_but_slack_needs_no_secret() -> None:
    sent: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200)

    unsigned = HttpReplier(lambda: None, client=httpx.Client(transport=httpx.MockTransport(receive)), resolve=_public)
    result = send_reply(_thread(labels=STEPFOLD), unsigned)
    assert result is not None
    assert "no reply_signing_key" in result.error
    assert sent == []
    slack = send_reply(_thread(labels={"reply_to": SLACK, "reply_format": "slack"}), unsigned)
    assert slack is not None
    assert slack.sent
    assert SIGNATURE_HEADER not in sent[0].headers


def test_a_broken_replier_never_raises_into_the_step() -> None:
    class Broken:
        def send(self, reply: Reply) -> None:
            raise RuntimeError(f"bug while posting to {reply.url}")

    result = send_reply(_thread(labels=STEPFOLD), Broken())
    assert result is not None
    assert not result.sent
    assert "s3cret-capability" not in result.error


def test_reply_error_is_the_replier_contract() -> None:
    class Refusing:
        def send(self, reply: Reply) -> None:
            raise ReplyError(f"reply to {reply.host} refused")

    result = send_reply(_thread(labels=STEPFOLD), Refusing())
    assert result is not None
    assert result.error == "reply to shop.example.com refused"


# --- where a reply may go (issue 13: SSRF with our own signature) ------------------------------------------------


def _to(url: str, fmt: str = "stepfold") -> Thread:
    return _thread(labels={**STEPFOLD, "reply_to": url, "reply_format": fmt})


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1:8080/x", "loopback"),
        ("https://127.0.0.1/x", "loopback"),
        ("https://2130706433/x", "loopback"),  # 127.0.0.1 as one number
        ("https://0x7f.1/x", "loopback"),
        ("https://127.1/x", "loopback"),
        ("https://[::1]/x", "loopback"),
        ("https://[::ffff:127.0.0.1]/x", "loopback"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("https://[fe80::1%25eth0]/x", "link-local"),
        ("https://10.0.0.5/x", "private"),
        ("https://192.168.1.1/x", "private"),
        ("https://0.0.0.0/x", "reserved"),
        ("https://localhost/x", "local or internal name"),
        ("https://metadata/x", "local or internal name"),
        ("https://db.internal/x", "local or internal name"),
        ("http://shop.example.com/x", "https:// only"),
        ("https://attacker@shop.example.com/x", "credentials"),
        ("file:///etc/passwd", "no host"),
    ],
)
def test_a_reply_to_this_machine_or_a_private_network_is_refused_when_it_is_sent(url: str, why: str) -> None:
    # The label is data at rest (an older thread, a trigger bug, a launch that slipped through): send time decides.
    replier = RecordingReplier()
    result = send_reply(_to(url), replier)
    assert result is not None
    assert not result.sent
    assert why in result.error
    assert replier.sent == []


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/collect",
        "https://hooks.slack.com.evil.example.com/x",
        "https://notslack.com/x",
        "https://hooks.slack.com:8443/x",
    ],
)
def test_a_slack_reply_goes_only_to_slacks_own_hosts(url: str) -> None:
    replier = RecordingReplier()
    result = send_reply(_to(url, "slack"), replier)
    assert result is not None
    assert "Slack's own hosts" in result.error
    assert replier.sent == []
    assert send_reply(_to(SLACK, "slack"), replier).sent  # type: ignore[union-attr]


def test_callback_hosts_are_limited_to_the_allow_list_when_one_is_set() -> None:
    policy = ReplyPolicy(callback_hosts=("shop.example.com", "*.example.org"))
    replier = RecordingReplier()
    assert send_reply(_to(CALLBACK), replier, policy).sent  # type: ignore[union-attr]
    assert send_reply(_to("https://hooks.eu.example.org/r"), replier, policy).sent  # type: ignore[union-attr]
    refused = send_reply(_to("https://other.example.net/r"), replier, policy)
    assert refused is not None
    assert "STEPFOLD_REPLY_CALLBACK_HOSTS" in refused.error
    assert len(replier.sent) == 2


def test_loopback_is_allowed_only_through_the_explicit_local_setting() -> None:
    replier = RecordingReplier()
    assert not send_reply(_to("http://127.0.0.1:8080/x"), replier).sent  # type: ignore[union-attr]
    local = ReplyPolicy(allow_loopback=True)
    assert send_reply(_to("http://127.0.0.1:8080/x"), replier, local).sent  # type: ignore[union-attr]
    assert not send_reply(_to("https://10.0.0.5/x"), replier, local).sent  # type: ignore[union-attr]  # still private


@pytest.mark.parametrize(
    "addresses",
    [["127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"], ["93.184.216.34", "192.168.0.5"], ["::1"], ["::ffff:127.0.0.1"]],
)
def test_a_public_name_that_resolves_to_this_machine_or_a_private_network_is_not_sent_to(addresses: list[str]) -> None:
    posted: list[httpx.Request] = []

    def receive(request: httpx.Request) -> httpx.Response:
        posted.append(request)
        return httpx.Response(200)

    client = httpx.Client(transport=httpx.MockTransport(receive))
    replier = HttpReplier("sf-secret", client=client, resolve=lambda host, port: addresses)
    result = send_reply(_thread(labels=STEPFOLD), replier)
    assert result is not None
    assert not result.sent
    assert "resolves to" in (result.error or "")
    assert "public hosts only" in (result.error or "")
    assert posted == []


def test_a_name_that_does_not_resolve_is_not_sent_to() -> None:
    def nowhere(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")

    replier = HttpReplier(
        "sf-secret", client=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))), resolve=nowhere
    )
    result = send_reply(_thread(labels=STEPFOLD), replier)
    assert result is not None
    assert result.error is not None
    assert "does not resolve" in result.error
