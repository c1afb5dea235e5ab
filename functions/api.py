"""The HTTP API (Factor 6): launch, inspect, list, pause, resume, cancel, message and answer threads.

API Gateway HTTP API, payload v2, behind the Lambda authorizer in ``functions/authorizer.py``; template.yaml's
``ApiFunction`` runs ``handler``. This module is the entry: one Powertools resolver with every router of
:mod:`functions.routes` included (one OpenAPI document, served at ``/openapi.json``), and what happens before any
route runs: the scope check (:mod:`functions.routes.access`) and the request hardening (body size, media type, JSON
depth, lone surrogates) that would otherwise crash further down. Every error is JSON ``{"error", "detail"}`` with the
status that fits (:mod:`functions.routes.errors`), and every response carries ``nosniff``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler.api_gateway import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths

from core.kernel.parsing import MAX_JSON_DEPTH, BadInputError, check_text, json_depth
from functions.routes import agents, compat, control, errors, responses, threads, views
from functions.routes.access import principal_of, refusal, required_scope

logger = Logger(service="stepfold")
app = APIGatewayHttpResolver(enable_validation=True)
# Each resource's routes are a Router; including them (with the path they are mounted at) copies their routes and
# error handlers into this one resolver, so validation, errors and the OpenAPI document stay one.
app.include_router(threads.router, prefix="/threads")
app.include_router(views.router, prefix="/threads")
app.include_router(control.router, prefix="/threads")
app.include_router(responses.router, prefix="/threads")
app.include_router(agents.router, prefix="/agents")
app.include_router(compat.router, prefix="/thread")
app.include_router(errors.router)

MAX_BODY_BYTES = 256 * 1024
"""Larger request bodies are refused (413) before anything parses them."""
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}
"""On every response: a JSON error that echoes request text must never be sniffed into HTML by a browser."""


@app.get("/openapi.json", include_in_schema=False)
def openapi_document() -> Response[str]:
    return Response(200, "application/json", _openapi())


# --- the Lambda entry point ------------------------------------------------------------------------------------


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Refuse what must not reach a route (scope, size, media type, unsafe JSON), then resolve the route."""
    refused = refusal(principal_of(event), required_scope(event))
    if refused is not None:
        logger.info("scope refused", extra={"detail": refused})
        return _plain_error(403, "forbidden", refused)
    size = _body_bytes(event)
    if size > MAX_BODY_BYTES:
        return _plain_error(413, "too_large", f"the request body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    if _content_type(event).startswith("multipart/"):
        # Powertools would parse it as a file upload and fail with a bare ValueError (a 500) on a missing boundary
        return _plain_error(415, "unsupported_media_type", "send the body as application/json")
    problem = _unsafe_input(event)
    if problem is not None:
        return _plain_error(*problem)
    result: dict[str, Any] = app.resolve(event, context)
    return _with_security_headers(result)


ARRAY_BODY = "Input should be one JSON object, not an array"


def _unsafe_input(event: Mapping[str, Any]) -> tuple[int, str, Any] | None:
    """Why the request cannot go to the resolver (status, error, detail), or None.

    Two shapes of valid-looking input crash further down instead of failing validation: JSON nested deeply
    enough to exhaust the recursion limit (``json.loads`` or pydantic raise ``RecursionError``: a 500), and a
    ``\\ud800`` escape, which decodes to a lone surrogate that pydantic accepts as ``str`` and DynamoDB cannot
    encode (a 500 after the thread was half written). Both are refused here, before anything parses them.
    Bodies that are not JSON at all are left to the resolver, whose validation says where (422).

    A JSON array is refused too (422): every body this API takes is one object, and Powertools' validation
    reads a list given for a non-list field as its first element, so ``[{}]`` would pass as ``{}``.
    """
    body = event.get("body")
    text = body if isinstance(body, str) else ""
    if text and event.get("isBase64Encoded"):
        try:
            text = base64.b64decode(text).decode("utf-8")
        except (binascii.Error, ValueError):
            return None  # the resolver answers 400 invalid_body for it
    try:
        if text.strip():
            if json_depth(text) > MAX_JSON_DEPTH:
                detail = f"the request body is nested deeper than {MAX_JSON_DEPTH} levels of arrays/objects; flatten it"
                return 400, "invalid_body", detail
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            check_text(value, what="the request body")
            if isinstance(value, list):
                problem = {"loc": ["body"], "type": "model_attributes_type", "msg": ARRAY_BODY}
                return 422, "invalid_request", [problem]
        check_text(event.get("pathParameters") or {}, what="the request path")
        check_text(event.get("queryStringParameters") or {}, what="the query string")
    except BadInputError as exc:
        return 400, "invalid_body", str(exc)
    return None


def _with_security_headers(result: dict[str, Any]) -> dict[str, Any]:
    headers = result.get("headers")
    if not isinstance(headers, dict):
        headers = result["headers"] = {}
    present = {str(name).lower() for name in headers}
    for name, value in SECURITY_HEADERS.items():
        if name.lower() not in present:
            headers[name] = value
    return result


def _plain_error(status: int, error: str, detail: Any) -> dict[str, Any]:
    """An error response made before the resolver runs."""
    body = json.dumps({"error": error, "detail": detail})
    headers = {"Content-Type": "application/json", **SECURITY_HEADERS}
    return {"statusCode": status, "headers": headers, "body": body, "isBase64Encoded": False}


def _content_type(event: Mapping[str, Any]) -> str:
    headers = event.get("headers") or {}
    return next((str(v).strip().lower() for k, v in headers.items() if k.lower() == "content-type"), "")


def _body_bytes(event: Mapping[str, Any]) -> int:
    body = event.get("body")
    if not isinstance(body, str):
        return 0
    return len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode())


def openapi_json() -> str:
    """The OpenAPI document ``GET /openapi.json`` serves (also the source of the README's route reference)."""
    return _openapi()


@cache
def _openapi() -> str:
    # The OpenAPI models cost ~0.1 s to import: only GET /openapi.json pays for them.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer  # noqa: PLC0415

    document: str = app.get_openapi_json_schema(
        title="stepfold",
        version="1",
        description="Launch, inspect, pause, resume and answer 12-factor agent threads.",
        security_schemes={
            "bearer": HTTPBearer(description="Authorization: Bearer <API key>"),
            "apiKey": APIKey(name="x-api-key", **{"in": APIKeyIn.header}),
        },
        security=[{"bearer": []}, {"apiKey": []}],
    )
    return document
