"""API Gateway HTTP API (payload format 2.0) events, shaped as API Gateway sends them to a Lambda integration."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

SOURCE_IP = "203.0.113.10"
USER_AGENT = "stepfold-tests/1.0"


def http_event(
    method: str,
    path: str,
    body: Any = None,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    caller: str | None = None,
) -> dict[str, Any]:
    """A v2 event for ``method path``. A non-str ``body`` is sent as JSON; ``caller`` is the authorizer's context."""
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    sent = {"host": "abc123.execute-api.us-east-1.amazonaws.com", "user-agent": USER_AGENT}
    if text is not None:
        sent["content-type"] = "application/json"
        sent["content-length"] = str(len(text.encode()))
    sent.update({k.lower(): v for k, v in (headers or {}).items()})
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": sent,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": "abc123.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": SOURCE_IP,
                "userAgent": USER_AGENT,
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = dict(query)
    if text is not None:
        event["body"] = text
    if caller is not None:
        event["requestContext"]["authorizer"] = {"lambda": {"caller": caller}}
    return event
