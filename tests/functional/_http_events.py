"""API Gateway HTTP API (payload format 2.0) events for a route of ``template.yaml``, as a browser or a webhook
sender's request arrives at the function.

The event itself is :func:`infra.local.apigw.http_api_event`'s, the builder the local front door uses; this module
only plays the client: the path filled in from the route and its parameters, the query encoded, and the headers a
client sends (``host``, ``user-agent``, ``accept``, ``content-length``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from infra.local.apigw import http_api_event

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
    sent = {
        "accept": "text/html,application/xhtml+xml",
        "host": DOMAIN,
        "user-agent": user_agent,
        **(
            {"content-length": str(len(body if isinstance(body, bytes) else body.encode()))} if body is not None else {}
        ),
        **{k.lower(): v for k, v in (headers or {}).items()},
    }
    return http_api_event(
        method.upper(),
        raw_path,
        query=raw_query,
        headers=sent,
        body=body,
        base64_body=isinstance(body, bytes) or bool(base64_body),
        route_key=f"{method.upper()} {route}",
        path_parameters=params,
        source_ip=source_ip,
        api_id=API_ID,
        account=ACCOUNT,
    )


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
