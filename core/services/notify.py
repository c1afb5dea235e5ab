"""How a person hears that an agent waits for them. Channels (webhook, Slack, email) implement one method.

Every channel receives the :class:`~core.services.approvals.Approval` and its signed link. The link is the only
credential a channel ever sends: the task token stays in the approval record. Clients are injected
(an ``httpx.Client`` for HTTP channels, an SES client for email); nothing here reads the environment.

Webhook signature
    :class:`WebhookNotifier` POSTs the JSON document of :func:`webhook_payload` with the header
    ``X-Stepfold-Signature: t=<unix seconds>,v1=<hex>``, where ``<hex>`` is
    ``HMAC-SHA256(secret, f"{t}.{body}")`` over the raw request body bytes, lowercase hex. A receiver
    recomputes it with the shared secret, compares in constant time, and rejects a ``t`` more than
    five minutes away from its clock (a replayed delivery). :func:`verify_webhook` does exactly that.

Failures
    A channel that fails raises :class:`NotifyError` with a message that is safe to log: the link's
    ``sig=`` value, the task token, the webhook secret and the channel's own URL (a Slack webhook URL is
    a credential) are redacted. :class:`MultiNotifier` tries every channel before it raises one error
    naming each failed channel, so ``request_human`` fails visibly and Step Functions retries it.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from mypy_boto3_ses.type_defs import MessageTypeDef

    from core.services.approvals import Approval

SIGNATURE_HEADER = "X-Stepfold-Signature"
SIGNATURE_TOLERANCE_SECONDS = 300
REDACTED = "[redacted]"
_SIG_VALUE = re.compile(r"(?i)(\bsig=)[^&#\s\"'<>]+")
_SLACK_TEXT_LIMIT = 2_800
"""Slack refuses a section text over 3,000 characters; the args block is cut well before that."""


@dataclass(frozen=True)
class Alert:
    """Something the people who watch an agent must hear about without a decision to make: a thread whose
    execution failed (it will not go on by itself; a person may retry it)."""

    thread_id: str
    agent: str
    title: str
    detail: str
    url: str
    """Where to look: the thread's timeline."""


class Notifier(Protocol):
    def notify(self, approval: Approval, url: str) -> None:
        """Tell someone that ``approval`` waits, with the signed ``url`` to answer it."""
        ...

    def alert(self, alert: Alert) -> None:
        """Tell someone about ``alert``; raises :class:`NotifyError` when it was not delivered."""
        ...


class NotifyError(Exception):
    """A notification was not delivered. The message is redacted: safe for logs and Step Functions causes."""


