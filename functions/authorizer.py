"""The HTTP API's Lambda authorizer (payload format 2.0, simple responses): named API keys with scopes.

``Authorization: Bearer <key>`` or ``x-api-key: <key>``, compared in constant time with every configured key: the
named ``api_keys`` (each with scopes ``read``, ``operate``, ``approve``) and the single ``api_key`` (the principal
``api-key``, every scope), from the API keys secret in AWS, ``STEPFOLD_API_KEYS`` / ``STEPFOLD_API_KEY`` locally.
An allowed request carries ``{"caller": <name>, "scopes": "read operate"}`` as its authorizer context; the API checks
the scope of each route and records the name as who acted. With no key configured every request is denied: an API
that starts threads and approves deploys is never open by accident. Approval links are not behind this
authorizer; their signature protects them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools import Logger

from functions._wiring import LEGACY_PRINCIPAL, ApiKey, runtime

logger = Logger(service="stepfold")

CALLER = LEGACY_PRINCIPAL
"""The name the API records as ``by`` for requests the single ``api_key`` authorized."""

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


def _digest(key: str) -> bytes:
    """``surrogatepass``: a header holding a lone surrogate is simply not a key, where plain ``encode()`` would raise
    and API Gateway would answer the caller 500 instead of 403."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def authenticate(headers: Mapping[str, str], principals: Mapping[str, ApiKey]) -> tuple[str, ApiKey] | None:
    """The principal whose key ``headers`` carry, or None.

    Every presented key is compared with every configured key, and the comparisons are of SHA-256 digests (all
    32 bytes), so neither the time taken nor an early exit says which name, or how much of a key, matched. Two
    headers carrying the keys of two different principals are refused: the request must say who it is.
    """
    presented = [_digest(key) for key in presented_keys(headers)]
    matched: set[str] = set()
    for name, entry in principals.items():
        expected = _digest(entry.key)
        hits = [hmac.compare_digest(digest, expected) for digest in presented]
        if any(hits):
            matched.add(name)
    if len(matched) != 1:
        return None
    (name,) = matched
    return name, principals[name]


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _warned_no_key  # noqa: PLW0603 - warn once per container, not once per request
    principals = runtime().secrets.principals()
    if not principals and not _warned_no_key:
        _warned_no_key = True
        logger.warning(
            "no API key is configured (api_key or api_keys in the API keys secret, STEPFOLD_API_KEY or "
            "STEPFOLD_API_KEYS locally): denying every request"
        )
    headers = event.get("headers")
    found = authenticate(headers if isinstance(headers, Mapping) else {}, principals)
    if found is None:
        logger.info("denied", extra={"route": event.get("routeKey"), "source_ip": _source_ip(event)})
        return {"isAuthorized": False, "context": {}}
    name, entry = found
    # Scopes as one space-separated string, as OAuth writes them: a context value of the simplest type.
    return {"isAuthorized": True, "context": {"caller": name, "scopes": " ".join(entry.scopes)}}


def _source_ip(event: Mapping[str, Any]) -> str | None:
    context = event.get("requestContext")
    http = context.get("http") if isinstance(context, Mapping) else None
    ip = http.get("sourceIp") if isinstance(http, Mapping) else None
    return ip if isinstance(ip, str) else None
