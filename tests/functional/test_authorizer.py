"""The HTTP API's Lambda authorizer: payload 2.0 REQUEST events in, simple responses out."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from functions import authorizer
from functions.authorizer import is_authorized, presented_keys
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http import http_event

KEY = "sk-test-0123456789abcdef"


def authorizer_event(headers: dict[str, str], path: str = "/threads") -> dict[str, Any]:
    """What API Gateway sends a payload-2.0 REQUEST authorizer for ``GET path``."""
    request = http_event("GET", path, headers=headers)
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:123456789012:abc123/$default/GET{path}",
        "identitySource": [],
        "routeKey": request["routeKey"],
        "rawPath": request["rawPath"],
        "rawQueryString": request["rawQueryString"],
        "headers": request["headers"],
        "requestContext": request["requestContext"],
    }


def authorize(headers: dict[str, str]) -> dict[str, Any]:
    result: dict[str, Any] = authorizer.handler(authorizer_event(headers), LambdaContext("AuthorizerFunction"))
    return result


@pytest.fixture
def keyed_stack() -> Iterator[LocalStack]:
    with LocalStack(env={"POWERTOOLS_LOG_LEVEL": "INFO", "STEPFOLD_API_KEY": KEY}) as running:
        yield running


@pytest.fixture
def keyless_stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    monkeypatch.delenv("STEPFOLD_API_KEY", raising=False)
    monkeypatch.setattr(authorizer, "_warned_no_key", False)
    with LocalStack(env={"POWERTOOLS_LOG_LEVEL": "INFO"}) as running:
        yield running


# --- the pure check ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer   {KEY} "},
        {"x-api-key": KEY},
        {"X-Api-Key": KEY},
        {"authorization": "Bearer wrong", "x-api-key": KEY},
        {"authorization": f"Bearer {KEY}", "x-api-key": "wrong"},
    ],
)
def test_the_right_key_in_either_header_is_authorized(headers: dict[str, str]) -> None:
    assert is_authorized(headers, KEY)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {KEY}"},
        {"authorization": KEY},
        {"authorization": "Bearer "},
        {"x-api-key": ""},
        {"x-api-key": KEY[:-1]},
        {"x-api-key": KEY + "x"},
        {"x-api-key": KEY.upper()},
        {"x-api-key": "ключ"},
    ],
)
def test_a_missing_or_wrong_key_is_not_authorized(headers: dict[str, str]) -> None:
    assert not is_authorized(headers, KEY)


@pytest.mark.parametrize("configured", [None, ""])
def test_no_configured_key_authorizes_nothing(configured: str | None) -> None:
    assert not is_authorized({}, configured)
    assert not is_authorized({"authorization": "Bearer "}, configured)
    assert not is_authorized({"x-api-key": ""}, configured)
    assert not is_authorized({"x-api-key": "anything"}, configured)


def test_presented_keys_reads_both_headers_in_order() -> None:
    assert presented_keys({"Authorization": "Bearer a", "X-API-KEY": " b "}) == ["a", "b"]
    assert presented_keys({"authorization": "Token a"}) == []


# --- the Lambda handler with the runtime's secret ----------------------------------------------------------------


def test_handler_allows_the_configured_key_in_either_header(keyed_stack: LocalStack) -> None:
    for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
        assert authorize(headers) == {"isAuthorized": True, "context": {"caller": "api-key"}}


def test_handler_denies_wrong_and_missing_keys_without_logging_them(
    keyed_stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for headers in ({"authorization": "Bearer not-the-key-123"}, {"x-api-key": "not-the-key-123"}, {}):
        assert authorize(headers) == {"isAuthorized": False, "context": {}}
    logged = caplog.text + repr([r.__dict__ for r in caplog.records])
    assert "denied" in logged
    assert "not-the-key-123" not in logged
    assert KEY not in logged


def test_handler_denies_everything_when_no_key_is_configured_and_warns_once(
    keyless_stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert keyless_stack.rt.secrets.api_key is None
    for headers in ({"authorization": "Bearer "}, {"x-api-key": ""}, {"x-api-key": "anything"}, {}):
        assert authorize(headers)["isAuthorized"] is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "no API key is configured (secret 'api_key' or STEPFOLD_API_KEY): denying every request"
    ]
