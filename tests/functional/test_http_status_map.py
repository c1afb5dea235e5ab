"""HTTP statuses belong to handlers (ARCHITECTURE.md): a refusal no row of its handler's table maps is answered as
that handler's own failure, a logged 500, never as a success. Real HTTP API v2 events into the real handlers.

Each test first sends a request one row answers (the control), then the same request with that row and its bases
taken out of the table, as a new exception class nobody mapped would be (tests/unit/test_http_status_map.py keeps
that from shipping: here is what a gap would do).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.services import control
from core.services.approvals import ApprovalError, LinkSignatureError
from core.services.triggers import TriggerError, UnknownSourceError
from functions import api, approvals, triggers
from functions.routes import errors
from infra.local.stack import LambdaContext, LocalStack
from infra.local.triggers import deliver
from tests.functional import _http, _http_events


def _api(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = api.handler(_http.http_event("POST", "/threads", body), LambdaContext(function_name="ApiFunction"))
    return result["statusCode"], json.loads(result["body"])


def test_an_api_refusal_without_a_row_is_a_500(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = {"agent": "calculator", "input": "   "}
    status, body = _api(empty)
    assert (status, body["error"]) == (400, "bad_request")
    monkeypatch.delitem(errors.ANSWERS, control.ControlError)
    status, body = _api(empty)
    assert (status, body["error"]) == (500, "internal")
    assert "input is empty" not in body["detail"]  # a 5xx carries no exception text


def _page(query: str) -> dict[str, Any]:
    event = _http_events.http_event("GET", "/approvals/{approval_id}", {"approval_id": "ap_nothing"}, query=query)
    result: dict[str, Any] = approvals.handler(event, LambdaContext(function_name="ApprovalsFunction"))
    return result


def test_an_approval_page_refusal_without_a_row_is_a_500(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    forged = "exp=9999999999&sig=" + "0" * 64
    control_page = _page(forged)
    assert control_page["statusCode"] == 403
    assert "This link is not valid" in control_page["body"]
    monkeypatch.delitem(approvals.REFUSALS, LinkSignatureError)
    monkeypatch.delitem(approvals.REFUSALS, ApprovalError)
    gap = _page(forged)
    assert gap["statusCode"] == 500
    assert "Something went wrong" in gap["body"]


def _webhook(stack: LocalStack) -> tuple[int, dict[str, Any]]:
    event = _http_events.http_event("POST", "/webhooks/{source}", {"source": "gitlab"}, body="{}")
    result = deliver(stack, event)
    return result["statusCode"], json.loads(result["body"])


def test_a_webhook_refusal_without_a_row_is_a_500(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _webhook(stack)[0] == 404
    monkeypatch.delitem(triggers.REFUSED, UnknownSourceError)
    monkeypatch.delitem(triggers.REFUSED, TriggerError)
    status, body = _webhook(stack)
    assert (status, body["error"]) == (500, "internal")
    assert "gitlab" not in body["detail"]
