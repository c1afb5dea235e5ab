"""API Gateway HTTP API events (payload format 2.0): the one builder the local front door and the tests share.

The local front door (:mod:`infra.local.http`, ``stepfold serve``) turns each real HTTP request into one of these
events, and the functional tests build theirs with the same function, so a handler sees one shape from both, the
shape API Gateway sends (ARCHITECTURE.md "The local stack"). What API Gateway does to a request on its way to the
function, and :func:`http_api_event` does too:

- header names are lower-cased, repeated headers joined with commas, the connection's hop-by-hop headers dropped,
  and ``cookie`` headers taken out of ``headers`` into ``cookies``, one entry per cookie;
- ``x-forwarded-for``, ``x-forwarded-port``, ``x-forwarded-proto`` and ``x-amzn-trace-id`` are added when the
  client sent none;
- ``rawPath`` and ``rawQueryString`` are the path and the query as sent; ``queryStringParameters`` is the query
  decoded, repeated keys joined with commas, and absent without a query; ``pathParameters`` are the route's
  parameters, absent when it has none;
- a body with a text content type (``text/*``, JSON, XML, JavaScript) passes as text; any other body (a form post,
  a body without a content type, bytes that are not UTF-8) arrives base64-encoded with ``isBase64Encoded: true``;
  without a body there is no ``body`` key;
- ``requestContext`` says which account, API, domain (and its first label) and stage, the ``http`` facts (method,
  path, protocol, source IP, user agent), a request id, the route key, the time in both of API Gateway's forms
  and, when an authorizer let the request in, what it answered: ``{"lambda": context}`` for a Lambda authorizer,
  ``{"jwt": {"claims": ..., "scopes": ...}}`` for a JWT one.

:func:`authorizer_event` is the payload 2.0 REQUEST event API Gateway sends a Lambda authorizer for such a request.
Nothing here imports the local stack, so a test can build events without moto.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

ACCOUNT = "123456789012"
REGION = "us-east-1"
API_ID = "localapi01"
STAGE = "$default"
"""The stage the template deploys (SAM's HttpApi default): with it, ``rawPath`` carries no stage prefix."""
DEFAULT_ROUTE = "$default"
SOURCE_IP = "203.0.113.7"
"""A documentation address (RFC 5737), for events that did not come over a socket."""
TEXT_TYPES = ("application/json", "application/xml", "application/javascript")
"""Besides ``text/*``, the content types API Gateway passes as text; every other body (form posts and requests
without a content type included) arrives base64-encoded with ``isBase64Encoded: true``."""
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)
"""Headers of the connection to API Gateway, which it does not pass on to the function."""

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_METHOD = re.compile(r"[A-Za-z]+")
_ROUTE_KEY = re.compile(r"[A-Z]+ /\S*")

Headers = Mapping[str, str] | Iterable[tuple[str, str]]
"""Request headers as a client sent them: a mapping, or ``(name, value)`` pairs in order (repeats allowed)."""