@dataclass
class RecordingNotifier:
    """Keeps every notification in memory: the local stack prints them, tests read them."""

    sent: list[tuple[Approval, str]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def notify(self, approval: Approval, url: str) -> None:
        with self._lock:
            self.sent.append((approval, url))

    def alert(self, alert: Alert) -> None:
        with self._lock:
            self.alerts.append(alert)

    def last_for(self, thread_id: str) -> tuple[Approval, str] | None:
        with self._lock:
            return next(((a, u) for a, u in reversed(self.sent) if a.thread_id == thread_id), None)


# --- shared helpers ------------------------------------------------------------------------------


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without link signatures (``sig=...``) and without any of ``secrets`` (empty ones are ignored)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _SIG_VALUE.sub(rf"\g<1>{REDACTED}", text)


def expires_text(approval: Approval) -> str:
    """The expiry as people read it, always in UTC."""
    return datetime.fromtimestamp(approval.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")


def args_json(approval: Approval) -> str:
    """The exact arguments, pretty-printed the way every channel and the approval page show them."""
    return json.dumps(approval.args, indent=2, ensure_ascii=False)


def headline(approval: Approval) -> str:
    """One line: what the agent waits for (agent and tool names come from code, not from the model)."""
    if approval.kind == "question":
        return f"{approval.agent} has a question for you"
    if approval.tool:
        return f"{approval.agent} needs your approval to run {approval.tool}"
    return f"{approval.agent} needs your approval"


def host_of(url: str) -> str:
    """The host a URL points at, the only part of a channel's URL that is ever logged."""
    return urlsplit(url).hostname or "?"


def channel_failure(channel: str, destination: str, exc: BaseException, *secrets: str | None) -> NotifyError:
    """One redacted :class:`NotifyError` for a channel that failed."""
    message = redact(" ".join(str(exc).split()), *secrets)[:300]
    return NotifyError(f"{channel} to {destination}: {type(exc).__name__}{': ' + message if message else ''}")


# --- generic webhook -----------------------------------------------------------------------------


def webhook_payload(approval: Approval, url: str) -> dict[str, Any]:
    """The JSON document a webhook receives (``expires_at`` in unix seconds, UTC)."""
    return {
        "type": "approval_requested",
        "approval_id": approval.approval_id,
        "thread_id": approval.thread_id,
        "agent": approval.agent,
        "kind": approval.kind,
        "tool": approval.tool,
        "args": approval.args,
        "question": approval.question,
        "url": url,
        "expires_at": approval.expires_at,
    }


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The JSON document a webhook receives when a thread failed."""
    return {
        "type": "thread_failed",
        "thread_id": alert.thread_id,
        "agent": alert.agent,
        "title": alert.title,
        "detail": alert.detail,
        "url": alert.url,
    }


def sign_webhook(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Stepfold-Signature`` header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_webhook(
    secret: str, header: str, body: bytes, *, now: int, tolerance: int = SIGNATURE_TOLERANCE_SECONDS
) -> bool:
    """What a receiver does: recompute the signature and refuse old timestamps (replays)."""
    parts = {key.strip(): value.strip() for key, _, value in (p.partition("=") for p in header.split(","))}
    timestamp, given = parts.get("t", ""), parts.get("v1", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = sign_webhook(secret, int(timestamp), body).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


# --- Slack-compatible incoming webhook -----------------------------------------------------------


def slack_escape(text: str) -> str:
    """Escape Slack's control characters so model text cannot make links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _mrkdwn(text: str) -> str:
    """Escaped text that also cannot open or close a code block."""
    return slack_escape(text).replace("```", "`\u200b`\u200b`")


def _code_block(text: str) -> str:
    if len(text) > _SLACK_TEXT_LIMIT - 400:
        text = f"{text[: _SLACK_TEXT_LIMIT - 400]}\n... (cut; the page shows everything)"
    return f"```{_mrkdwn(text)}```"


def slack_payload(approval: Approval, url: str) -> dict[str, Any]:
    """An incoming-webhook message: fallback ``text`` plus blocks with the request and a button to the page."""
    lines = [f"*{slack_escape(headline(approval))}*"]
    if approval.question:
        lines.append(_mrkdwn(approval.question[:1_000]))
    if approval.kind == "approval" and approval.tool:
        lines.append(f"Tool `{slack_escape(approval.tool)}` with arguments:")
        lines.append(_code_block(args_json(approval)))
    return {
        "text": slack_escape(headline(approval)),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:_SLACK_TEXT_LIMIT]}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "open_approval",
                        "text": {"type": "plain_text", "text": "Review and decide"},
                        "style": "primary",
                        "url": url,
                    }
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"Thread `{slack_escape(approval.thread_id)}` · expires {expires_text(approval)}",
                    }
                ],
            },
        ],
    }


def slack_alert_payload(alert: Alert) -> dict[str, Any]:
    """An incoming-webhook message for an alert: the title, the detail as code, a button to the timeline."""
    text = f"*{slack_escape(alert.title)}*\n{_code_block(alert.detail)}"
    return {
        "text": slack_escape(alert.title),
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:_SLACK_TEXT_LIMIT]}},
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "open_thread",
                        "text": {"type": "plain_text", "text": "See the thread"},
                        "url": alert.url,
                    }
                ],
            },
        ],
    }


