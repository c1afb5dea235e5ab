"""Real API Gateway HTTP API (payload format 2.0) events, shaped as API Gateway sends them to Lambda.

What API Gateway does and these builders copy: header names lowercased, repeated query keys joined with
commas in ``queryStringParameters`` (which is absent when there is no query), ``pathParameters`` decoded
and absent without a path template, form bodies base64-encoded with ``isBase64Encoded``.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

API_ID = "a1b2c3d4e5"
ACCOUNT = "123456789012"
DOMAIN = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
_PARAM = re.compile(r"\{([^}+]+)\+?\}")


def http_event(
    method: str,
    route: str,
    path_params: Mapping[str, str] | None = None,
    *,
    query: str | Sequence[tuple[str, str]] | Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: str | bytes | None = None,
    base64_body: bool | None = None,
    source_ip: str = "203.0.113.7",
    user_agent: str = "Mozilla/5.0 (X11; Linux x86_64) stepfold-tests",
) -> dict[str, Any]:
    """One v2 event for ``METHOD route`` (e.g. ``"/approvals/{approval_id}"``) with ``path_params`` filled in.

    ``body`` bytes are always base64-encoded (as API Gateway does for binary); text is base64-encoded
    when ``base64_body`` is true.
    """
    params = dict(path_params or {})
    raw_path = _PARAM.sub(lambda m: quote(params[m.group(1)], safe=""), route)
    raw_query = (
        query
        if isinstance(query, str)
        else urlencode(list(query.items()) if isinstance(query, Mapping) else query or [])
    )
    joined: dict[str, str] = {}
    for key, value in parse_qsl(raw_query, keep_blank_values=True):
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    encoded = isinstance(body, bytes) or bool(base64_body)
    if body is None:
        wire: str | None = None
    elif encoded:
        wire = base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode()
    else:
        wire = str(body)
    all_headers = {
        "accept": "text/html,application/xhtml+xml",
        "host": DOMAIN,
        "user-agent": user_agent,
        "x-amzn-trace-id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        **(
            {"content-length": str(len(body if isinstance(body, bytes) else body.encode()))} if body is not None else {}
        ),
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": f"{method.upper()} {route}",
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": DOMAIN,
            "domainPrefix": API_ID,
            "http": {
                "method": method.upper(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": uuid.uuid4().hex[:16] + "=",
            "routeKey": f"{method.upper()} {route}",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": encoded,
    }
    if joined:
        event["queryStringParameters"] = joined
    if params:
        event["pathParameters"] = params
    if wire is not None:
        event["body"] = wire
    return event


def form_event(
    method: str,
    route: str,
    path_params: Mapping[str, str],
    fields: Mapping[str, str] | Sequence[tuple[str, str]],
    *,
    query: str | Mapping[str, str] | None = None,
    base64_body: bool = True,
) -> dict[str, Any]:
    """A browser's form submission (``application/x-www-form-urlencoded``), base64-encoded by default."""
    body = urlencode(list(fields.items()) if isinstance(fields, Mapping) else list(fields))
    return http_event(
        method,
        route,
        path_params,
        query=query,
        headers={"content-type": "application/x-www-form-urlencoded", "origin": f"https://{DOMAIN}"},
        body=body,
        base64_body=base64_body,
    )


def split_link(url: str) -> tuple[str, str]:
    """``(approval_id, raw query)`` of an approval link ``.../approvals/<id>?exp=..&sig=..``."""
    parts = urlsplit(url)
    return parts.path.rsplit("/", 1)[-1], parts.query
