"""The HTTP API's Lambda authorizer: payload 2.0 REQUEST events in, simple responses out."""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from functions import authorizer
from functions._wiring import ApiKey, Secrets, Settings
from functions.authorizer import authenticate, presented_keys
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http import http_event
from tests.functional.conftest import Shared

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
def keyed_stack(shared: Shared) -> Iterator[LocalStack]:
    with shared.lease({"POWERTOOLS_LOG_LEVEL": "INFO", "STEPFOLD_API_KEY": KEY}) as running:
        yield running


@pytest.fixture
def keyless_stack(shared: Shared, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    monkeypatch.setattr(authorizer, "_warned_no_key", False)
    with shared.lease({"POWERTOOLS_LOG_LEVEL": "INFO"}) as running:
        monkeypatch.delenv("STEPFOLD_API_KEY", raising=False)  # read at the first use of the keys, after this
        yield running


# --- the check the handler makes: authenticate() against the principals the runtime's secret names ---------------


def principals(api_key: str | None = KEY) -> dict[str, ApiKey]:
    """What the handler compares with: the single key as the principal ``api-key`` (``Secrets.principals``)."""
    return Secrets(link_signing_key="link-key-for-these-tests", api_key=api_key).principals()


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
def test_the_right_key_in_either_header_is_authenticated(headers: dict[str, str]) -> None:
    found = authenticate(headers, principals())
    assert found is not None
    name, entry = found
    assert (name, entry.scopes) == ("api-key", ("read", "operate", "approve"))


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
        {"x-api-key": f"{KEY}\udfff"},
    ],
)
def test_a_missing_or_wrong_key_is_not_authenticated(headers: dict[str, str]) -> None:
    assert authenticate(headers, principals()) is None


@pytest.mark.parametrize("configured", [None, ""])
def test_no_configured_key_authenticates_nothing(configured: str | None) -> None:
    assert principals(configured) == {}
    assert authenticate({}, principals(configured)) is None
    assert authenticate({"authorization": "Bearer "}, principals(configured)) is None
    assert authenticate({"x-api-key": ""}, principals(configured)) is None
    assert authenticate({"x-api-key": "anything"}, principals(configured)) is None


def test_presented_keys_reads_both_headers_in_order() -> None:
    assert presented_keys({"Authorization": "Bearer a", "X-API-KEY": " b "}) == ["a", "b"]
    assert presented_keys({"authorization": "Token a"}) == []


# --- the Lambda handler with the runtime's secret ----------------------------------------------------------------


def test_handler_allows_the_configured_key_in_either_header(keyed_stack: LocalStack) -> None:
    for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}):
        assert authorize(headers) == {
            "isAuthorized": True,
            "context": {"caller": "api-key", "scopes": "read operate approve"},
        }


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
        "no API key is configured (api_key or api_keys in the API keys secret, STEPFOLD_API_KEY or "
        "STEPFOLD_API_KEYS locally): denying every request"
    ]


# --- issue 13: a malformed credential is a denial, never a crash --------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"authorization": "Bearer \ud800"},
        {"x-api-key": f"{KEY}\udfff"},
        {"authorization": "Bearer " + "\u00b2" * 10_000, "x-api-key": "\x00" * 1000},
    ],
)
def test_a_key_with_a_lone_surrogate_or_odd_characters_is_denied_not_a_crash(
    keyed_stack: LocalStack, headers: dict[str, str]
) -> None:
    assert authorize(headers) == {"isAuthorized": False, "context": {}}


def test_an_event_without_usable_headers_or_context_is_denied(keyed_stack: LocalStack) -> None:
    event = authorizer_event({})
    event["headers"], event["requestContext"] = None, {"http": None}
    assert authorizer.handler(event, LambdaContext("AuthorizerFunction")) == {"isAuthorized": False, "context": {}}


# --- issue 13: named keys with scopes ------------------------------------------------------------------------------

OPS_KEY = "ops-bot-key-0123456789abcdef"
ALICE_KEY = "alice-key-0123456789abcdef"
NAMED = json.dumps(
    {
        "ops-bot": {"key": OPS_KEY, "scopes": ["read", "operate"]},
        "alice": {"key": ALICE_KEY, "scopes": ["approve", "read"]},
    }
)


@pytest.fixture
def named_stack(shared: Shared) -> Iterator[LocalStack]:
    env = {"POWERTOOLS_LOG_LEVEL": "INFO", "STEPFOLD_API_KEY": KEY, "STEPFOLD_API_KEYS": NAMED}
    with shared.lease(env) as running:
        yield running


def test_each_named_key_is_authorized_as_its_name_with_its_scopes(named_stack: LocalStack) -> None:
    assert authorize({"x-api-key": OPS_KEY}) == {
        "isAuthorized": True,
        "context": {"caller": "ops-bot", "scopes": "read operate"},
    }
    assert authorize({"authorization": f"Bearer {ALICE_KEY}"}) == {
        "isAuthorized": True,
        "context": {"caller": "alice", "scopes": "read approve"},
    }
    # the single api_key still works beside them, as the principal api-key with every scope
    assert authorize({"x-api-key": KEY})["context"] == {"caller": "api-key", "scopes": "read operate approve"}
    assert authorize({"x-api-key": OPS_KEY[:-1]}) == {"isAuthorized": False, "context": {}}


def test_two_headers_with_the_keys_of_two_principals_are_denied(named_stack: LocalStack) -> None:
    """A request must say who it is: Bearer alice plus x-api-key ops-bot is neither of them."""
    assert authorize({"authorization": f"Bearer {ALICE_KEY}", "x-api-key": OPS_KEY})["isAuthorized"] is False
    same = authorize({"authorization": f"Bearer {ALICE_KEY}", "x-api-key": ALICE_KEY})
    assert same["context"]["caller"] == "alice"


def test_every_configured_key_is_compared_whichever_one_matches(
    named_stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No early exit at the first match, and every comparison is of two 32-byte digests: the time taken says
    neither which name matched nor how much of a key was right."""
    compared: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for key in (OPS_KEY, ALICE_KEY, KEY, "nobody-0123456789abcdef"):
        compared.clear()
        authorize({"x-api-key": key})
        assert compared == [(32, 32)] * 3, key


@pytest.mark.parametrize(
    ("configured", "words"),
    [
        ({"bob": {"key": "k" * 20, "scopes": ["read", "admin"]}}, "unknown scope(s) admin"),
        ({"bob": {"key": "k" * 20, "scopes": []}}, "at least 1"),
        ({"bob": {"key": "short", "scopes": ["read"]}}, "at least 16"),
        ({"bob smith": {"key": "k" * 20, "scopes": ["read"]}}, "are not valid"),
        ({"a": {"key": "k" * 20, "scopes": ["read"]}, "b": {"key": "k" * 20, "scopes": ["approve"]}}, "same key"),
        ({"api-key": {"key": "k" * 20, "scopes": ["read"]}}, "rename one of them"),
        ("not json", "must be a JSON object"),
    ],
)
def test_a_bad_api_keys_configuration_is_a_clear_error(configured: Any, words: str) -> None:
    text = configured if isinstance(configured, str) else json.dumps(configured)
    env = {"STEPFOLD_API_KEY": KEY, "STEPFOLD_API_KEYS": text}
    with pytest.raises(ValidationError, match=re.escape(words)):
        Secrets.load(Settings(), None, env)
