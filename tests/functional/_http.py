"""API Gateway HTTP API (payload format 2.0) events for the API function, as API Gateway routes a call to it.

The event itself is :func:`infra.local.apigw.http_api_event`'s, the builder the local front door uses. The route
is the one of ``template.yaml``'s ``ApiFunction`` routes that takes the path, matched as the front door matches
(``GET /openapi.json``, ``ANY /``, ``ANY /{proxy+}``), so ``routeKey`` and ``pathParameters`` are what API Gateway
sends; ``caller`` or ``authorizer`` stand for what an authorizer answered (``requestContext.authorizer``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from infra.local.apigw import http_api_event
from infra.local.http import Route, read_api
from infra.local.template import load_template

SOURCE_IP = "203.0.113.10"
USER_AGENT = "stepfold-tests/1.0"
API_ID = "abc123"
HOST = f"{API_ID}.execute-api.us-east-1.amazonaws.com"
TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
FUNCTION = "ApiFunction"


@cache
def _routes() -> tuple[Route, ...]:
    routes, _ = read_api(load_template(TEMPLATE))
    return tuple(r for r in routes if r.function == FUNCTION)


def _route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    for route in _routes():
        params = route.match(method.upper(), path)
        if params is not None:
            return route, params
    raise ValueError(f"template.yaml routes no {method} {path} to {FUNCTION}")


def http_event(
    method: str,
    path: str,
    body: Any = None,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    *,
    caller: str | None = None,
    authorizer: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A v2 event for ``method path``. A non-str ``body`` is sent as JSON.

    ``caller`` is the Lambda authorizer's context ``{"caller": caller}``; ``authorizer`` is any other
    ``requestContext.authorizer`` (``{"lambda": {...scopes}}``, ``{"jwt": {...}}``, ``{"iam": {...}}``).
    """
    if caller is not None and authorizer is not None:
        raise ValueError("give caller (a Lambda authorizer's caller) or authorizer (the whole context), not both")
    text = body if isinstance(body, str) or body is None else json.dumps(body)
    sent = {"host": HOST, "user-agent": USER_AGENT}
    if text is not None:
        sent["content-type"] = "application/json"
        sent["content-length"] = str(len(text.encode()))
    sent.update({k.lower(): v for k, v in (headers or {}).items()})
    route, params = _route(method, path)
    return http_api_event(
        method,
        path,
        query=urlencode(query or {}),
        headers=sent,
        body=text,
        base64_body=False,
        route_key=route.key,
        path_parameters=params,
        authorizer={"lambda": {"caller": caller}} if caller is not None else authorizer,
        source_ip=SOURCE_IP,
        api_id=API_ID,
    )