def http_api_event(
    method: str,
    path: str,
    *,
    query: str = "",
    headers: Headers = (),
    body: bytes | str | None = None,
    base64_body: bool | None = None,
    route_key: str = DEFAULT_ROUTE,
    path_parameters: Mapping[str, str] | None = None,
    authorizer: Mapping[str, Any] | None = None,
    source_ip: str = SOURCE_IP,
    port: int = 443,
    scheme: str = "https",
    api_id: str = API_ID,
    account: str = ACCOUNT,
    region: str = REGION,
    domain: str | None = None,
    request_id: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The event API Gateway sends the function of ``route_key`` for the request ``method path?query``.

    ``path`` and ``query`` are the raw path and query string as sent (``query`` without its ``?``);
    ``path_parameters`` are what the route's ``{name}`` segments matched, decoded. ``base64_body`` left as None
    lets the content type decide, as API Gateway does; True or False forces the encoding (tests of what a
    handler does with either). ``authorizer`` is ``requestContext.authorizer`` as a successful authorizer makes it.
    ``domainName`` is ``domain``, else the ``host`` header, else the API's ``execute-api`` domain; ``port`` and
    ``scheme`` fill ``x-forwarded-port`` and ``x-forwarded-proto``. ``request_id`` and ``at`` (an aware datetime)
    default to a fresh id and now.
    """
    if not _METHOD.fullmatch(method):
        raise ValueError(f"method {method!r} is not an HTTP method such as 'GET'")
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must start with '/' (API Gateway's rawPath always does)")
    if route_key != DEFAULT_ROUTE and not _ROUTE_KEY.fullmatch(route_key):
        raise ValueError(f"route key {route_key!r} is neither '$default' nor 'METHOD /path' (e.g. 'GET /threads')")
    if at is None:
        at = datetime.now(UTC)
    elif at.utcoffset() is None:
        raise ValueError(f"at={at!r} has no time zone; API Gateway stamps UTC times")
    at = at.astimezone(UTC)
    epoch = at.timestamp()

    grouped = group_headers(headers)
    cookies = [c.strip() for line in grouped.pop("cookie", []) for c in line.split(";") if c.strip()]
    grouped.setdefault("x-forwarded-for", [source_ip])
    grouped.setdefault("x-forwarded-port", [str(port)])
    grouped.setdefault("x-forwarded-proto", [scheme])
    grouped.setdefault("x-amzn-trace-id", [f"Root=1-{int(epoch):08x}-{secrets.token_hex(12)}"])
    sent = {name: ",".join(values) for name, values in grouped.items()}
    domain = domain or sent.get("host") or f"{api_id}.execute-api.{region}.amazonaws.com"

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": query,
        "headers": sent,
        "requestContext": {
            "accountId": account,
            "apiId": api_id,
            "domainName": domain,
            "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": sent.get("user-agent", ""),
            },
            "requestId": request_id or base64.b64encode(secrets.token_bytes(11)).decode(),
            "routeKey": route_key,
            "stage": STAGE,
            "time": f"{at:%d}/{_MONTHS[at.month - 1]}/{at:%Y:%H:%M:%S} +0000",
            "timeEpoch": int(epoch * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        joined: dict[str, str] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            joined[name] = f"{joined[name]},{value}" if name in joined else value
        event["queryStringParameters"] = joined
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if authorizer is not None:
        event["requestContext"]["authorizer"] = dict(authorizer)
    if body is not None:
        event["body"], event["isBase64Encoded"] = _wire_body(body, sent.get("content-type"), base64_body)
    return event


def group_headers(headers: Headers) -> dict[str, list[str]]:
    """Headers as API Gateway passes them on: names lower-cased, repeats kept in order, hop-by-hop ones dropped."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers.items() if isinstance(headers, Mapping) else headers:
        if name.lower() not in HOP_BY_HOP:
            grouped.setdefault(name.lower(), []).append(value)
    return grouped


def is_text(content_type: str | None) -> bool:
    """Whether API Gateway passes a body of this content type as text (else it base64-encodes it)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind.startswith("text/") or kind in TEXT_TYPES


def _wire_body(body: bytes | str, content_type: str | None, base64_body: bool | None) -> tuple[str, bool]:
    """``(body, isBase64Encoded)`` as the event carries them."""
    encode = not is_text(content_type) if base64_body is None else base64_body
    if encode:
        raw = body if isinstance(body, bytes) else body.encode()
        return base64.b64encode(raw).decode(), True
    if isinstance(body, str):
        return body, False
    try:
        return body.decode(), False
    except UnicodeDecodeError:
        if base64_body is False:
            raise ValueError("the body is not UTF-8, so it cannot pass as text: leave base64_body unset") from None
        return base64.b64encode(body).decode(), True  # binary under a text content type: API Gateway encodes it


def authorizer_event(
    event: Mapping[str, Any], identity_headers: Sequence[str], *, region: str = REGION
) -> dict[str, Any]:
    """The payload 2.0 REQUEST event API Gateway sends a Lambda authorizer for the request ``event``.

    The request's fields without its body (and without an ``authorizer``, which is what is being decided), plus
    the route's ARN and ``identitySource``: the values of the ``identity_headers`` the request has.
    """
    context = {k: v for k, v in event["requestContext"].items() if k != "authorizer"}
    http = context["http"]
    arn = f"arn:aws:execute-api:{region}:{context['accountId']}:{context['apiId']}/{context['stage']}"
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"{arn}/{http['method']}{http['path']}",
        "identitySource": [event["headers"][h] for h in identity_headers if h in event["headers"]],
        **{k: v for k, v in event.items() if k not in ("body", "isBase64Encoded", "version", "requestContext")},
        "requestContext": context,
    }
