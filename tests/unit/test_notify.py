"""Notification channels: what each one sends, how the webhook is signed, and that failures leak no secret."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import logging
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws
from moto.ses.models import ses_backends

from core.adapters.notify import EmailNotifier, SlackNotifier, WebhookNotifier
from core.services.approvals import Approval, args_hash, link
from core.services.notify import (
    SIGNATURE_HEADER,
    Alert,
    MultiNotifier,
    NotifyError,
    RecordingNotifier,
    email_message,
    redact,
    sign_webhook,
    slack_escape,
    verify_webhook,
    webhook_payload,
)
from functions._wiring import DeferredNotifier, Secrets, Settings, UnsentNotifier, build_notifier

NOW = 1_735_787_045
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAeSECRET-TASK-TOKEN"
WEBHOOK_SECRET = "whsec-test-0123456789"
WEBHOOK_URL = "https://hooks.example.com/stepfold/incoming"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/SLACKSECRETPATH"
ARGS = {"tag": "v1.5.0", "environment": "production"}


def _approval(**changes: Any) -> Approval:
    values: dict[str, Any] = {
        "approval_id": "apr_0123456789abcdef",
        "thread_id": "th_0123456789abcdef0123",
        "agent": "deploybot",
        "kind": "approval",
        "call_id": "call_1",
        "tool": "deploy_backend",
        "args": ARGS,
        "args_hash": args_hash(ARGS),
        "question": "Approve deploy_backend with tag=v1.5.0, environment=production?",
        "task_token": TOKEN,
        "expires_at": NOW + 86_400,
        "created_at": NOW,
    }
    values.update(changes)
    return Approval(**values)


APPROVAL = _approval()
URL = link("https://approve.example.com", b"link-key", APPROVAL)
SIG = URL.rsplit("sig=", 1)[1]


class Transport:
    """An ``httpx.MockTransport`` that keeps the requests and answers with ``status`` (or raises ``error``)."""

    def __init__(self, status: int = 200, body: str = "ok", error: Exception | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.status = status
        self.body = body
        self.error = error

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self._handle))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return httpx.Response(self.status, text=self.body)


def _assert_safe(message: str) -> None:
    for secret in (SIG, TOKEN, WEBHOOK_SECRET, "SLACKSECRETPATH", "/stepfold/incoming"):
        assert secret not in message


# --- redaction -----------------------------------------------------------------------------------


def test_redact_removes_link_signatures_and_named_secrets() -> None:
    text = f"failed for {URL} (token {TOKEN}); also SIG={SIG}&x=1"
    cleaned = redact(text, TOKEN, None, "")
    assert SIG not in cleaned
    assert TOKEN not in cleaned
    assert "sig=[redacted]" in cleaned
    assert "SIG=[redacted]&x=1" in cleaned
    assert f"exp={APPROVAL.expires_at}" in cleaned


# --- webhook -------------------------------------------------------------------------------------


def test_webhook_posts_the_payload_signed_with_the_documented_scheme() -> None:
    transport = Transport()
    WebhookNotifier(WEBHOOK_URL, WEBHOOK_SECRET, transport.client(), clock=lambda: NOW + 0.7).notify(APPROVAL, URL)
    [request] = transport.requests
    assert request.method == "POST"
    assert str(request.url) == WEBHOOK_URL
    assert request.headers["content-type"] == "application/json"
    body = request.content
    assert json.loads(body) == {
        "type": "approval_requested",
        "approval_id": APPROVAL.approval_id,
        "thread_id": APPROVAL.thread_id,
        "agent": "deploybot",
        "kind": "approval",
        "tool": "deploy_backend",
        "args": ARGS,
        "question": APPROVAL.question,
        "url": URL,
        "expires_at": APPROVAL.expires_at,
    }
    assert json.loads(body) == webhook_payload(APPROVAL, URL)
    assert TOKEN not in body.decode()
    header = request.headers[SIGNATURE_HEADER]
    # the scheme, recomputed by hand as a receiver would from the module docstring
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    assert t == str(NOW)
    assert v1 == hmac.new(WEBHOOK_SECRET.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert verify_webhook(WEBHOOK_SECRET, header, body, now=NOW + 10)


def test_webhook_signature_refuses_tampering_wrong_secrets_and_replays() -> None:
    body = b'{"type":"approval_requested"}'
    header = sign_webhook(WEBHOOK_SECRET, NOW, body)
    assert verify_webhook(WEBHOOK_SECRET, header, body, now=NOW)
    assert not verify_webhook(WEBHOOK_SECRET, header, body + b" ", now=NOW)
    assert not verify_webhook("another-secret", header, body, now=NOW)
    assert not verify_webhook(WEBHOOK_SECRET, header, body, now=NOW + 301)
    assert not verify_webhook(WEBHOOK_SECRET, header.replace(f"t={NOW}", f"t={NOW + 1}"), body, now=NOW)
    assert not verify_webhook(WEBHOOK_SECRET, "garbage", body, now=NOW)


def test_a_webhook_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="signing secret"):
        WebhookNotifier(WEBHOOK_URL, "", Transport().client())


def test_webhook_http_errors_raise_a_redacted_notify_error() -> None:
    transport = Transport(status=500, body=f"could not deliver {URL} for token {TOKEN}")
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(WEBHOOK_URL, WEBHOOK_SECRET, transport.client()).notify(APPROVAL, URL)
    message = str(caught.value)
    assert "webhook to hooks.example.com: HTTP 500" in message
    assert "sig=[redacted]" in message
    _assert_safe(message)


def test_webhook_transport_errors_raise_a_redacted_error_without_the_chained_cause() -> None:
    error = httpx.ConnectError(f"cannot reach {WEBHOOK_URL}?sig={SIG} with {WEBHOOK_SECRET}")
    with pytest.raises(NotifyError) as caught:
        WebhookNotifier(WEBHOOK_URL, WEBHOOK_SECRET, Transport(error=error).client()).notify(APPROVAL, URL)
    assert "ConnectError" in str(caught.value)
    _assert_safe(str(caught.value))
    assert caught.value.__suppress_context__  # the raw exception is not printed with the traceback
    assert WEBHOOK_SECRET not in repr(WebhookNotifier(WEBHOOK_URL, WEBHOOK_SECRET, Transport().client()))


# --- Slack ---------------------------------------------------------------------------------------


def test_slack_payload_has_text_a_section_and_a_button_to_the_page() -> None:
    transport = Transport()
    SlackNotifier(SLACK_URL, transport.client()).notify(APPROVAL, URL)
    [request] = transport.requests
    assert str(request.url) == SLACK_URL
    assert request.headers["content-type"] == "application/json"
    payload = json.loads(request.content)
    assert payload["text"] == "deploybot needs your approval to run deploy_backend"
    section, actions, context = payload["blocks"]
    assert section["type"] == "section"
    assert section["text"]["type"] == "mrkdwn"
    assert "`deploy_backend`" in section["text"]["text"]
    assert '"environment": "production"' in section["text"]["text"]
    assert actions["type"] == "actions"
    [button] = actions["elements"]
    assert button["type"] == "button"
    assert button["url"] == URL
    assert button["text"] == {"type": "plain_text", "text": "Review and decide"}
    assert context["type"] == "context"
    assert "UTC" in context["elements"][0]["text"]
    assert TOKEN not in request.content.decode()


def test_slack_escapes_model_text_so_it_cannot_make_links_or_mentions() -> None:
    hostile = "<!channel> & <https://evil.example|Approve here> ```break```"
    approval = _approval(args={"note": hostile}, question=f"Post {hostile}?")
    transport = Transport()
    SlackNotifier(SLACK_URL, transport.client()).notify(approval, URL)
    text = json.loads(transport.requests[0].content)["blocks"][0]["text"]["text"]
    assert "<!channel>" not in text
    assert "<https://evil.example" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|Approve here&gt;" in text
    assert text.count("```") == 2  # the args block cannot be closed early by the model
    assert slack_escape("a & <b>") == "a &amp; &lt;b&gt;"


def test_a_question_in_slack_shows_the_question_and_no_args_block() -> None:
    question = _approval(kind="question", tool="request_human_input", question="Which environment?")
    transport = Transport()
    SlackNotifier(SLACK_URL, transport.client()).notify(question, URL)
    payload = json.loads(transport.requests[0].content)
    assert payload["text"] == "deploybot has a question for you"
    assert "Which environment?" in payload["blocks"][0]["text"]["text"]
    assert "```" not in payload["blocks"][0]["text"]["text"]


def test_slack_errors_never_show_the_webhook_url() -> None:
    transport = Transport(status=404, body="no_service")
    with pytest.raises(NotifyError, match=r"slack to hooks\.slack\.com: HTTP 404: no_service") as caught:
        SlackNotifier(SLACK_URL, transport.client()).notify(APPROVAL, URL)
    _assert_safe(str(caught.value))
    assert "SLACKSECRETPATH" not in repr(SlackNotifier(SLACK_URL, transport.client()))


# --- email (moto's SES) --------------------------------------------------------------------------


@pytest.fixture
def ses(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(key, "testing")
    with mock_aws():
        client = boto3.client("ses", region_name="us-east-1")
        client.verify_email_identity(EmailAddress="stepfold@example.com")
        yield client


def _sent_messages() -> list[Any]:
    messages: list[Any] = ses_backends["123456789012"]["us-east-1"].sent_messages
    return messages


def test_email_sends_text_and_escaped_html_through_ses(ses: Any) -> None:
    approval = _approval(args={"note": "<script>alert(1)</script>"}, question="Post <b>this</b>?")
    EmailNotifier(ses, "stepfold@example.com", ["ops@example.com", "lead@example.com"]).notify(approval, URL)
    [message] = _sent_messages()
    assert message.source == "stepfold@example.com"
    assert message.destinations["ToAddresses"] == ["ops@example.com", "lead@example.com"]
    assert message.subject == "[stepfold] deploybot needs your approval to run deploy_backend"
    assert f'<a href="{html.escape(URL)}">' in message.body  # moto keeps the HTML body
    assert "<script>" not in message.body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.body
    assert "Post &lt;b&gt;this&lt;/b&gt;?" in message.body
    assert TOKEN not in message.body


def test_email_from_an_unverified_sender_fails_with_a_redacted_error(ses: Any) -> None:
    with pytest.raises(NotifyError, match="email to SES: MessageRejected") as caught:
        EmailNotifier(ses, "nobody@example.org", ["ops@example.com"]).notify(APPROVAL, URL)
    _assert_safe(str(caught.value))


def test_email_needs_a_recipient() -> None:
    with pytest.raises(ValueError, match="recipient"):
        EmailNotifier(object(), "stepfold@example.com", [])  # type: ignore[arg-type]


# --- several channels ----------------------------------------------------------------------------


class Broken:
    name = "pager"

    def notify(self, approval: Approval, url: str) -> None:
        raise RuntimeError(f"pager rejected {url} for {approval.task_token}")

    def alert(self, alert: Alert) -> None:
        raise RuntimeError(f"pager rejected {alert.url}")


def test_multi_notifier_tries_every_channel_then_raises_one_safe_summary() -> None:
    failing_webhook = WebhookNotifier(WEBHOOK_URL, WEBHOOK_SECRET, Transport(status=503, body=URL).client())
    recorder = RecordingNotifier()
    slack = Transport()
    multi = MultiNotifier([failing_webhook, Broken(), SlackNotifier(SLACK_URL, slack.client()), recorder])
    with pytest.raises(NotifyError) as caught:
        multi.notify(APPROVAL, URL)
    message = str(caught.value)
    assert message.startswith(f"2 of 4 notification channel(s) failed for approval {APPROVAL.approval_id}: ")
    assert "webhook to hooks.example.com: HTTP 503" in message
    assert "pager to its destination: RuntimeError" in message
    _assert_safe(message)
    assert recorder.sent == [(APPROVAL, URL)]  # the channels after the failures still ran
    assert len(slack.requests) == 1


def test_multi_notifier_is_quiet_when_every_channel_works() -> None:
    first, second = RecordingNotifier(), RecordingNotifier()
    MultiNotifier([first, second]).notify(APPROVAL, URL)
    assert first.sent == second.sent == [(APPROVAL, URL)]


# --- wiring: settings and secrets build the channels ---------------------------------------------


def _settings(**env: str) -> Settings:
    return Settings.from_env(env)


def test_no_channel_configured_records_and_logs_without_the_link(caplog: pytest.LogCaptureFixture) -> None:
    notifier = build_notifier(_settings(), Secrets(link_signing_key="k"))
    assert isinstance(notifier, UnsentNotifier)
    with caplog.at_level(logging.WARNING, logger="stepfold"):
        notifier.notify(APPROVAL, URL)
    assert notifier.sent == [(APPROVAL, URL)]
    [record] = caplog.records
    assert "no notification channel is configured" in record.getMessage()
    assert record.__dict__["approval_id"] == APPROVAL.approval_id
    assert SIG not in caplog.text
    assert TOKEN not in caplog.text


def test_every_configured_channel_is_built(ses: Any) -> None:
    settings = _settings(
        STEPFOLD_NOTIFY_WEBHOOK_URL=WEBHOOK_URL,
        STEPFOLD_NOTIFY_SLACK_URL=SLACK_URL,
        STEPFOLD_NOTIFY_EMAIL_FROM="stepfold@example.com",
        STEPFOLD_NOTIFY_EMAIL_TO="ops@example.com, lead@example.com",
    )
    transport = Transport()
    keys = Secrets(link_signing_key="k", notify_webhook_secret=WEBHOOK_SECRET)
    notifier = build_notifier(settings, keys, http=transport.client, ses=lambda: ses)
    assert isinstance(notifier, MultiNotifier)
    assert [type(c) for c in notifier.channels] == [WebhookNotifier, SlackNotifier, EmailNotifier]
    notifier.notify(APPROVAL, URL)
    assert [str(r.url) for r in transport.requests] == [WEBHOOK_URL, SLACK_URL]
    assert _sent_messages()[0].destinations["ToAddresses"] == ["ops@example.com", "lead@example.com"]


def test_a_slack_url_in_the_secret_wins_over_the_setting() -> None:
    transport = Transport()
    settings = _settings(STEPFOLD_NOTIFY_SLACK_URL="https://hooks.slack.com/services/old")
    keys = Secrets(link_signing_key="k", notify_slack_url=SLACK_URL)
    build_notifier(settings, keys, http=transport.client).notify(APPROVAL, URL)
    assert [str(r.url) for r in transport.requests] == [SLACK_URL]


def test_a_webhook_without_its_secret_is_a_clear_configuration_error() -> None:
    settings = _settings(STEPFOLD_NOTIFY_WEBHOOK_URL=WEBHOOK_URL)
    with pytest.raises(RuntimeError, match="notify_webhook_secret"):
        build_notifier(settings, Secrets(link_signing_key="k"), http=Transport().client)


def test_notification_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="must be https"):
        _settings(STEPFOLD_NOTIFY_WEBHOOK_URL="http://hooks.example.com/x")
    assert _settings(STEPFOLD_NOTIFY_WEBHOOK_URL="http://127.0.0.1:9000/x").notify_webhook_url
    with pytest.raises(ValueError, match="both STEPFOLD_NOTIFY_EMAIL_FROM and STEPFOLD_NOTIFY_EMAIL_TO"):
        _settings(STEPFOLD_NOTIFY_EMAIL_FROM="stepfold@example.com")
    with pytest.raises(ValueError, match="both"):
        _settings(STEPFOLD_NOTIFY_EMAIL_FROM="stepfold@example.com", STEPFOLD_NOTIFY_EMAIL_TO=" , ")
    with pytest.raises(ValueError, match="both"):
        _settings(STEPFOLD_NOTIFY_EMAIL_TO="ops@example.com")
    assert _settings(STEPFOLD_NOTIFY_EMAIL_TO="").notify_email_recipients == []


def test_the_webhook_secret_comes_from_the_environment_locally() -> None:
    keys = Secrets.load(_settings(), None, env={"STEPFOLD_NOTIFY_WEBHOOK_SECRET": WEBHOOK_SECRET})
    assert keys.notify_webhook_secret == WEBHOOK_SECRET
    assert WEBHOOK_SECRET not in repr(keys)


def test_the_deferred_notifier_builds_its_channels_once_at_the_first_notification() -> None:
    built: list[RecordingNotifier] = []

    def build() -> RecordingNotifier:
        built.append(RecordingNotifier())
        return built[-1]

    deferred = DeferredNotifier(build)
    assert built == []
    deferred.notify(APPROVAL, URL)
    deferred.notify(APPROVAL, URL)
    assert len(built) == 1
    assert len(built[0].sent) == 2


def test_the_email_text_body_holds_the_call_and_the_link() -> None:
    message = email_message(APPROVAL, URL)
    text = message["Body"]["Text"]["Data"]
    assert json.dumps(ARGS, indent=2) in text
    assert f"Review and decide: {URL}" in text
    assert "expires 2025-01-03 03:04 UTC" in text
    assert message["Subject"]["Charset"] == "UTF-8"


# --- alerts: a thread failed ---------------------------------------------------------------------

ALERT = Alert(
    thread_id="th_1",
    agent="deploybot",
    title="deploybot: thread th_1 failed (ModelUnavailable)",
    detail="the execution failed with ModelUnavailable: <script>x</script>; retry it",
    url="https://api.example.com/threads/th_1/view",
)


def test_webhook_alert_is_a_signed_thread_failed_document() -> None:
    transport = Transport()
    WebhookNotifier(WEBHOOK_URL, WEBHOOK_SECRET, transport.client(), clock=lambda: 1_700_000_000).alert(ALERT)
    (request,) = transport.requests
    body = json.loads(request.content)
    assert body["type"] == "thread_failed"
    assert body["thread_id"] == "th_1"
    assert body["url"] == ALERT.url
    assert verify_webhook(WEBHOOK_SECRET, request.headers[SIGNATURE_HEADER], request.content, now=1_700_000_000)


def test_slack_alert_escapes_the_detail_and_links_the_thread() -> None:
    transport = Transport()
    SlackNotifier(SLACK_URL, transport.client()).alert(ALERT)
    payload = json.loads(transport.requests[0].content)
    text = payload["blocks"][0]["text"]["text"]
    assert "<script>" not in text
    assert "&lt;script&gt;" in text
    assert payload["blocks"][1]["elements"][0]["url"] == ALERT.url


def test_multi_notifier_alerts_every_channel_and_reports_the_failures_safely() -> None:
    recorder = RecordingNotifier()
    failing = Transport(status=500)
    multi = MultiNotifier([SlackNotifier(SLACK_URL, failing.client()), recorder])
    with pytest.raises(NotifyError, match=r"1 of 2 channel\(s\) failed to deliver the alert for thread th_1") as caught:
        multi.alert(ALERT)
    assert recorder.alerts == [ALERT]
    _assert_safe(str(caught.value))