# --- email through SES ---------------------------------------------------------------------------


def email_message(approval: Approval, url: str) -> MessageTypeDef:
    """SES ``Message``: subject, a text body and an HTML body with every model-produced value escaped."""
    e = html.escape
    text_lines = [headline(approval) + ".", ""]
    html_parts = [f'<h1 style="font-size:1.2em">{e(headline(approval))}</h1>']
    if approval.question:
        text_lines += [approval.question, ""]
        html_parts.append(f"<p>{e(approval.question)}</p>")
    if approval.kind == "approval" and approval.tool:
        text_lines += [f"Tool: {approval.tool}", "Arguments:", args_json(approval), ""]
        html_parts.append(f"<p>Tool: <code>{e(approval.tool)}</code></p><pre>{e(args_json(approval))}</pre>")
    text_lines += [f"Review and decide: {url}", f"This link expires {expires_text(approval)}."]
    html_parts.append(
        f'<p><a href="{e(url)}">Review and decide</a></p><p>This link expires {e(expires_text(approval))}.</p>'
    )
    body = "\n".join(html_parts)
    document = f'<!doctype html><html lang="en"><head><meta charset="utf-8"></head><body>{body}</body></html>'
    return {
        "Subject": {"Data": f"[stepfold] {headline(approval)}", "Charset": "UTF-8"},
        "Body": {
            "Text": {"Data": "\n".join(text_lines), "Charset": "UTF-8"},
            "Html": {"Data": document, "Charset": "UTF-8"},
        },
    }


def alert_email(alert: Alert) -> MessageTypeDef:
    """SES ``Message`` for an alert, every value escaped in the HTML body."""
    e = html.escape
    text = f"{alert.title}\n\n{alert.detail}\n\nSee the thread: {alert.url}"
    body = f'<h1 style="font-size:1.2em">{e(alert.title)}</h1><pre>{e(alert.detail)}</pre>'
    body += f'<p><a href="{e(alert.url)}">See the thread</a></p>'
    document = f'<!doctype html><html lang="en"><head><meta charset="utf-8"></head><body>{body}</body></html>'
    return {
        "Subject": {"Data": f"[stepfold] {alert.title}", "Charset": "UTF-8"},
        "Body": {"Text": {"Data": text, "Charset": "UTF-8"}, "Html": {"Data": document, "Charset": "UTF-8"}},
    }


# --- several channels ----------------------------------------------------------------------------


class MultiNotifier:
    """Notifies every channel; one failing channel does not stop the others, but it is reported."""

    name = "all"

    def __init__(self, channels: Sequence[Notifier]) -> None:
        self.channels = list(channels)

    def __repr__(self) -> str:
        return f"MultiNotifier({self.channels!r})"

    def notify(self, approval: Approval, url: str) -> None:
        failures: list[str] = []
        for channel in self.channels:
            try:
                channel.notify(approval, url)
            except NotifyError as exc:
                failures.append(redact(str(exc), approval.task_token))
            except Exception as exc:  # noqa: BLE001 - collected and raised below, after every channel was tried
                name = getattr(channel, "name", type(channel).__name__)
                failures.append(str(channel_failure(str(name), "its destination", exc, approval.task_token)))
        if failures:
            raise NotifyError(
                f"{len(failures)} of {len(self.channels)} notification channel(s) failed for approval "
                f"{approval.approval_id}: {'; '.join(failures)}"
            )

    def alert(self, alert: Alert) -> None:
        failures: list[str] = []
        for channel in self.channels:
            try:
                channel.alert(alert)
            except NotifyError as exc:
                failures.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - collected and raised below, after every channel was tried
                failures.append(str(channel_failure(str(getattr(channel, "name", type(channel).__name__)), "?", exc)))
        if failures:
            raise NotifyError(
                f"{len(failures)} of {len(self.channels)} channel(s) failed to deliver the alert for thread "
                f"{alert.thread_id}: {'; '.join(failures)}"
            )
