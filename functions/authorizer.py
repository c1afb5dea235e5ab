"""The HTTP API's Lambda authorizer (payload format 2.0, simple responses): one API key, two ways to send it.

``Authorization: Bearer <key>`` or ``x-api-key: <key>``, compared in constant time with the ``api_key`` secret
(Secrets Manager in AWS, ``STEPFOLD_API_KEY`` locally). With no key configured every request is denied: an API
that starts threads and approves deploys is never open by accident. Approval links are not behind this
authorizer; their signature protects them.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from functions._wiring import runtime

logger = Logger(service="stepfold")

CALLER = "api-key"
"""The name the API records as ``by`` for requests this key authorized."""

_warned_no_key = False


def presented_keys(headers: Mapping[str, str]) -> list[str]:
    """The keys a request carries: the bearer token and the ``x-api-key`` header, in that order."""
    lowered = {name.lower(): value for name, value in headers.items() if isinstance(value, str)}
    keys: list[str] = []
    scheme, _, token = lowered.get("authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        keys.append(token.strip())
    if lowered.get("x-api-key", "").strip():
        keys.append(lowered["x-api-key"].strip())
    return keys


def is_authorized(headers: Mapping[str, str], api_key: str | None) -> bool:
    """True if a key in ``headers`` equals ``api_key`` (constant-time); always False when no key is configured."""
    if not api_key:
        return False
    expected = api_key.encode()
    # Every candidate is compared, so the time taken does not say which header matched.
    matches = [hmac.compare_digest(key.encode(), expected) for key in presented_keys(headers)]
    return any(matches)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _warned_no_key  # noqa: PLW0603 - warn once per container, not once per request
    api_key = runtime().secrets.api_key
    if not api_key and not _warned_no_key:
        _warned_no_key = True
        logger.warning("no API key is configured (secret 'api_key' or STEPFOLD_API_KEY): denying every request")
    allowed = is_authorized(event.get("headers") or {}, api_key)
    if not allowed:
        logger.info("denied", extra={"route": event.get("routeKey"), "source_ip": _source_ip(event)})
    return {"isAuthorized": allowed, "context": {"caller": CALLER} if allowed else {}}


def _source_ip(event: Mapping[str, Any]) -> str | None:
    ip = event.get("requestContext", {}).get("http", {}).get("sourceIp")
    return ip if isinstance(ip, str) else None
