"""The transports that carry a notification: a signed webhook POST, a Slack incoming webhook, an SES email.

What each channel says (the payloads, the signature, redaction) is the service's (:mod:`core.services.notify`);
these classes only send it with their injected client and turn every transport failure into one redacted
:class:`~core.services.notify.NotifyError` (ARCHITECTURE.md, "Adapters").
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from core.services.approvals import Approval
from core.services.notify import (
    SIGNATURE_HEADER,
    Alert,
    NotifyError,
    alert_email,
    alert_payload,
    channel_failure,
    email_message,
    host_of,
    redact,
    sign_webhook,
    slack_alert_payload,
    slack_payload,
    webhook_payload,
)

if TYPE_CHECKING:
    import httpx
    from mypy_boto3_ses import SESClient  # the stubs are a dev dependency: the Lambda package does not carry them
    from mypy_boto3_ses.type_defs import MessageTypeDef

__all__ = ["EmailNotifier", "SlackNotifier", "WebhookNotifier"]


def _check_response(channel: str, destination: str, response: httpx.Response, *secrets: str | None) -> None:
    if response.is_success:
        return
    detail = redact(" ".join(response.text.split()), *secrets)[:200]
    raise NotifyError(f"{channel} to {destination}: HTTP {response.status_code}{': ' + detail if detail else ''}")


class WebhookNotifier:
    """POSTs :func:`webhook_payload` as JSON, signed with the shared secret (see the module docstring)."""

    name = "webhook"

    def __init__(self, url: str, secret: str, client: httpx.Client, *, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("a webhook notifier needs a signing secret (notify_webhook_secret)")
        self.url = url
        self._secret = secret
        self._client = client
        self._clock = clock

    def __repr__(self) -> str:
        return f"WebhookNotifier(host={host_of(self.url)!r})"

    def notify(self, approval: Approval, url: str) -> None:
        self._post(webhook_payload(approval, url), approval.task_token)

    def alert(self, alert: Alert) -> None:
        self._post(alert_payload(alert), None)

    def _post(self, payload: dict[str, Any], token: str | None) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "stepfold-notifier",
            SIGNATURE_HEADER: sign_webhook(self._secret, int(self._clock()), body),
        }
        secrets = (self.url, self._secret, token)
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except Exception as exc:  # noqa: BLE001 - every transport error becomes one redacted NotifyError
            raise channel_failure(self.name, host_of(self.url), exc, *secrets) from None
        _check_response(self.name, host_of(self.url), response, *secrets)


class SlackNotifier:
    """Posts :func:`slack_payload` to a Slack (or Mattermost/Teams-compatible) incoming webhook."""

    name = "slack"

    def __init__(self, webhook_url: str, client: httpx.Client) -> None:
        self._webhook_url = webhook_url  # a credential: never shown, only its host
        self._client = client

    def __repr__(self) -> str:
        return f"SlackNotifier(host={host_of(self._webhook_url)!r})"

    def notify(self, approval: Approval, url: str) -> None:
        self._post(slack_payload(approval, url), approval.task_token)

    def alert(self, alert: Alert) -> None:
        self._post(slack_alert_payload(alert), None)

    def _post(self, payload: dict[str, Any], token: str | None) -> None:
        secrets = (self._webhook_url, token)
        try:
            response = self._client.post(self._webhook_url, json=payload)
        except Exception as exc:  # noqa: BLE001 - every transport error becomes one redacted NotifyError
            raise channel_failure(self.name, host_of(self._webhook_url), exc, *secrets) from None
        _check_response(self.name, host_of(self._webhook_url), response, *secrets)


class EmailNotifier:
    """Sends :func:`email_message` with SES ``SendEmail`` from a verified sender."""

    name = "email"

    def __init__(self, ses_client: SESClient, sender: str, recipients: Sequence[str]) -> None:
        if not recipients:
            raise ValueError("an email notifier needs at least one recipient")
        self._ses = ses_client
        self.sender = sender
        self.recipients = list(recipients)

    def __repr__(self) -> str:
        return f"EmailNotifier(sender={self.sender!r}, recipients={len(self.recipients)})"

    def notify(self, approval: Approval, url: str) -> None:
        self._send(email_message(approval, url), approval.task_token)

    def alert(self, alert: Alert) -> None:
        self._send(alert_email(alert), None)

    def _send(self, message: MessageTypeDef, token: str | None) -> None:
        try:
            self._ses.send_email(Source=self.sender, Destination={"ToAddresses": self.recipients}, Message=message)
        except Exception as exc:  # noqa: BLE001 - every SES error becomes one redacted NotifyError
            raise channel_failure(self.name, "SES", exc, token) from None
