"""Triggers (Factor 11): agents start where work happens, and every trigger ends in one idempotent launch.

Declarations
    An agent lists its triggers on ``Agent.triggers``: :class:`Webhook` (a signed HTTP delivery from
    GitHub, Slack or any sender using our scheme), :class:`Schedule` (an EventBridge Scheduler cron) and
    :class:`EventRule` (an EventBridge event pattern). Each carries a pure function from the trigger's
    payload to the thread's first user input: only what the model needs (Factor 3), never the raw payload.

One deduplicated entry
    Every delivery has an id its sender keeps on a retry: Slack's ``event_id`` or ``trigger_id``, the ``id``
    of our own envelope, the EventBridge event ``id``, or a schedule's name plus its scheduled time.
    :func:`launch_from` hands ``<kind>:<source>:<id>`` to :func:`core.services.control.launch` as the idempotency key,
    and launch derives the thread id from it. A redelivery therefore names the thread that already exists:
    nothing new starts, and the answer is that thread's id.

    The dedup key must come from what the signature covers, or a replay with a fresh id starts a new thread.
    Slack's and our ids are inside the signed body, and their signed timestamp bounds a replay to the five
    minutes in which the same id finds the same thread. GitHub's ``X-GitHub-Delivery`` is an unsigned header
    and GitHub signs no timestamp, so a GitHub delivery is keyed by ``sha256:<digest of the signed body>``:
    the same body under any delivery id (a redelivery, or a captured request replayed months later) names
    the same thread. The delivery id is still recorded, as the ``delivery_id`` label.

    There is no separate ``TRIGGER#<source>#<id>`` item (ARCHITECTURE.md, "The data model"): the derived
    thread id already is the dedup record: permanent instead of TTL'd, written in the same conditional put that
    creates the thread (so it cannot disagree with it), and a duplicate is answered from the id alone.
    Each triggered thread records where it came from in its labels (``trigger``, ``trigger_event``,
    ``delivery_id``); deliveries that started nothing are in the function's logs.

Signatures (:func:`read_webhook` checks them before it parses anything)
    github    ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>``. GitHub signs no
              timestamp, so a captured delivery can be replayed; keying it by the body's digest makes a
              replay start nothing new (see above).
    slack     ``X-Slack-Signature: v0=<hex HMAC-SHA256(secret, "v0:<ts>:<raw body>")>`` with
              ``X-Slack-Request-Timestamp: <ts>``; a timestamp more than five minutes away is refused.
    stepfold  (any other source name) ``X-Stepfold-Signature: t=<unix>,v2=<hex HMAC-SHA256(secret,
              "<t>\\n<METHOD>\\n<path>\\n<raw body>")>`` with ``path`` ``/webhooks/<source>`` (without any
              stage or base-path prefix), five minutes' tolerance. Every source but GitHub and Slack shares
              this one secret, so the signature names the route: a delivery captured on its way to
              ``/webhooks/shop`` cannot be replayed to ``/webhooks/billing``. (``v1``, timestamp and body
              only, is refused with a message saying so.) The body is the envelope
              ``{"id": ..., "type": ..., "data": ..., "callback_url": ...}``; everything that matters is
              inside the signed body, so a captured request cannot be redirected.

Pattern matching
    :func:`matches` implements the part of EventBridge's event patterns that rules here use: exact values,
    lists of alternatives, nested objects, ``{"prefix": ...}`` and ``{"exists": true|false}``.

Schedule expressions
    ``cron(...)``, ``rate(...)`` and ``at(...)`` as EventBridge Scheduler reads them, ``L``, ``W``, ``#`` and
    wrap-around ranges included. :meth:`Schedule.next_fire` and :meth:`Schedule.previous_fire` evaluate them
    locally (``stepfold schedules``, the local stack) in the schedule's time zone across daylight saving time as
    Scheduler does; what EventBridge refuses is refused at declaration.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal, assert_never
from urllib.parse import parse_qsl, urlsplit

from core.kernel.parsing import BadInputError, ascii_int, loads_json
from core.kernel.trigger_types import (
    MAX_INPUT_CHARS,
    EventRule,
    Payload,
    Schedule,
    ScheduleExpression,
    Scheme,
    Trigger,
    Webhook,
    matches,
    parse_schedule_expression,
    payload_input,
    scheme_of,
    validate_pattern,
)
from core.services.control import ControlError, Executions, launch
from core.services.notify import SIGNATURE_HEADER, SIGNATURE_TOLERANCE_SECONDS
from core.services.replies import ReplyFormat

if TYPE_CHECKING:
    from core.kernel.agent import Agent
    from core.kernel.store import ThreadStore

# The declarations live in core/kernel/trigger_types.py, which imports no other core module, so that core.kernel.agent
# (Agent.triggers) need not import this module, which imports core.services.control and through it core.kernel.agent.
# They are
# re-exported from here, where callers have always found them. The list names the re-exports only (what mypy's
# strict mode needs to let callers import them); the names defined below are public without being listed.
__all__ = [
    "MAX_INPUT_CHARS",
    "EventRule",
    "Payload",
    "Schedule",
    "ScheduleExpression",
    "Scheme",
    "Trigger",
    "Webhook",
    "matches",
    "parse_schedule_expression",
    "payload_input",
    "scheme_of",
    "validate_pattern",
]

_MAX_ID = 200
_MAX_TIMESTAMP_DIGITS = 12
"""Unix seconds have 10 digits until 2286; more is not a timestamp, whatever ``int`` would make of it."""
_MAX_URL = 2000


# --- the registry, read from the agents ------------------------------------------------------------------------


@dataclass(frozen=True)
class Subscription:
    """One trigger of one agent, with its resolved name (schedules and rules)."""

    agent: str
    trigger: Trigger
    name: str


def subscriptions(agents: Mapping[str, Agent]) -> list[Subscription]:
    """Every declared trigger; schedule and rule names default to ``<agent>`` (``<agent>-<n>`` if several)."""
    found: list[Subscription] = []
    names: dict[str, str] = {}
    for agent in agents.values():
        counts = {kind: sum(isinstance(t, kind) for t in agent.triggers) for kind in (Schedule, EventRule)}
        seen = dict.fromkeys((Schedule, EventRule), 0)
        for trigger in agent.triggers:
            name = ""
            if isinstance(trigger, Schedule | EventRule):
                kind = type(trigger)
                seen[kind] += 1
                name = trigger.name or (agent.name if counts[kind] == 1 else f"{agent.name}-{seen[kind]}")
                label = f"{'schedule' if kind is Schedule else 'rule'} {name}"
                if label in names:
                    raise ValueError(f"{label} is declared twice (agents {names[label]} and {agent.name})")
                names[label] = agent.name
            found.append(Subscription(agent.name, trigger, name))
    return found


def schedules(agents: Mapping[str, Agent]) -> dict[str, Subscription]:
    """Schedules by name."""
    return {s.name: s for s in subscriptions(agents) if isinstance(s.trigger, Schedule)}


def event_rules(agents: Mapping[str, Agent]) -> list[Subscription]:
    return [s for s in subscriptions(agents) if isinstance(s.trigger, EventRule)]


def webhooks(agents: Mapping[str, Agent], source: str | None = None) -> list[Subscription]:
    return [
        s
        for s in subscriptions(agents)
        if isinstance(s.trigger, Webhook) and (source is None or s.trigger.source == source)
    ]


def known_source(source: str, agents: Mapping[str, Agent]) -> bool:
    """GitHub, Slack and ``stepfold`` always (a challenge or a ping needs an answer); others once declared."""
    return source in ("github", "slack", "stepfold") or bool(webhooks(agents, source))


# --- errors ----------------------------------------------------------------------------------------------------


class TriggerError(Exception):
    """A delivery that starts nothing, saying why in words the sender can act on.

    ``str(exc)`` is what the sender is told; ``reason`` (defaulting to the same) is what the log says, for
    refusals whose full story should not go to an unauthenticated caller. It carries no HTTP status: the
    triggers function answers each kind in its own words (ARCHITECTURE.md, "HTTP statuses belong to handlers").
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


