"""The HTTP transport for outbound results: posts a :class:`~core.services.replies.Reply` with bounded retries.

What to send and where it may go is the service's (:mod:`core.services.replies`); this module only connects,
after checking where the host name points (ARCHITECTURE.md, "Adapters").
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from core.services.notify import SIGNATURE_HEADER, redact, sign_webhook
from core.services.replies import DELIVERY_HEADER, Reply, ReplyError, literal_ip

if TYPE_CHECKING:
    import httpx

__all__ = ["RETRY_STATUSES", "HttpReplier"]

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
"""Answers worth another attempt: timeouts, throttling and server errors."""


class HttpReplier:
    """POSTs replies with an injected ``httpx.Client``; retries network errors, 429 and 5xx a few times.

    ``secret`` (or a function returning it, so the secret is read only when a signed reply is due) signs
    ``stepfold`` replies: the ``reply_signing_key`` secret, never an incoming webhook's secret. Without it
    such a reply is refused rather than sent unsigned. Redirects are never followed (a 3xx could point
    anywhere :class:`ReplyPolicy` refuses).
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
        resolve: Callable[[str, int], list[str]] | None = None,
        allow_loopback: bool = False,
    ) -> None:
        self._resolve = resolve or _system_resolve
        self._allow_loopback = allow_loopback
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
                    f"reply to {reply.host} not sent: it must be signed and there is no reply_signing_key; add "
                    "reply_signing_key to the stepfold secret (STEPFOLD_REPLY_SIGNING_KEY locally)"
                )
        self._check_resolved(reply)
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
            if response.status_code not in RETRY_STATUSES:
                break
        raise ReplyError(f"reply to {reply.host} not delivered: {last}")

    def _check_resolved(self, reply: Reply) -> None:
        """Refuse a host NAME that resolves to this machine or a private network (``127.0.0.1.nip.io``, an internal
        zone): :class:`ReplyPolicy` judged the name, this judges where it points, just before connecting. (A name
        that changes its answer between this lookup and the connection is not caught; in production,
        ``STEPFOLD_REPLY_CALLBACK_HOSTS`` is the defence against a hostile DNS server.)"""
        parts = urlsplit(reply.url)
        host = (parts.hostname or "").rstrip(".")
        if literal_ip(host) is not None:
            return  # an address, already judged by the policy
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in self._resolve(host, port)]
        except (OSError, ValueError):
            raise ReplyError(f"reply to {host} not sent: the name does not resolve") from None
        for resolved in addresses:
            mapped = resolved.ipv4_mapped if isinstance(resolved, ipaddress.IPv6Address) else None
            address = mapped or resolved
            if address.is_loopback and self._allow_loopback:
                continue
            if not address.is_global or address.is_multicast:
                raise ReplyError(
                    f"reply to {host} not sent: the name resolves to {address}, a loopback, private, link-local or "
                    "reserved address; replies go to public hosts only"
                )


def _system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host`` (what the connection would use)."""
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
