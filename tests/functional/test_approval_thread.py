"""The read-only thread an approval link opens (``GET /approvals/{id}/thread``): real HTTP API v2 events into
``functions.approvals``, routed by the template, on the real ASL. The link's signature is the only credential."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

from core.kernel.thread import fold
from functions import approvals
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http_events import form_event, http_event, split_link

THREAD_ROUTE = "/approvals/{approval_id}/thread"


def _call(event: dict[str, Any]) -> dict[str, Any]:
    response: dict[str, Any] = approvals.handler(event, LambdaContext(function_name="ApprovalsFunction"))
    return response


def _waiting(stack: LocalStack) -> tuple[str, str, str]:
    thread = stack.launch("deploybot", "deploy the latest backend to production")
    stack.wait(thread.id)
    sent = stack.notifier.last_for(thread.id)
    assert sent is not None
    approval_id, query = split_link(sent[1])
    return thread.id, approval_id, query


def _thread_page(approval_id: str, query: str) -> dict[str, Any]:
    return _call(http_event("GET", THREAD_ROUTE, {"approval_id": approval_id}, query=query))


def test_the_request_page_links_to_the_signed_thread_view(stack: LocalStack) -> None:
    _, approval_id, query = _waiting(stack)
    page = _call(http_event("GET", "/approvals/{approval_id}", {"approval_id": approval_id}, query=query))["body"]
    assert f'href="./{approval_id}/thread?{html.escape(query)}"' in page
    assert "/threads/" not in page  # never the API's timeline, which needs an API key a browser does not have


def test_the_thread_is_shown_read_only_with_the_link_as_the_credential(stack: LocalStack) -> None:
    thread_id, approval_id, query = _waiting(stack)
    response = _thread_page(approval_id, query)
    assert response["statusCode"] == 200, response["body"]
    assert response["headers"]["Content-Security-Policy"].startswith("default-src 'none'")
    assert response["headers"]["Cache-Control"] == "no-store"
    body = response["body"]
    assert thread_id in body
    assert "deploy_backend" in body
    assert "What the model saw" not in body  # those pages need an API key
    assert "<form" not in body  # read-only


def test_the_view_stays_readable_after_the_decision_while_the_link_is_valid(stack: LocalStack) -> None:
    thread_id, approval_id, query = _waiting(stack)
    form = {"by": "alice", "decision": "approve"}
    decided = _call(form_event("POST", "/approvals/{approval_id}", {"approval_id": approval_id}, form, query=query))
    assert decided["statusCode"] == 200
    assert f'href="./{approval_id}/thread?{html.escape(query)}"' in decided["body"]
    final = stack.wait(thread_id)
    assert fold(final).status == "done"
    body = _thread_page(approval_id, query)["body"]
    assert "Deployed backend v1.5.0 to production." in body


def test_a_wrong_missing_or_borrowed_signature_sees_nothing(stack: LocalStack) -> None:
    thread_id, approval_id, query = _waiting(stack)
    tampered = query.replace("sig=", "sig=0")
    for bad in (tampered, "", query.split("&sig=")[0]):
        response = _thread_page(approval_id, bad)
        assert response["statusCode"] == 403, bad
        assert thread_id not in response["body"]
    _, other_id, _ = _waiting(stack)
    borrowed = _thread_page(other_id, query)  # this link's signature on another request's id
    assert borrowed["statusCode"] == 403
    assert thread_id not in borrowed["body"]


def test_an_expired_link_no_longer_shows_the_thread(stack: LocalStack) -> None:
    thread_id, approval_id, query = _waiting(stack)
    rt = stack.rt
    real = rt.clock
    later = real() + timedelta(seconds=rt.settings.approval_timeout_seconds + 1)
    rt.clock = lambda: later
    try:
        response = _thread_page(approval_id, query)
    finally:
        rt.clock = real
    assert response["statusCode"] == 410
    assert thread_id not in response["body"]