class UnknownSourceError(TriggerError):
    """No webhook source of this name is enabled here (undeclared, or its scheme has no secret)."""


class SignatureError(TriggerError):
    """Missing, malformed, wrong or stale signature: the delivery is not from who it claims to be."""


class BadDeliveryError(TriggerError):
    """Signed, but not a delivery this source sends (no id, not JSON, a callback URL we will not call)."""


class UnknownScheduleError(TriggerError):
    """No declared schedule has this name."""


# --- signatures ------------------------------------------------------------------------------------------------


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.strip().lower().encode("utf-8", "replace"))


def sign_github(secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return f"sha256={_hmac_hex(secret, body)}"


def sign_slack(secret: str, timestamp: int, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack sends for ``body`` at ``timestamp``."""
    return f"v0={_hmac_hex(secret, b'v0:' + str(timestamp).encode() + b':' + body)}"


def webhook_path(source: str) -> str:
    """The path a stepfold-scheme signature covers for ``source``: the route, without stage or base path."""
    return f"/webhooks/{source}"


def stepfold_message(timestamp: int, method: str, path: str, body: bytes) -> bytes:
    """What ``v2`` signs: ``"<t>\\n<METHOD>\\n<path>\\n"`` then the raw body (newlines cannot occur in a path)."""
    return f"{timestamp}\n{method.upper()}\n{path}\n".encode() + body


def sign_stepfold(secret: str, timestamp: int, body: bytes, *, path: str, method: str = "POST") -> str:
    """The ``X-Stepfold-Signature`` value for ``body`` sent as ``METHOD path`` at ``timestamp``."""
    return f"t={timestamp},v2={_hmac_hex(secret, stepfold_message(timestamp, method, path, body))}"


def verify_github(secret: str, header: str | None, body: bytes) -> None:
    """Raise :class:`SignatureError` unless ``header`` is GitHub's signature of ``body``."""
    if not header:
        raise SignatureError("the X-Hub-Signature-256 header is missing: configure the webhook's secret")
    algorithm, _, given = header.partition("=")
    if algorithm.strip() != "sha256" or not given:
        raise SignatureError("X-Hub-Signature-256 is not of the form sha256=<hex>")
    if not _same(_hmac_hex(secret, body), given):
        raise SignatureError("X-Hub-Signature-256 does not match the body: check the webhook's secret")


def _fresh(timestamp: str, now: int, tolerance: int, header: str) -> int:
    ts = ascii_int(timestamp.strip(), max_digits=_MAX_TIMESTAMP_DIGITS)
    if ts is None:
        raise SignatureError(f"{header} must be unix seconds: 1-{_MAX_TIMESTAMP_DIGITS} ASCII digits")
    if abs(now - ts) > tolerance:
        raise SignatureError(f"the signature is {abs(now - ts)} s from our clock (over {tolerance} s): a replay?")
    return ts


def verify_slack(
    secret: str,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    *,
    now: int,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> None:
    """Raise :class:`SignatureError` unless Slack signed ``body`` with ``secret`` within ``tolerance`` s of ``now``."""
    if not timestamp or not signature:
        raise SignatureError("the X-Slack-Request-Timestamp and X-Slack-Signature headers are required")
    ts = _fresh(timestamp, now, tolerance, "X-Slack-Request-Timestamp")
    version, _, given = signature.partition("=")
    if version != "v0" or not given:
        raise SignatureError("X-Slack-Signature is not of the form v0=<hex>")
    if not _same(sign_slack(secret, ts, body).removeprefix("v0="), given):
        raise SignatureError("X-Slack-Signature does not match the body: check the app's signing secret")


def verify_stepfold(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    path: str,
    method: str = "POST",
    now: int,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
) -> None:
    """Raise :class:`SignatureError` unless ``header`` is ``t=<unix>,v2=<hex>`` over this request, fresh."""
    if not header:
        raise SignatureError(f"the {SIGNATURE_HEADER} header is missing")
    parts = [p.strip().partition("=") for p in header.split(",")]
    timestamps = [value for key, _, value in parts if key == "t"]
    given = [value for key, _, value in parts if key == "v2" and value]
    if not given and any(key == "v1" for key, _, _ in parts):
        raise SignatureError(
            f"{SIGNATURE_HEADER} v1 (timestamp and body only) is not accepted: sign v2, HMAC-SHA256 of "
            f'"<t>\\n<METHOD>\\n{path}\\n<raw body>"'
        )
    if len(timestamps) != 1 or not given:
        raise SignatureError(f"{SIGNATURE_HEADER} is not of the form t=<unix seconds>,v2=<hex>")
    ts = _fresh(timestamps[0], now, tolerance, f"{SIGNATURE_HEADER} t")
    expected = sign_stepfold(secret, ts, body, path=path, method=method).rsplit("v2=", 1)[1]
    if not any(_same(expected, g) for g in given):  # several v2 values: a sender rotating its secret
        raise SignatureError(
            f"{SIGNATURE_HEADER} does not match: check the shared secret, and that you signed "
            f"{method.upper()} {path} with the raw body"
        )


# --- reading a delivery ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookSecrets:
    """The shared secrets per scheme; a scheme without one accepts nothing."""

    github: str | None = field(default=None, repr=False)
    slack: str | None = field(default=None, repr=False)
    stepfold: str | None = field(default=None, repr=False)

    def of(self, scheme: Scheme) -> str | None:
        return {"github": self.github, "slack": self.slack, "stepfold": self.stepfold}[scheme]


_SECRET_NAMES: dict[Scheme, str] = {
    "github": "github_webhook_secret",
    "slack": "slack_signing_secret",
    "stepfold": "stepfold_webhook_secret",
}


@dataclass(frozen=True)
class Delivery:
    """A verified delivery: who sent it, which event, its sender's id, and the payload ``to_input`` reads."""

    source: str
    event: str
    delivery_id: str
    payload: Payload
    reply_to: str | None = None
    reply_format: ReplyFormat | None = None
    dedup: str = ""
    """What names the thread when ``delivery_id`` is not covered by the signature (GitHub: the body's digest)."""

    @property
    def key(self) -> str:
        """The launch idempotency key (see the module docstring)."""
        return f"webhook:{self.source}:{self.dedup or self.delivery_id}"


@dataclass(frozen=True)
class Challenge:
    """Slack's ``url_verification``: answer with the challenge, start nothing."""

    challenge: str


def read_webhook(
    source: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    agents: Mapping[str, Agent],
    secrets: WebhookSecrets,
    now: int,
    method: str = "POST",
    allow_loopback: bool = False,
) -> Delivery | Challenge:
    """Verify the delivery's signature, then parse it. Raises a :class:`TriggerError` for anything refused.

    An unknown source and a known one without a secret get the same answer, which names no source: the
    caller is not authenticated yet, and the list of what is configured is for the operator's log
    (``TriggerError.reason``), not for them. ``allow_loopback`` lets callback URLs point at this machine,
    for the local stack only.
    """
    shown = source if len(source) <= 40 else source[:40] + "..."
    public = (
        f"no webhook source {shown!r} is enabled here: check the URL's last segment against the sources your "
        "agents declare, and that the source's secret is configured (the function's log says which is missing)"
    )
    if not known_source(source, agents):
        raise UnknownSourceError(public, reason=f"no webhook source {shown!r}; known: {', '.join(_sources(agents))}")
    scheme = scheme_of(source)
    secret = secrets.of(scheme)
    if not secret:
        raise UnknownSourceError(
            public, reason=f"webhooks from {source} are not enabled: add {_SECRET_NAMES[scheme]} to the stepfold secret"
        )
    lower = {k.lower(): v for k, v in headers.items()}
    match scheme:
        case "github":
            verify_github(secret, lower.get("x-hub-signature-256"), body)
            return _github(lower, body)
        case "slack":
            verify_slack(secret, lower.get("x-slack-request-timestamp"), lower.get("x-slack-signature"), body, now=now)
            return _slack(body, lower.get("content-type", ""), allow_loopback=allow_loopback)
        case "stepfold":
            header = lower.get(SIGNATURE_HEADER.lower())
            verify_stepfold(secret, header, body, path=webhook_path(source), method=method, now=now)
            return _stepfold(source, body, allow_loopback=allow_loopback)
        case _:
            assert_never(scheme)


def _sources(agents: Mapping[str, Agent]) -> list[str]:
    declared = {s.trigger.source for s in webhooks(agents) if isinstance(s.trigger, Webhook)}
    return sorted({"github", "slack", "stepfold", *declared})


def _json_object(raw: bytes | str, what: str) -> Payload:
    try:
        value = loads_json(raw, what=f"the {what}")
    except BadInputError as exc:
        raise BadDeliveryError(str(exc)) from None
    if not isinstance(value, dict):
        raise BadDeliveryError(f"the {what} is JSON but not an object")
    return value


def _id(value: Any, what: str) -> str:
    text = str(value or "").strip()
    if not text or len(text) > _MAX_ID or not text.isprintable():
        raise BadDeliveryError(f"{what} is missing or not a short printable id")
    return text


def _github(headers: Mapping[str, str], body: bytes) -> Delivery:
    event = headers.get("x-github-event", "").strip()
    if not event:
        raise BadDeliveryError("the X-GitHub-Event header is missing")
    delivery_id = _id(headers.get("x-github-delivery"), "X-GitHub-Delivery")
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        payload = _json_object(form.get("payload", ""), "payload form field")
    else:
        payload = _json_object(body, "body")
    action = payload.get("action")
    name = f"{event}.{action}" if isinstance(action, str) and action else event
    return Delivery("github", name, delivery_id, payload, dedup=f"sha256:{hashlib.sha256(body).hexdigest()[:40]}")


def _slack(body: bytes, content_type: str, *, allow_loopback: bool) -> Delivery | Challenge:
    if content_type.startswith("application/x-www-form-urlencoded"):
        form: Payload = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        command = str(form.get("command", ""))
        if not command.startswith("/"):  # an interaction (button, modal): no agent subscribes to these yet
            return Delivery("slack", "interaction", hashlib.sha256(body).hexdigest()[:32], form)
        url = form.get("response_url")
        reply = check_reply_url(str(url), "slack", allow_loopback=allow_loopback) if url else None
        return Delivery(
            "slack", command, _id(form.get("trigger_id"), "trigger_id"), form, reply, "slack" if reply else None
        )
    payload = _json_object(body, "body")
    if payload.get("type") == "url_verification":
        return Challenge(str(payload.get("challenge", "")))
    inner = payload.get("event")
    event = str(inner.get("type", "")) if isinstance(inner, dict) else ""
    return Delivery("slack", event or str(payload.get("type", "")), _id(payload.get("event_id"), "event_id"), payload)


def _stepfold(source: str, body: bytes, *, allow_loopback: bool) -> Delivery:
    payload = _json_object(body, "body")
    event = str(payload.get("type") or "").strip()
    if not event:
        raise BadDeliveryError('the envelope has no "type": send {"id", "type", "data", "callback_url"?}')
    delivery_id = _id(payload.get("id"), 'the envelope\'s "id"')
    url = payload.get("callback_url")
    if url is not None and not isinstance(url, str):
        raise BadDeliveryError("callback_url must be a string URL")
    reply = check_reply_url(url, "stepfold", allow_loopback=allow_loopback) if url else None
    return Delivery(source, event, delivery_id, payload, reply, "stepfold" if reply else None)


def check_reply_url(url: str, fmt: ReplyFormat, *, allow_loopback: bool = False) -> str:
    """``url`` if the answer may be sent there: https to a public host; Slack only to Slack.

    The function POSTs the thread's answer to this URL from inside the VPC/Lambda network, so a URL naming
    this machine (loopback) or the link-local range (169.254.169.254 is the instance metadata service) would
    let whoever can sign a delivery aim our requests at things only we can reach. Those are refused unless
    ``allow_loopback`` (the local stack, where the receiver really is on this machine; plain http is then
    allowed too). Host names that merely resolve to such addresses are not caught here: that needs a check
    at connection time.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        raise BadDeliveryError("the callback URL is not a valid URL: send an absolute https:// URL") from None
    if len(url) > _MAX_URL:
        raise BadDeliveryError(f"the callback URL is over {_MAX_URL} characters")
    local = is_loopback_or_link_local(host)
    if local and not allow_loopback:
        raise BadDeliveryError(
            "the callback URL points at a loopback or link-local address; send a public https:// URL"
        )
    if not (parts.scheme == "https" or (parts.scheme == "http" and local)) or not host:
        raise BadDeliveryError("the callback URL must be an absolute https:// URL")
    if fmt == "slack" and not (host == "slack.com" or host.endswith(".slack.com") or local):
        raise BadDeliveryError("a Slack response_url must point at slack.com")
    return url


def is_loopback_or_link_local(host: str) -> bool:
    """Whether ``host`` (a URL's host name) is this machine or link-local, in any spelling a resolver accepts.

    Besides ``localhost`` and the plain forms (``127.0.0.1``, ``::1``, ``169.254.169.254``, ``fe80::1``) this
    catches the ones ``inet_aton`` and so most HTTP clients accept (``127.1``, ``2130706433``, ``0x7f.1``),
    IPv4-mapped IPv6 (``::ffff:127.0.0.1``) and the unspecified address (``0.0.0.0`` reaches loopback).
    """
    name = host.strip().strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(name)
    except ValueError:
        try:
            ip = ipaddress.IPv4Address(socket.inet_aton(name))
        except (OSError, ValueError):
            return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_link_local or ip.is_unspecified


# --- starting threads ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Started:
    """One thread a trigger launched, or found already launched (``created=False``: a redelivery)."""

    agent: str
    thread_id: str
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "thread_id": self.thread_id, "created": self.created}


@dataclass(frozen=True)
class Launcher:
    """What launching needs: the stores, the execution starter, the agents and a clock."""

    threads: ThreadStore
    executions: Executions
    agents: Mapping[str, Agent]
    clock: Callable[[], datetime]


def launch_from(
    launcher: Launcher, agent: str, text: str, *, key: str, source: str, labels: Mapping[str, str]
) -> Started:
    """The one idempotent entry every trigger ends in: ``key`` names the thread (see the module docstring)."""
    launched = launch(
        launcher.threads,
        launcher.executions,
        launcher.agents,
        agent=agent,
        text=text,
        clock=launcher.clock,
        idempotency_key=key,
        source=source,
        labels=labels,
        trigger_labels=True,  # only a verified trigger may set trigger/delivery_id/reply_* labels
    )
    return Started(agent, launched.thread.id, launched.created)


def start_webhook(launcher: Launcher, delivery: Delivery) -> list[Started]:
    """Launch every agent subscribed to this delivery's event (none: nothing starts)."""
    started: list[Started] = []
    labels = {
        "trigger": f"webhook:{delivery.source}",
        "trigger_event": delivery.event,
        "delivery_id": delivery.delivery_id,
    }
    if delivery.reply_to and delivery.reply_format:
        labels |= {"reply_to": delivery.reply_to, "reply_format": delivery.reply_format}
    for sub in webhooks(launcher.agents, delivery.source):
        hook = sub.trigger
        assert isinstance(hook, Webhook)
        if hook.accepts(delivery.event):
            started.append(
                launch_from(
                    launcher,
                    sub.agent,
                    hook.to_input(delivery.payload),
                    key=delivery.key,
                    source=f"{delivery.source}:{delivery.event}"[:100],
                    labels=labels,
                )
            )
    return started


def scheduled_time(value: str) -> datetime:
    """Scheduler's ``<aws.scheduler.scheduled-time>`` (ISO 8601, ``Z``) as an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise BadDeliveryError(f"scheduled_time {value!r} is not an ISO 8601 time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def start_schedule(launcher: Launcher, name: str, scheduled: str | datetime) -> Started:
    """A schedule fired: one thread per (schedule, scheduled time), however often Scheduler delivers it."""
    found = schedules(launcher.agents).get(name)
    if found is None:
        known = ", ".join(sorted(schedules(launcher.agents))) or "none"
        raise UnknownScheduleError(f"no schedule {name!r}; declared: {known}")
    when = scheduled if isinstance(scheduled, datetime) else scheduled_time(scheduled)
    schedule = found.trigger
    assert isinstance(schedule, Schedule)
    stamp = iso(when)
    return launch_from(
        launcher,
        found.agent,
        schedule.input_for(when),
        key=f"schedule:{name}:{stamp}",
        source=f"schedule:{name}",
        labels={"trigger": f"schedule:{name}", "trigger_event": stamp},
    )


ENVELOPE_FIELDS = ("version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail")


def is_event_envelope(value: Mapping[str, Any]) -> bool:
    """An EventBridge event as a rule target receives it."""
    return "detail-type" in value and "source" in value and "detail" in value


def start_event(launcher: Launcher, envelope: Mapping[str, Any]) -> list[Started]:
    """Launch every agent whose rule matches this EventBridge event; its ``id`` is the idempotency key."""
    if not is_event_envelope(envelope):
        raise BadDeliveryError("not an EventBridge event: detail-type, source and detail are required")
    event_id = _id(envelope.get("id"), "the event's id")
    payload = dict(envelope)
    started: list[Started] = []
    for sub in event_rules(launcher.agents):
        rule = sub.trigger
        assert isinstance(rule, EventRule)
        if rule.matches(payload):
            started.append(
                launch_from(
                    launcher,
                    sub.agent,
                    rule.to_input(payload),
                    key=f"event:{event_id}",
                    source=f"event:{envelope['detail-type']}"[:100],
                    labels={
                        "trigger": f"rule:{sub.name}",
                        "trigger_event": str(envelope["detail-type"]),
                        "delivery_id": event_id,
                    },
                )
            )
    return started


WebhookOutcome = Literal["started", "duplicate", "ignored", "challenge", "acknowledged"]
"""What became of a delivery that was accepted:

``started``       it started at least one new thread
``duplicate``     a redelivery: every thread it names already exists, nothing new started
``ignored``       no agent subscribes to its event
``challenge``     Slack's ``url_verification``, answered with its challenge
``acknowledged``  a Slack slash command: Slack shows the person the body's message, whatever started
"""


@dataclass(frozen=True)
class WebhookAccepted:
    """A delivery that was verified and read: its outcome, what the sender is told, what it started, and why."""

    outcome: WebhookOutcome
    body: dict[str, Any]
    started: tuple[Started, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class WebhookRefused:
    """A delivery that started nothing: ``error`` says what was wrong (its type is the kind of refusal, its message
    what the sender is told) and ``reason`` what the log says."""

    error: TriggerError | ControlError
    reason: str

    outcome: ClassVar[Literal["refused"]] = "refused"
    started: ClassVar[tuple[Started, ...]] = ()


WebhookAnswer = WebhookAccepted | WebhookRefused


def answer_webhook(
    launcher: Launcher,
    source: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    secrets: WebhookSecrets,
    now: int,
    method: str = "POST",
    allow_loopback: bool = False,
) -> WebhookAnswer:
    """Verify, parse and start: a bad signature, an unknown source or a bad delivery (:class:`TriggerError`) or
    an input :func:`~core.services.control.launch` refuses (:class:`~core.services.control.ControlError`) is
    refused and starts nothing; otherwise the :data:`WebhookOutcome` says what happened."""
    try:
        received = read_webhook(
            source,
            headers,
            body,
            agents=launcher.agents,
            secrets=secrets,
            now=now,
            method=method,
            allow_loopback=allow_loopback,
        )
    except TriggerError as exc:
        return WebhookRefused(exc, exc.reason)
    if isinstance(received, Challenge):
        return WebhookAccepted("challenge", {"challenge": received.challenge}, reason="slack url_verification")
    try:
        started = start_webhook(launcher, received)
    except ControlError as exc:
        return WebhookRefused(exc, str(exc))
    return _answer(received, started)


def _answer(delivery: Delivery, started: list[Started]) -> WebhookAccepted:
    slash = delivery.source == "slack" and delivery.event.startswith("/")
    if not started:
        why = f"no agent subscribes to {delivery.source} {delivery.event}"
        if slash:
            return WebhookAccepted(
                "acknowledged",
                {"response_type": "ephemeral", "text": f"No agent handles {delivery.event}."},
                reason=why,
            )
        return WebhookAccepted("ignored", {"ignored": why}, reason=why)
    created = any(s.created for s in started)
    first = started[0]
    if slash:
        text = f"On it: {first.agent} is working on this (thread {first.thread_id})."
        if delivery.reply_to:
            text += " The answer will be posted here."
        return WebhookAccepted("acknowledged", {"response_type": "ephemeral", "text": text}, tuple(started))
    body: dict[str, Any] = {"thread_id": first.thread_id, "agent": first.agent}
    if not created:
        body["duplicate"] = True
    if len(started) > 1:
        body["threads"] = [s.as_dict() for s in started]
    if created:
        return WebhookAccepted("started", body, tuple(started), "started")
    return WebhookAccepted("duplicate", body, tuple(started), "redelivery")
