"""Triggers (Factor 11), pure: signatures, event patterns, schedule expressions, declarations, one deduped launch."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from agents import AGENTS, TRIGGERS, orders, standup, triage
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.agent import Agent
from core.kernel.events import HumanRequest, UserInput
from core.kernel.thread import fold
from core.services.control import ControlError
from core.services.notify import sign_webhook
from core.services.triggers import (
    BadDeliveryError,
    Challenge,
    Delivery,
    EventRule,
    Launcher,
    Schedule,
    SignatureError,
    UnknownScheduleError,
    UnknownSourceError,
    Webhook,
    WebhookAccepted,
    WebhookAnswer,
    WebhookRefused,
    WebhookSecrets,
    answer_webhook,
    matches,
    parse_schedule_expression,
    read_webhook,
    schedules,
    sign_github,
    sign_slack,
    sign_stepfold,
    start_event,
    start_schedule,
    start_webhook,
    subscriptions,
    validate_pattern,
    verify_github,
    verify_slack,
    verify_stepfold,
)
from tests.unit.conftest import FIXED_NOW, Driver

NOW = 1_735_787_045
SECRETS = WebhookSecrets(github="gh-secret", slack="slack-secret", stepfold="sf-secret")
ISSUE = {
    "action": "opened",
    "issue": {"number": 7, "title": "App crashes on login", "body": "NullPointerException", "user": {"login": "octo"}},
    "repository": {"full_name": "acme/app"},
}


class Starts:
    """The execution starter, counting (thread, seq) starts."""

    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []

    def start(self, thread_id: str, seq: int) -> None:
        self.started.append((thread_id, seq))


@pytest.fixture(autouse=True)
def _fresh_fakes() -> Iterator[None]:
    standup.BOARD.reset()
    orders.DESK.reset()
    yield
    standup.BOARD.reset()
    orders.DESK.reset()


@pytest.fixture
def launcher() -> Launcher:
    return Launcher(MemoryThreadStore(), Starts(), AGENTS, lambda: FIXED_NOW)


def _github(body: bytes, *, event: str = "issues", delivery: str = "d-1", secret: str = "gh-secret") -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign_github(secret, body),
        "Content-Type": "application/json",
    }


def _slack(body: bytes, *, at: int = NOW, content_type: str = "application/json") -> dict[str, str]:
    return {
        "x-slack-request-timestamp": str(at),
        "x-slack-signature": sign_slack("slack-secret", at, body),
        "content-type": content_type,
    }


def _envelope(**fields: Any) -> bytes:
    return json.dumps({"id": "evt_1", "type": "order.failed", "data": {"order_id": "ord_1001"}, **fields}).encode()


def _sf(body: bytes, *, at: int = NOW, secret: str = "sf-secret", path: str = "/webhooks/shop") -> str:
    return sign_stepfold(secret, at, body, path=path)


# --- signatures ------------------------------------------------------------------------------------------------


def test_github_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = json.dumps(ISSUE).encode()
    verify_github("gh-secret", sign_github("gh-secret", body), body)
    verify_github("gh-secret", sign_github("gh-secret", body).upper().replace("SHA256=", "sha256="), body)


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        (None, b"{}", "missing"),
        ("", b"{}", "missing"),
        ("sha1=abc", b"{}", "not of the form sha256=<hex>"),
        ("sha256=", b"{}", "not of the form"),
        (sign_github("other-secret", b"{}"), b"{}", "does not match"),
        (sign_github("gh-secret", b"{}"), b'{"tampered":1}', "does not match"),
        ("sha256=\u00e9\u00e9", b"{}", "does not match"),
    ],
)
def test_github_signature_refusals_say_why(header: str | None, body: bytes, message: str) -> None:
    with pytest.raises(SignatureError, match=message) as refused:
        verify_github("gh-secret", header, body)
    assert type(refused.value) is SignatureError


def test_slack_signature_covers_version_timestamp_and_body() -> None:
    body = b"token=x&command=%2Fstandup"
    signature = sign_slack("slack-secret", NOW, body)
    assert signature.startswith("v0=")
    verify_slack("slack-secret", str(NOW), signature, body, now=NOW)
    verify_slack("slack-secret", str(NOW), signature, body, now=NOW + 300)  # exactly five minutes: still fresh
    with pytest.raises(SignatureError, match="does not match"):
        verify_slack("slack-secret", str(NOW + 1), signature, body, now=NOW)  # the timestamp is signed too


@pytest.mark.parametrize(
    ("timestamp", "signature", "now", "message"),
    [
        (None, "v0=abc", NOW, "headers are required"),
        (str(NOW), None, NOW, "headers are required"),
        ("yesterday", "v0=abc", NOW, "unix seconds"),
        (str(NOW - 301), None, NOW, "headers are required"),
        (str(NOW - 301), "v0=abc", NOW, "over 300 s"),
        (str(NOW + 301), "v0=abc", NOW, "over 300 s"),
        (str(NOW), "v1=abc", NOW, "not of the form v0=<hex>"),
        (str(NOW), "v0=abc", NOW, "does not match"),
    ],
)
def test_slack_refuses_missing_stale_and_wrong(
    timestamp: str | None, signature: str | None, now: int, message: str
) -> None:
    with pytest.raises(SignatureError, match=message):
        verify_slack("slack-secret", timestamp, signature, b"{}", now=now)


def test_a_stale_slack_request_is_refused_even_when_correctly_signed() -> None:
    body = b'{"type":"event_callback"}'
    old = NOW - 301
    with pytest.raises(SignatureError, match="301 s from our clock"):
        verify_slack("slack-secret", str(old), sign_slack("slack-secret", old, body), body, now=NOW)


def test_stepfold_signature_covers_method_path_timestamp_and_body() -> None:
    body = _envelope()
    header = _sf(body)
    assert header.startswith(f"t={NOW},v2=")
    verify_stepfold("sf-secret", header, body, path="/webhooks/shop", now=NOW + 299)
    with pytest.raises(SignatureError, match="signed POST /webhooks/billing"):
        verify_stepfold("sf-secret", header, body, path="/webhooks/billing", now=NOW)  # replayed to another source
    with pytest.raises(SignatureError, match="does not match"):
        verify_stepfold("sf-secret", header, body, path="/webhooks/shop", method="PUT", now=NOW)
    forged_time = header.replace(f"t={NOW}", f"t={NOW + 60}")
    with pytest.raises(SignatureError, match="does not match"):
        verify_stepfold("sf-secret", forged_time, body, path="/webhooks/shop", now=NOW)


def test_a_v1_signature_over_timestamp_and_body_only_is_refused_saying_how_to_sign() -> None:
    body = _envelope()
    with pytest.raises(SignatureError, match=r"v1 \(timestamp and body only\) is not accepted: sign v2"):
        verify_stepfold("sf-secret", sign_webhook("sf-secret", NOW, body), body, path="/webhooks/shop", now=NOW)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing"),
        ("v2=abc", "not of the form t=<unix seconds>,v2=<hex>"),
        (f"t={NOW}", "not of the form"),
        (f"t={NOW},t={NOW},v2=abc", "not of the form"),
        ("t=soon,v2=abc", "unix seconds"),
        ("t=\u00b2,v2=abc", "unix seconds"),  # '²'.isdigit() is True, int('²') raises
        ("t=\u0663\u0663,v2=abc", "unix seconds"),  # Arabic-Indic digits
        (f"t={'9' * 5000},v2=abc", "unix seconds"),  # int() of 5,000 digits raises
        (_sf(b"{}", at=NOW - 301), "over 300 s"),
        (_sf(b"{}", secret="other"), "does not match"),
        (_sf(b"{ }"), "does not match"),
    ],
)
def test_stepfold_refuses_missing_malformed_stale_and_wrong(header: str | None, message: str) -> None:
    with pytest.raises(SignatureError, match=message) as refused:
        verify_stepfold("sf-secret", header, b"{}", path="/webhooks/shop", now=NOW)
    assert type(refused.value) is SignatureError


def test_stepfold_accepts_any_of_several_v2_values_while_a_secret_rotates() -> None:
    old, new = _sf(b"{}", secret="old"), _sf(b"{}")
    verify_stepfold("sf-secret", f"{old},v2={new.rsplit('v2=', 1)[1]}", b"{}", path="/webhooks/shop", now=NOW)


@pytest.mark.parametrize("timestamp", ["\u00b2", "\u0663", "1\u00b2", "9" * 5000, "-1", "+1735787045", " "])
def test_a_slack_timestamp_that_is_not_ascii_unix_seconds_is_a_signature_refusal_not_a_crash(timestamp: str) -> None:
    with pytest.raises(SignatureError, match="unix seconds: 1-12 ASCII digits") as refused:
        verify_slack("slack-secret", timestamp, "v0=abc", b"{}", now=NOW)
    assert type(refused.value) is SignatureError


# --- reading deliveries ----------------------------------------------------------------------------------------


def test_github_issue_webhook_is_read_as_issues_opened_with_its_delivery_id() -> None:
    body = json.dumps(ISSUE).encode()
    delivery = read_webhook("github", _github(body), body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert isinstance(delivery, Delivery)
    assert (delivery.source, delivery.event, delivery.delivery_id, delivery.payload) == (
        "github",
        "issues.opened",
        "d-1",
        ISSUE,
    )


def test_a_github_delivery_is_keyed_by_its_signed_body_not_its_unsigned_delivery_id() -> None:
    body = json.dumps(ISSUE).encode()
    first = read_webhook("github", _github(body, delivery="d-1"), body, agents=AGENTS, secrets=SECRETS, now=NOW)
    replay = read_webhook("github", _github(body, delivery="d-2"), body, agents=AGENTS, secrets=SECRETS, now=NOW)
    other = json.dumps({**ISSUE, "action": "edited"}).encode()
    edited = read_webhook("github", _github(other, delivery="d-1"), other, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert isinstance(first, Delivery)
    assert isinstance(replay, Delivery)
    assert isinstance(edited, Delivery)
    assert first.key == replay.key
    assert first.key.startswith("webhook:github:sha256:")
    assert edited.key != first.key


def test_github_events_without_an_action_and_form_encoded_payloads() -> None:
    body = b'{"ref":"refs/heads/main"}'
    delivery = read_webhook("github", _github(body, event="push"), body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert isinstance(delivery, Delivery)
    assert delivery.event == "push"
    form = urlencode({"payload": json.dumps(ISSUE)}).encode()
    headers = {**_github(form), "Content-Type": "application/x-www-form-urlencoded"}
    read = read_webhook("github", headers, form, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert isinstance(read, Delivery)
    assert (read.event, read.payload) == ("issues.opened", ISSUE)


def test_the_signature_is_checked_before_the_body_is_parsed() -> None:
    body = b"not json"
    with pytest.raises(SignatureError):
        read_webhook("github", _github(body, secret="wrong"), body, agents=AGENTS, secrets=SECRETS, now=NOW)
    with pytest.raises(BadDeliveryError, match="not valid JSON"):
        read_webhook("github", _github(body), body, agents=AGENTS, secrets=SECRETS, now=NOW)


def test_a_github_delivery_needs_its_event_and_delivery_id() -> None:
    body = b"{}"
    headers = _github(body)
    del headers["X-GitHub-Delivery"]
    with pytest.raises(BadDeliveryError, match="X-GitHub-Delivery"):
        read_webhook("github", headers, body, agents=AGENTS, secrets=SECRETS, now=NOW)


def test_unknown_sources_and_sources_without_a_secret_are_not_found() -> None:
    with pytest.raises(UnknownSourceError, match="no webhook source 'gitlab' is enabled here") as unknown:
        read_webhook("gitlab", {}, b"{}", agents=AGENTS, secrets=SECRETS, now=NOW)
    assert unknown.value.reason == "no webhook source 'gitlab'; known: github, shop, slack, stepfold"  # the log's
    with pytest.raises(UnknownSourceError, match="no webhook source 'github' is enabled here") as refused:
        read_webhook("github", {}, b"{}", agents=AGENTS, secrets=WebhookSecrets(), now=NOW)
    assert "add github_webhook_secret to the stepfold secret" in refused.value.reason
    assert type(refused.value) is UnknownSourceError


def test_the_unknown_source_answer_names_no_configured_source(launcher: Launcher) -> None:
    got = answer_webhook(launcher, "gitlab", {}, b"{}", secrets=SECRETS, now=NOW)
    assert isinstance(got, WebhookRefused)
    assert type(got.error) is UnknownSourceError
    assert not {"shop", "slack", "stepfold"} & set(re.findall(r"[a-z]+", str(got.error)))
    assert "known: github, shop, slack, stepfold" in got.reason


def test_slack_url_verification_is_a_challenge_once_signed() -> None:
    body = b'{"type":"url_verification","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","token":"x"}'
    read = read_webhook("slack", _slack(body), body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert read == Challenge("3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P")
    with pytest.raises(SignatureError):
        read_webhook(
            "slack", {**_slack(body), "x-slack-signature": "v0=00"}, body, agents=AGENTS, secrets=SECRETS, now=NOW
        )


def test_a_slack_slash_command_replies_to_its_response_url() -> None:
    form = {
        "command": "/standup",
        "text": "short please",
        "user_name": "alice",
        "channel_name": "eng",
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "response_url": "https://hooks.slack.com/commands/T0001/1234/abcd",
    }
    body = urlencode(form).encode()
    read = read_webhook(
        "slack",
        _slack(body, content_type="application/x-www-form-urlencoded"),
        body,
        agents=AGENTS,
        secrets=SECRETS,
        now=NOW,
    )
    assert isinstance(read, Delivery)
    assert (read.event, read.delivery_id, read.reply_format) == ("/standup", form["trigger_id"], "slack")
    assert read.reply_to == form["response_url"]

    form["response_url"] = "https://evil.example.com/collect"
    body = urlencode(form).encode()
    with pytest.raises(BadDeliveryError, match=r"slack\.com"):
        read_webhook(
            "slack",
            _slack(body, content_type="application/x-www-form-urlencoded"),
            body,
            agents=AGENTS,
            secrets=SECRETS,
            now=NOW,
        )


def test_slack_events_api_callbacks_are_named_by_their_inner_type() -> None:
    body = json.dumps(
        {"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention", "text": "hi"}}
    ).encode()
    read = read_webhook("slack", _slack(body), body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert isinstance(read, Delivery)
    assert (read.event, read.delivery_id) == ("app_mention", "Ev1")


def test_our_envelope_carries_id_type_and_an_https_callback() -> None:
    body = _envelope(callback_url="https://shop.example.com/agent-results")
    headers = {"X-Stepfold-Signature": _sf(body)}
    read = read_webhook("shop", headers, body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert isinstance(read, Delivery)
    assert (read.source, read.event, read.delivery_id) == ("shop", "order.failed", "evt_1")
    assert (read.reply_to, read.reply_format) == ("https://shop.example.com/agent-results", "stepfold")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"type": ""}, 'no "type"'),
        ({"id": None}, "missing or not a short printable id"),
        ({"id": "x" * 201}, "missing or not a short printable id"),
        ({"callback_url": "http://shop.example.com/hook"}, "https://"),
        ({"callback_url": "file:///etc/passwd"}, "https://"),
        ({"callback_url": 7}, "string URL"),
    ],
)
def test_a_bad_envelope_is_a_bad_request(fields: dict[str, Any], message: str) -> None:
    body = _envelope(**fields)
    headers = {"X-Stepfold-Signature": _sf(body)}
    with pytest.raises(BadDeliveryError, match=message) as refused:
        read_webhook("shop", headers, body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert type(refused.value) is BadDeliveryError


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "https://localhost./hook",
        "https://api.localhost/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://[fe80::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://127.1/hook",
        "https://2130706433/hook",
        "https://0x7f.1/hook",
    ],
)
def test_a_callback_url_on_loopback_or_link_local_is_refused_in_production(url: str) -> None:
    body = _envelope(callback_url=url)
    headers = {"X-Stepfold-Signature": _sf(body)}
    with pytest.raises(BadDeliveryError, match="loopback or link-local") as refused:
        read_webhook("shop", headers, body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert type(refused.value) is BadDeliveryError


def test_the_local_stack_may_allow_a_loopback_callback_explicitly() -> None:
    body = _envelope(callback_url="http://127.0.0.1:9000/results")
    headers = {"X-Stepfold-Signature": _sf(body)}
    read = read_webhook("shop", headers, body, agents=AGENTS, secrets=SECRETS, now=NOW, allow_loopback=True)
    assert isinstance(read, Delivery)
    assert read.reply_to == "http://127.0.0.1:9000/results"


def test_a_slack_response_url_on_loopback_is_refused() -> None:
    form = {"command": "/standup", "trigger_id": "t-1", "response_url": "http://localhost:3000/commands"}
    body = urlencode(form).encode()
    with pytest.raises(BadDeliveryError, match="loopback or link-local"):
        read_webhook(
            "slack",
            _slack(body, content_type="application/x-www-form-urlencoded"),
            body,
            agents=AGENTS,
            secrets=SECRETS,
            now=NOW,
        )


@pytest.mark.parametrize("url", ["https://[::1/hook", "https://[not-an-ip]/x"])
def test_a_callback_url_python_cannot_even_split_is_a_bad_request(url: str) -> None:
    body = _envelope(callback_url=url)
    with pytest.raises(BadDeliveryError, match="not a valid URL"):
        read_webhook("shop", {"X-Stepfold-Signature": _sf(body)}, body, agents=AGENTS, secrets=SECRETS, now=NOW)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested deeper than 64 levels"),
        (b'{"id": "evt_1", "type": "order.failed", "data": ' + b"[" * 100 + b"]" * 100 + b"}", "nested deeper"),
        (b'{"id": "evt_1", "type": "order.failed", "data": "\\ud800"}', "unpaired UTF-16 surrogate"),
        (b'{"id": "evt_1", "type": "order.failed", "data": {"\\udfff": 1}}', "unpaired UTF-16 surrogate"),
        (b"\xff\xfe", "not valid UTF-8"),
    ],
)
def test_a_signed_body_too_deep_or_with_a_lone_surrogate_is_a_bad_delivery(body: bytes, message: str) -> None:
    headers = {"X-Stepfold-Signature": _sf(body)}
    with pytest.raises(BadDeliveryError, match=message) as refused:
        read_webhook("shop", headers, body, agents=AGENTS, secrets=SECRETS, now=NOW)
    assert type(refused.value) is BadDeliveryError


# --- EventBridge patterns --------------------------------------------------------------------------------------

ORDER_FAILED = {
    "version": "0",
    "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
    "detail-type": "order.failed",
    "source": "shop.checkout",
    "account": "123456789012",
    "time": "2025-01-06T08:59:00Z",
    "region": "us-east-1",
    "resources": ["arn:aws:states:us-east-1:123456789012:execution:checkout:ord_1001"],
    "detail": {"order_id": "ord_1001", "reason": "payment_declined", "amount": 42.5, "retry": False},
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ({"detail-type": ["order.failed"]}, True),
        ({"detail-type": ["order.shipped", "order.failed"]}, True),
        ({"detail-type": ["order.shipped"]}, False),
        ({"source": [{"prefix": "shop."}]}, True),
        ({"source": [{"prefix": "billing."}]}, False),
        ({"detail": {"order_id": [{"exists": True}]}}, True),
        ({"detail": {"coupon": [{"exists": True}]}}, False),
        ({"detail": {"coupon": [{"exists": False}]}}, True),
        ({"detail": {"order_id": [{"exists": False}]}}, False),
        ({"detail": [{"exists": True}]}, False),  # exists matches leaves only, as in EventBridge
        ({"detail": {"amount": [42.5]}}, True),
        ({"detail": {"retry": [False]}}, True),
        ({"detail": {"retry": [0]}}, False),  # false is not 0
        ({"detail": {"reason": ["payment_declined"], "amount": [1]}}, False),  # AND across fields
        ({"resources": [{"prefix": "arn:aws:states:"}]}, True),  # any element of an array
        ({"detail": {"missing": [None]}}, False),
        ({"detail-type": ["order.failed"], "detail": {"order": {"id": ["x"]}}}, False),
    ],
)
def test_patterns_match_like_eventbridge(pattern: dict[str, Any], expected: bool) -> None:
    validate_pattern(pattern)
    assert matches(pattern, ORDER_FAILED) is expected


def test_null_matches_a_present_null_only() -> None:
    assert matches({"a": [None]}, {"a": None})
    assert not matches({"a": [None]}, {})


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ({}, "non-empty object"),
        ({"source": "shop"}, "non-empty list"),
        ({"source": []}, "non-empty list"),
        ({"source": [{"anything-but": "x"}]}, "supported operators are prefix and exists"),
        ({"source": [{"prefix": 1}]}, "prefix takes a string"),
        ({"detail": {"x": [{"exists": "yes"}]}}, "detail.x: exists takes true or false"),
        ({"source": [["a"]]}, "nested lists"),
    ],
)
def test_patterns_outside_the_subset_are_refused_at_declaration(pattern: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EventRule(pattern)


# --- schedule expressions --------------------------------------------------------------------------------------

WEEKDAYS_9 = Schedule("cron(0 9 ? * MON-FRI *)", "digest", name="digest")


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (datetime(2025, 1, 3, 8, 0, tzinfo=UTC), datetime(2025, 1, 3, 9, 0, tzinfo=UTC)),  # Friday before nine
        (datetime(2025, 1, 3, 9, 0, tzinfo=UTC), datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),  # Friday at nine: Monday
        (datetime(2025, 1, 4, 12, 0, tzinfo=UTC), datetime(2025, 1, 6, 9, 0, tzinfo=UTC)),  # Saturday
        (datetime(2024, 12, 31, 23, 59, tzinfo=UTC), datetime(2025, 1, 1, 9, 0, tzinfo=UTC)),  # over the year end
    ],
)
def test_weekday_mornings_fire_monday_to_friday_at_nine(after: datetime, expected: datetime) -> None:
    assert WEEKDAYS_9.next_fire(after) == expected
    assert WEEKDAYS_9.fires_at(expected)
    assert WEEKDAYS_9.previous_fire(expected) == expected


def test_the_last_fire_before_a_monday_morning_is_friday() -> None:
    assert WEEKDAYS_9.previous_fire(datetime(2025, 1, 6, 8, 59, tzinfo=UTC)) == datetime(2025, 1, 3, 9, 0, tzinfo=UTC)
    assert not WEEKDAYS_9.fires_at(datetime(2025, 1, 4, 9, 0, tzinfo=UTC))


def test_a_schedule_in_a_timezone_fires_at_local_time_across_daylight_saving() -> None:
    berlin = Schedule("cron(0 9 ? * MON-FRI *)", name="b", timezone="Europe/Berlin")
    assert berlin.next_fire(datetime(2025, 1, 6, 0, 0, tzinfo=UTC)) == datetime(2025, 1, 6, 8, 0, tzinfo=UTC)
    assert berlin.next_fire(datetime(2025, 7, 7, 0, 0, tzinfo=UTC)) == datetime(2025, 7, 7, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("cron(*/15 * * * ? *)", datetime(2025, 1, 1, 10, 7, tzinfo=UTC), datetime(2025, 1, 1, 10, 15, tzinfo=UTC)),
        ("cron(0 12 1 JAN,JUL ? *)", datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 7, 1, 12, 0, tzinfo=UTC)),
        ("cron(30 6 ? * SUN 2026)", datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 4, 6, 30, tzinfo=UTC)),
        ("cron(0 0/6 * * ? *)", datetime(2025, 1, 1, 6, 0, tzinfo=UTC), datetime(2025, 1, 1, 12, 0, tzinfo=UTC)),
        ("cron(0 9 29 2 ? 2025)", datetime(2025, 1, 1, tzinfo=UTC), None),  # no 29 February in 2025
        ("at(2025-03-01T10:00:00)", datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 3, 1, 10, 0, tzinfo=UTC)),
        ("at(2025-03-01T10:00:00)", datetime(2025, 4, 1, tzinfo=UTC), None),
        ("rate(5 minutes)", datetime(2025, 1, 1, tzinfo=UTC), None),
    ],
)
def test_schedule_expressions_evaluate_like_scheduler(
    expression: str, after: datetime, expected: datetime | None
) -> None:
    assert Schedule(expression, name="x").next_fire(after) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 9 * * MON-FRI", "write cron"),
        ("cron(0 9 * * MON-FRI)", "six fields"),
        ("cron(0 9 * * MON-FRI *)", "exactly one of day-of-month and day-of-week must be '?'"),
        ("cron(0 9 ? * ? *)", "exactly one of"),
        ("cron(0 24 * * ? *)", "24 is outside 0-23"),
        ("cron(0 9 * * ? 1969)", "outside 1970-2199"),
        ("cron(0 9 * * ? 2027-2026)", "runs backwards"),  # other fields wrap: tests/unit/test_schedule.py
        ("cron(0/0 9 * * ? *)", "step must be a positive"),
        ("cron(? 9 * * ? *)", "'?' is only allowed"),
        ("cron(0 9 * FOO ? *)", "'FOO' is not a number or name"),
        ("rate(0 minutes)", "rate takes"),
        ("rate(1 week)", "rate takes"),
        ("at(2025-03-01 10:00)", "at takes"),
    ],
)
def test_bad_schedule_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule_expression(expression)


def test_schedule_names_and_timezones_are_checked() -> None:
    with pytest.raises(ValueError, match="1-64 of letters"):
        Schedule("rate(1 day)", name="has space")
    with pytest.raises(ValueError, match="unknown timezone 'Mars/Olympus'"):
        Schedule("rate(1 day)", name="x", timezone="Mars/Olympus")


def test_a_schedule_input_can_be_a_function_of_the_local_scheduled_time() -> None:
    text = standup.schedule_input(datetime(2025, 1, 6, 9, 0, tzinfo=UTC))
    assert text.startswith("Write the standup digest for Monday 2025-01-06")
    local = Schedule("rate(1 day)", lambda t: t.isoformat(), name="x", timezone="Asia/Tokyo")
    assert local.input_for(datetime(2025, 1, 6, 23, 0, tzinfo=UTC)) == "2025-01-07T08:00:00+09:00"


# --- declarations ----------------------------------------------------------------------------------------------


def test_the_example_agents_declare_their_triggers() -> None:
    examples = {name: AGENTS[name] for name in ("calculator", "deploybot", "triage", "standup", "orders")}
    assert {name: TRIGGERS[name] for name in examples if name in TRIGGERS} == {
        "triage": triage.AGENT.triggers,
        "standup": standup.AGENT.triggers,
        "orders": orders.AGENT.triggers,
    }, "the registry's triggers are the agents' own (an agent added to agents/ may add more)"
    (hook,) = triage.AGENT.triggers
    assert isinstance(hook, Webhook)
    assert (hook.source, hook.events, hook.scheme) == ("github", ("issues.opened",), "github")
    assert hook.to_input is triage.issue_input
    found = schedules(examples)
    assert list(found) == ["standup-weekdays"]
    assert found["standup-weekdays"].agent == "standup"
    assert found["standup-weekdays"].trigger.expression == "cron(0 9 ? * MON-FRI *)"  # type: ignore[union-attr]
    rules = [(s.agent, s.name) for s in subscriptions(examples) if isinstance(s.trigger, EventRule)]
    assert rules == [("orders", "orders-order-failed")]
    assert orders.AGENT.triggers[0].matches(ORDER_FAILED)  # type: ignore[union-attr]


def _agent(name: str, *triggers: Any) -> Agent:
    return Agent(name, "test", "calculator", 1, (), "scripted:calculator", triggers=triggers)


def test_unnamed_schedules_and_rules_take_the_agent_name_and_names_must_be_unique() -> None:
    one = _agent("one", Schedule("rate(1 day)"), EventRule({"source": ["a"]}), EventRule({"source": ["b"]}))
    assert [s.name for s in subscriptions({"one": one})] == ["one", "one-1", "one-2"]
    clash = _agent("two", Schedule("rate(1 hour)", name="one"))
    with pytest.raises(ValueError, match="schedule one is declared twice"):
        subscriptions({"one": one, "two": clash})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Webhook("GitHub", ["x"]), "lowercase"),
        (lambda: Webhook("github", []), "at least one event"),
        (lambda: Webhook("github", [""]), "at least one event"),
    ],
)
def test_bad_webhook_declarations_fail_at_import(build: Callable[[], Webhook], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_a_webhook_accepts_its_events_or_all_of_them() -> None:
    assert Webhook("github", "issues.opened").events == ("issues.opened",)
    assert Webhook("github", ["*"]).accepts("anything")
    assert not Webhook("github", ["issues.opened"]).accepts("issues.closed")


# --- one deduplicated launch -----------------------------------------------------------------------------------


def test_a_redelivered_webhook_names_the_same_thread_and_creates_nothing(launcher: Launcher) -> None:
    delivery = Delivery("github", "issues.opened", "72d3162e-cc78-11e3-81ab-4c9367dc0958", ISSUE)
    (first,) = start_webhook(launcher, delivery)
    (again,) = start_webhook(launcher, delivery)
    assert (first.agent, first.created, again.created) == ("triage", True, False)
    assert again.thread_id == first.thread_id
    thread = launcher.threads.load(first.thread_id)
    assert thread.version == 1
    first_input = thread.events[0]
    assert isinstance(first_input, UserInput)
    assert first_input.text == triage.issue_input(ISSUE)
    assert first_input.source == "github:issues.opened"
    assert thread.labels["trigger"] == "webhook:github"
    assert thread.labels["delivery_id"] == delivery.delivery_id
    assert thread.labels["idempotency_key"] == f"webhook:github:{delivery.delivery_id}"


def test_an_event_nobody_subscribes_to_starts_nothing(launcher: Launcher) -> None:
    assert start_webhook(launcher, Delivery("github", "issues.closed", "d-2", ISSUE)) == []
    assert launcher.executions.started == []  # type: ignore[attr-defined]


def test_one_thread_per_schedule_and_scheduled_time(launcher: Launcher) -> None:
    first = start_schedule(launcher, "standup-weekdays", "2025-01-06T09:00:00Z")
    again = start_schedule(launcher, "standup-weekdays", datetime(2025, 1, 6, 10, 0, tzinfo=UTC).astimezone())
    same = start_schedule(launcher, "standup-weekdays", "2025-01-06T09:00:00+00:00")
    assert (first.created, same.created, same.thread_id) == (True, False, first.thread_id)
    assert again.created
    assert again.thread_id != first.thread_id
    thread = launcher.threads.load(first.thread_id)
    assert thread.labels["trigger_event"] == "2025-01-06T09:00:00Z"
    assert "Monday 2025-01-06" in thread.events[0].text  # type: ignore[union-attr]
    with pytest.raises(UnknownScheduleError, match="no schedule 'nope'; declared: standup-weekdays"):
        start_schedule(launcher, "nope", "2025-01-06T09:00:00Z")
    with pytest.raises(BadDeliveryError, match="not an ISO 8601 time"):
        start_schedule(launcher, "standup-weekdays", "<aws.scheduler.scheduled-time>")


def test_an_event_matching_a_rule_starts_its_agent_once_per_event_id(launcher: Launcher) -> None:
    (started,) = start_event(launcher, ORDER_FAILED)
    (again,) = start_event(launcher, ORDER_FAILED)
    assert (started.agent, started.created, again.created, again.thread_id) == (
        "orders",
        True,
        False,
        started.thread_id,
    )
    text = launcher.threads.load(started.thread_id).events[0].text  # type: ignore[union-attr]
    assert text == "Order ord_1001 failed at 2025-01-06T08:59:00Z (reported by shop.checkout): payment_declined."
    assert start_event(launcher, {**ORDER_FAILED, "id": "other", "detail-type": "order.shipped"}) == []
    with pytest.raises(BadDeliveryError, match="not an EventBridge event"):
        start_event(launcher, {"id": "x"})


def test_answers_by_outcome(launcher: Launcher) -> None:
    body = json.dumps(ISSUE).encode()

    def answer(headers: dict[str, str], raw: bytes = body, source: str = "github") -> WebhookAnswer:
        return answer_webhook(launcher, source, headers, raw, secrets=SECRETS, now=NOW)

    def accepted(got: WebhookAnswer) -> tuple[str, dict[str, Any]]:
        assert isinstance(got, WebhookAccepted), got
        return got.outcome, got.body

    def refused(got: WebhookAnswer) -> tuple[type[Exception], str]:
        assert isinstance(got, WebhookRefused), got
        return type(got.error), str(got.error)

    outcome, created = accepted(answer(_github(body)))
    assert outcome == "started"
    assert set(created) == {"thread_id", "agent"}
    assert accepted(answer(_github(body))) == ("duplicate", {**created, "duplicate": True})
    assert refused(answer(_github(body, secret="nope")))[0] is SignatureError
    assert refused(answer(_github(body), source="gitlab"))[0] is UnknownSourceError
    closed = json.dumps({**ISSUE, "action": "closed"}).encode()
    assert accepted(answer(_github(closed, delivery="d-9"), closed)) == (
        "ignored",
        {"ignored": "no agent subscribes to github issues.closed"},
    )
    assert refused(answer(_github(b"[]", delivery="d-10"), b"[]")) == (
        BadDeliveryError,
        "the body is JSON but not an object",
    )
    assert len(launcher.executions.started) == 2  # type: ignore[attr-defined]  # the launch, and its redelivery's no-op


def test_a_slash_command_is_acknowledged_in_slack(launcher: Launcher) -> None:
    form = {"command": "/standup", "trigger_id": "t-1", "response_url": "https://hooks.slack.com/commands/T/1/x"}
    body = urlencode(form).encode()
    got = answer_webhook(
        launcher,
        "slack",
        _slack(body, content_type="application/x-www-form-urlencoded"),
        body,
        secrets=SECRETS,
        now=NOW,
    )
    assert isinstance(got, WebhookAccepted)
    assert got.outcome == "acknowledged"
    assert got.body["response_type"] == "ephemeral"
    assert "The answer will be posted here." in got.body["text"]
    thread = launcher.threads.load(got.started[0].thread_id)
    assert (thread.labels["reply_to"], thread.labels["reply_format"]) == (form["response_url"], "slack")


def test_an_input_launch_refuses_is_the_senders_error(launcher: Launcher) -> None:
    empty = {**ISSUE, "issue": {"number": 1, "title": "", "body": ""}}
    hook = _agent("blank", Webhook("shop", ["order.failed"], lambda _: "   "))
    blank = Launcher(launcher.threads, launcher.executions, {"blank": hook}, launcher.clock)
    body = _envelope(data=empty)
    got = answer_webhook(blank, "shop", {"X-Stepfold-Signature": _sf(body)}, body, secrets=SECRETS, now=NOW)
    assert isinstance(got, WebhookRefused)
    assert type(got.error) is ControlError  # launch's refusal, the sender's to fix; nothing started
    assert "input is empty" in str(got.error)
    assert launcher.executions.started == []  # type: ignore[attr-defined]


# --- the triggered example agents ------------------------------------------------------------------------------


def test_standup_reads_since_friday_on_a_monday_and_posts_once(drive: Driver) -> None:
    run = drive(standup.AGENT, standup.schedule_input(datetime(2025, 1, 6, 9, 0, tzinfo=UTC)))
    assert run.state.status == "done"
    assert run.tools() == ["list_merged_prs", "list_open_incidents", "post_digest", "done_for_now"]
    since = next(e for e in run.thread.events if getattr(e, "tool", None) == "list_merged_prs")
    assert since.args == {"since": "2025-01-03"}  # type: ignore[union-attr]
    ((channel, text),) = standup.BOARD.posts
    assert channel == "#standup"
    assert text.startswith("Standup digest for Monday 2025-01-06\n- merged #481")
    assert run.state.answer == (
        "Posted the standup digest for Monday 2025-01-06 to #standup: 3 merged pull requests, 1 open incident."
    )


def test_orders_asks_the_customer_to_update_a_declined_card(drive: Driver) -> None:
    run = drive(orders.AGENT, orders.event_input(ORDER_FAILED))
    assert run.tools() == ["lookup_order", "notify_customer", "done_for_now"]
    assert orders.DESK.refunds == []
    assert run.state.answer == "Order ord_1001: payment declined; asked the customer to update their card."


def test_orders_refunds_out_of_stock_only_after_approval(drive: Driver) -> None:
    text = orders.event_input({**ORDER_FAILED, "detail": {"order_id": "ord_1002", "reason": "out_of_stock"}})
    waiting = drive(orders.AGENT, text)
    assert waiting.state.status == "awaiting_human"
    assert waiting.of(HumanRequest)[0].kind == "approval"
    assert orders.DESK.refunds == []
    run = drive(orders.AGENT, text, [{"decision": "approve"}])
    assert orders.DESK.refunds == [("ord_1002", 129.0)]
    assert run.tools() == ["lookup_order", "refund_order", "notify_customer", "done_for_now"]
    rejected = drive(orders.AGENT, text, [{"decision": "reject", "comment": "not now"}])
    assert fold(rejected.thread).answer == "Order ord_1002: the refund was not approved; nothing was refunded."


def test_orders_stops_on_an_unknown_order(drive: Driver) -> None:
    run = drive(orders.AGENT, "Order ord_9999 failed (reported by shop.checkout): payment_declined.")
    assert run.state.answer == "Could not find order ord_9999; nothing was changed."
