"""Outbound results (Factor 11): a thread a trigger started sends its final answer back where it came from.

A trigger that names a way back (a signed envelope's ``callback_url``, a Slack slash command's
``response_url``) launches its thread with the labels ``reply_to`` and ``reply_format``. When a step ends
the thread (``done`` or ``failed``), :func:`send_reply` posts the answer there:

stepfold  JSON ``{"type": "thread_ended", "delivery_id", "thread_id", "agent", "status", "answer", "reason",
          "trigger", "trigger_event", "trigger_delivery_id"}`` signed like every webhook we send
          (``X-Stepfold-Signature``, :func:`core.notify.sign_webhook`) with the secret the sender signed its
          own request with, so it can verify the answer the same way.
slack     ``{"response_type": "in_channel", "text": ...}`` to the ``response_url`` (a capability URL: only
          its host is ever logged).

Delivery is at least once: a step that is retried after the thread ended sends again, with the same
``X-Stepfold-Delivery`` id (``<thread>-<seq of the terminal event>``) for the receiver to drop. A reply
never fails the step: the thread's answer is already committed, so a callback that stays down is logged
(:class:`ReplyResult`) instead of turning a finished thread's execution into a failed one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from core.events import Done, Failed
from core.notify import SIGNATURE_HEADER, redact, sign_webhook, slack_escape
from core.thread import Thread, fold

if TYPE_CHECKING:
    import httpx

ReplyFormat = Literal["stepfold", "slack"]
DELIVERY_HEADER = "X-Stepfold-Delivery"
_SLACK_TEXT_LIMIT = 3_000
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Reply:
    """What to send where: built from a finished thread by :func:`reply_for`."""

    url: str = field(repr=False)  # a Slack response_url is a credential
    format: ReplyFormat
    delivery_id: str
    document: dict[str, Any]

    @property
    def host(self) -> str:
        from urllib.parse import urlsplit  # noqa: PLC0415 - only replies pay for it

        return urlsplit(self.url).hostname or "?"


class Replier(Protocol):
    def send(self, reply: Reply) -> None:
        """Deliver ``reply`` or raise :class:`ReplyError`."""
        ...


class ReplyError(Exception):
    """A reply was not delivered. The message names the host only, never the URL."""


@dataclass(frozen=True)
class ReplyResult:
    """What happened to a thread's reply, for the step's log."""

    thread_id: str
    delivery_id: str
    host: str
    format: ReplyFormat
    sent: bool
    error: str = ""

    def log_fields(self) -> dict[str, Any]:
        return {
            "reply_delivery_id": self.delivery_id,
            "reply_host": self.host,
            "reply_format": self.format,
            "reply_sent": self.sent,
            **({"reply_error": self.error} if self.error else {}),
        }


def reply_for(thread: Thread) -> Reply | None:
    """The reply a finished thread owes its trigger, or None (no ``reply_to`` label, or not finished)."""
    url = thread.labels.get("reply_to")
    fmt = thread.labels.get("reply_format", "stepfold")
    if not url or fmt not in ("stepfold", "slack"):
        return None
    state = fold(thread)
    terminal = next((e for e in reversed(thread.events) if isinstance(e, Done | Failed)), None)
    if state.status not in ("done", "failed") or terminal is None:
        return None
    delivery_id = f"{thread.id}-{terminal.seq}"
    answer = terminal.answer if isinstance(terminal, Done) else None
    reason = terminal.reason if isinstance(terminal, Failed) else None
    if fmt == "slack":
        text = answer if answer is not None else f"The {thread.agent} agent could not finish: {reason}"
        document: dict[str, Any] = {"response_type": "in_channel", "text": slack_escape(text)[:_SLACK_TEXT_LIMIT]}
        return Reply(url, "slack", delivery_id, document)
    document = {
        "type": "thread_ended",
        "delivery_id": delivery_id,
        "thread_id": thread.id,
        "agent": thread.agent,
        "status": state.status,
        "answer": answer,
        "reason": reason,
        "trigger": thread.labels.get("trigger"),
        "trigger_event": thread.labels.get("trigger_event"),
        "trigger_delivery_id": thread.labels.get("delivery_id"),
    }
    return Reply(url, "stepfold", delivery_id, document)


def send_reply(thread: Thread, replier: Replier) -> ReplyResult | None:
    """Send the reply ``thread`` owes, if any. Never raises: a reply is reported, not retried by the loop."""
    reply = reply_for(thread)
    if reply is None:
        return None
    try:
        replier.send(reply)
    except ReplyError as exc:
        return ReplyResult(thread.id, reply.delivery_id, reply.host, reply.format, sent=False, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the thread already ended; a broken replier must not fail its execution
        error = redact(f"{type(exc).__name__}: {exc}", reply.url)[:300]
        return ReplyResult(thread.id, reply.delivery_id, reply.host, reply.format, sent=False, error=error)
    return ReplyResult(thread.id, reply.delivery_id, reply.host, reply.format, sent=True)


class HttpReplier:
    """POSTs replies with an injected ``httpx.Client``; retries network errors, 429 and 5xx a few times.

    ``secret`` (or a function returning it, so the secret is read only when a signed reply is due) signs
    ``stepfold`` replies; without it such a reply is refused rather than sent unsigned.
    """

    def __init__(
        self,
        secret: str | Callable[[], str | None] | None,
        *,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
        attempts: int = 3,
        backoff_seconds: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._secret = secret
        self._client = client
        self._clock = clock
        self._attempts = max(1, attempts)
        self._backoff = backoff_seconds
        self._sleep = sleep
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HttpReplier(attempts={self._attempts})"

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx  # noqa: PLC0415 - only a container that replies pays for it

                self._client = httpx.Client(timeout=5.0, follow_redirects=False)
            return self._client

    def _signing_secret(self) -> str | None:
        return self._secret() if callable(self._secret) else self._secret

    def send(self, reply: Reply) -> None:
        body = json.dumps(reply.document, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "stepfold-replies",
            DELIVERY_HEADER: reply.delivery_id,
        }
        secret = None
        if reply.format == "stepfold":
            secret = self._signing_secret()
            if not secret:
                raise ReplyError(
                    f"reply to {reply.host} not sent: it must be signed and there is no stepfold_webhook_secret"
                )
        last = ""
        for attempt in range(self._attempts):
            if attempt:
                self._sleep(self._backoff * 2 ** (attempt - 1))
            if secret:
                headers[SIGNATURE_HEADER] = sign_webhook(secret, int(self._clock()), body)
            try:
                response = self._http().post(reply.url, content=body, headers=headers)
            except Exception as exc:  # noqa: BLE001 - every transport error is retried, then reported redacted
                last = redact(f"{type(exc).__name__}: {exc}", reply.url, secret)[:200]
                continue
            if response.is_success:
                return
            last = f"HTTP {response.status_code}"
            if response.status_code not in _RETRY_STATUSES:
                break
        raise ReplyError(f"reply to {reply.host} not delivered: {last}")


@dataclass
class RecordingReplier:
    """Keeps replies in memory (tests and the local stack read them)."""

    sent: list[Reply] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send(self, reply: Reply) -> None:
        with self._lock:
            self.sent.append(reply)
