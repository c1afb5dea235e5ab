"""Outbound results (Factor 11): a thread a trigger started sends its final answer back where it came from.

A trigger that names a way back (a signed envelope's ``callback_url``, a Slack slash command's
``response_url``) launches its thread with the labels ``reply_to`` and ``reply_format``. When a step ends
the thread (``done`` or ``failed``), :func:`send_reply` posts the answer there:

stepfold  JSON ``{"type": "thread_ended", "delivery_id", "thread_id", "agent", "status", "answer", "reason",
          "trigger", "trigger_event", "trigger_delivery_id"}`` signed like every webhook we send
          (``X-Stepfold-Signature``, :func:`core.services.notify.sign_webhook`) with the ``reply_signing_key`` secret:
          a key of its own, never the secret that authenticates incoming webhooks, so a reply (whose body
          the agent wrote) can never be replayed to us as a signed delivery.
slack     ``{"response_type": "in_channel", "text": ...}`` to the ``response_url`` (a capability URL: only
          its host is ever logged).

Where a reply may go is checked again when it is sent (:class:`ReplyPolicy`), not only when the trigger
arrived: https only; Slack replies only to Slack's hosts; callback hosts only from the allow-list when one
is configured; never loopback, private, link-local or otherwise non-public addresses (literal IPs in any
spelling are resolved, so ``http://2130706433/`` is 127.0.0.1). Only the local stack may allow loopback,
through an explicit setting. The labels that name the destination can only be set by a trigger
(:func:`core.services.control.check_labels`).

Delivery is at least once: a step that is retried after the thread ended sends again, with the same
``X-Stepfold-Delivery`` id (``<thread>-<seq of the terminal event>``) for the receiver to drop. A reply
never fails the step: the thread's answer is already committed, so a callback that stays down is logged
(:class:`ReplyResult`) instead of turning a finished thread's execution into a failed one.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol
from urllib.parse import urlsplit

from core.kernel.events import Done, Failed
from core.kernel.thread import Thread, fold
from core.services.notify import redact, slack_escape

if TYPE_CHECKING:
    pass

ReplyFormat = Literal["stepfold", "slack"]
DELIVERY_HEADER = "X-Stepfold-Delivery"
_SLACK_TEXT_LIMIT = 3_000


@dataclass(frozen=True)
class Reply:
    """What to send where: built from a finished thread by :func:`reply_for`."""

    url: str = field(repr=False)  # a Slack response_url is a credential
    format: ReplyFormat
    delivery_id: str
    document: dict[str, Any]

    @property
    def host(self) -> str:
        try:
            return urlsplit(self.url).hostname or "?"
        except ValueError:
            return "?"


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


SLACK_HOSTS = ("slack.com", "*.slack.com")
"""Where a Slack ``response_url`` may point (Slack's own hosts, e.g. hooks.slack.com)."""
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_BLOCKED_NAMES = ("localhost", "*.localhost", "*.local", "*.internal", "*.home.arpa")


def _host_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """``host`` equals a pattern, or is a subdomain of a ``*.domain`` pattern."""
    return any(host == p or (p.startswith("*.") and host.endswith(p[1:])) for p in patterns)


@dataclass(frozen=True)
class ReplyPolicy:
    """Where a reply may be sent; checked for every reply, at send time, whoever set the destination.

    A thread's ``reply_to`` was checked when its trigger arrived, but a label is data at rest: an older
    thread, a bug in a trigger, or a launch that slipped a label through must still not make us POST a
    signed (or Slack-formatted) document to our own network. So the check is repeated here, just before
    the request, with the settings of the function that sends it.

    ``callback_hosts`` (``STEPFOLD_REPLY_CALLBACK_HOSTS``) restricts ``stepfold`` callbacks to these hosts
    (``shop.example.com`` or ``*.example.com``); empty allows any public https host. ``allow_loopback``
    (``STEPFOLD_ALLOW_LOOPBACK_CALLBACKS``) lets replies go to this machine over http or https: for the local
    stack and tests, never set in AWS.
    """

    callback_hosts: tuple[str, ...] = ()
    allow_loopback: bool = False

    def check(self, url: str, fmt: ReplyFormat) -> None:
        """Raise :class:`ReplyError` (naming the host, never the URL) unless ``url`` is an allowed destination."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise ReplyError("reply not sent: the destination is not a valid URL") from None
        if "@" in parts.netloc or "\\" in url or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
            raise ReplyError("reply not sent: the destination URL has credentials, spaces or backslashes in it")
        host = (parts.hostname or "").rstrip(".")
        if not host:
            raise ReplyError("reply not sent: the destination URL has no host; it must be an absolute https:// URL")
        if not host.isascii():
            raise ReplyError(f"reply to {host} not sent: write an international host name in its xn-- (punycode) form")
        address = literal_ip(host)
        loopback = host == "localhost" or (address is not None and address.is_loopback)
        if loopback and self.allow_loopback:
            if parts.scheme not in ("http", "https"):
                raise ReplyError(f"reply to {host} not sent: the URL must be http(s)://")
            return
        if address is not None and (not address.is_global or address.is_multicast):
            raise ReplyError(
                f"reply to {host} not sent: {address} is a loopback, private, link-local or reserved address; "
                "replies go to public hosts only"
            )
        if address is None and ("." not in host or _host_matches(host, _BLOCKED_NAMES)):
            raise ReplyError(f"reply to {host} not sent: it is a local or internal name; replies go to public hosts")
        if parts.scheme != "https":
            raise ReplyError(f"reply to {host} not sent: replies go over https:// only (got {parts.scheme or 'none'})")
        if fmt == "slack":
            if not _host_matches(host, SLACK_HOSTS) or port not in (None, 443):
                raise ReplyError(
                    f"reply to {host} not sent: a Slack reply goes only to Slack's own hosts (*.slack.com)"
                )
        elif self.callback_hosts and not _host_matches(host, self.callback_hosts):
            raise ReplyError(
                f"reply to {host} not sent: the host is not in STEPFOLD_REPLY_CALLBACK_HOSTS; add it there to allow it"
            )


def literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address ``host`` spells, if it is an IP literal in any form a resolver accepts; else None.

    ``127.1``, ``0x7f000001``, ``2130706433`` and ``0177.0.0.1`` all reach 127.0.0.1 through the C resolver.
    Any host whose last label is numeric cannot be a DNS name (no top-level domain is numeric), so it is an
    address: a canonical dotted quad is parsed, every other spelling is refused as the unspecified address.
    """
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # IPv6 (brackets already stripped), or a dotted quad
    except ValueError:
        pass
    else:
        if isinstance(address, ipaddress.IPv6Address):  # ::ffff:127.0.0.1 and 2002:7f00:1:: are 127.0.0.1
            return address.ipv4_mapped or address.sixtofour or address
        return address
    if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return ipaddress.IPv4Address(0)  # an unusual spelling of an IPv4 address: treated as unspecified, refused
    return None


def send_reply(thread: Thread, replier: Replier, policy: ReplyPolicy | None = None) -> ReplyResult | None:
    """Send the reply ``thread`` owes, if any, where ``policy`` allows. Never raises: a reply is reported, not retried.

    ``policy`` defaults to the strictest one (public https hosts only, no loopback): a caller that forgets it
    still cannot reach this machine or the private network.
    """
    reply = reply_for(thread)
    if reply is None:
        return None
    try:
        (policy or ReplyPolicy()).check(reply.url, reply.format)
        replier.send(reply)
    except ReplyError as exc:
        return ReplyResult(thread.id, reply.delivery_id, reply.host, reply.format, sent=False, error=str(exc))
    except Exception as exc:  # noqa: BLE001 - the thread already ended; a broken replier must not fail its execution
        error = redact(f"{type(exc).__name__}: {exc}", reply.url)[:300]
        return ReplyResult(thread.id, reply.delivery_id, reply.host, reply.format, sent=False, error=error)
    return ReplyResult(thread.id, reply.delivery_id, reply.host, reply.format, sent=True)


@dataclass
class RecordingReplier:
    """Keeps replies in memory (tests and the local stack read them)."""

    sent: list[Reply] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def send(self, reply: Reply) -> None:
        with self._lock:
            self.sent.append(reply)
