"""Input fuzzing of the routes that answer callers nobody has authenticated yet: never a 5xx, never exception text.

Beside the schemathesis run over the OpenAPI document (``test_api_fuzz.py``), which covers the authenticated API's
schema, this drives hypothesis at what that document does not describe, each through its real handler with a real
API Gateway HTTP API (payload 2.0) event, as API Gateway would invoke it:

- ``POST /webhooks/{source}`` (the triggers function): any source, any signature headers (``²``, 5,000 digits,
  lone surrogates), any body; half the time correctly signed, so parsing runs too (deep JSON, ``\\ud800``).
- ``GET /approvals/{id}`` with random query strings and ``POST`` with random form bodies (the approvals function),
  against a real waiting approval and its real signed link as well as made-up ones.
- the Lambda authorizer with random ``Authorization`` / ``x-api-key`` values, and the API key routes through the
  local front door with random header bytes.
- ``POST /threads`` and ``/threads/{id}/responses`` with deep and surrogate-laden JSON (the API function).

The acceptance bar, per request: a status below 500, and a body without exception text (a traceback, a file
path, an exception class name). Bounded, and seeded in CI (the profiles: ``tests/functional/conftest.py``), so it
adds well under a minute on two cores.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from core.kernel.thread import fold
from core.services.triggers import sign_github, sign_slack, sign_stepfold
from functions import api, approvals, authorizer, triggers
from infra.local.http import FrontDoor, front_door
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._http_events import DOMAIN, http_event
from tests.functional.conftest import Shared, fuzz

KEY = "fuzz-input-key"
SECRETS = {
    "STEPFOLD_API_KEY": KEY,
    "STEPFOLD_GITHUB_WEBHOOK_SECRET": "fuzz-gh",
    "STEPFOLD_SLACK_SIGNING_SECRET": "fuzz-slack",
    "STEPFOLD_WEBHOOK_SECRET": "fuzz-sf",
}
FUZZ = fuzz(150)
LEAK = re.compile(
    r"Traceback|File \"|line \d+, in |\b[A-Z][A-Za-z]+(?:Error|Exception)\b|botocore|pydantic_core|"
    r"surrogates not allowed|maximum recursion depth|Exceeds the limit"
)
"""What exception text looks like in a body: a traceback, a class name (``RecursionError``), a library's words."""

NASTY = st.sampled_from(
    [
        "",
        " ",
        "\u00b2",
        "\u0663\u0663",
        "1\u00b2",
        "9" * 5000,
        "-1",
        "+1",
        "0x10",
        "1e9",
        "1_000",
        "\ud800",
        "\x00",
        "%",
        "t=\u00b2,v2=00",
        "v0=" + "0" * 64,
        "sha256=" + "z" * 64,
        "[" * 3000,
        "\u202e",
    ]
)
"""Values that broke a parser somewhere once: non-ASCII digits, huge numbers, lone surrogates, NUL, nesting."""
TEXT = st.one_of(NASTY, st.text(max_size=60), st.from_regex(r"[0-9]{0,14}", fullmatch=True))
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT)
JSON_VALUE = st.recursive(
    JSON_LEAF, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=12
)


def _raw_json(value: Any) -> str:
    return json.dumps(value)  # ensure_ascii: a lone surrogate travels as the \ud800 escape, as an attacker sends it


def _nested(depth: int, *, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


BODY = st.one_of(
    JSON_VALUE.map(_raw_json),
    st.integers(min_value=60, max_value=50_000).map(_nested),
    st.integers(min_value=60, max_value=3_000).map(lambda d: '{"a":' * d + "1" + "}" * d),
    st.sampled_from(['{"x": "\\ud800"}', '{"\\udfff": 1}', '"\\ud800"', "[\\ud800]", "{", "\x00", "not json"]),
    st.text(max_size=200),
)


@pytest.fixture(scope="module")
def stack(shared: Shared) -> Iterator[LocalStack]:
    env = {"POWERTOOLS_LOG_LEVEL": "CRITICAL", "POWERTOOLS_METRICS_DISABLED": "true", **SECRETS}
    with shared.lease(env) as running:
        yield running


@pytest.fixture(scope="module")
def door(stack: LocalStack) -> Iterator[FrontDoor]:
    with front_door(stack) as server:
        yield server


@pytest.fixture(scope="module")
def link(stack: LocalStack) -> tuple[str, str, str]:
    """``(approval_id, exp, sig)`` of a real approval link for a deploybot thread waiting on it."""
    launched = _call(
        api.handler, _api_event("POST", "/threads", {"agent": "deploybot", "input": "deploy to production"})
    )
    assert launched["statusCode"] == 201, launched
    thread_id = json.loads(launched["body"])["thread_id"]
    assert fold(stack.wait(thread_id)).status == "awaiting_human"
    sent = stack.notifier.last_for(thread_id)
    assert sent is not None
    url = urlsplit(sent[1])
    query = dict(parse_qsl(url.query))
    return url.path.rsplit("/", 1)[-1], query["exp"], query["sig"]


def _call(handler: Any, event: dict[str, Any]) -> dict[str, Any]:
    """Invoke a handler as Lambda does: the event through JSON (surrogates included, as escapes)."""
    result: dict[str, Any] = handler(json.loads(json.dumps(event)), LambdaContext(function_name="FuzzedFunction"))
    return result


def _api_event(method: str, path: str, body: Any = None, *, raw: str | None = None) -> dict[str, Any]:
    from tests.functional._http import http_event as api_event  # noqa: PLC0415 - the API tests' $default builder

    sent: dict[str, Any] = api_event(method, path, raw if raw is not None else body, caller="fuzz")
    return sent


def _assert_safe(result: dict[str, Any], what: str) -> None:
    status = result["statusCode"]
    body = str(result.get("body") or "")
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    assert isinstance(status, int)
    assert status < 500, f"{what}: {status} {body[:500]}"
    leaked = LEAK.search(body)
    assert leaked is None, f"{what}: exception text {leaked.group()!r} in {body[:500]}"


def _clean(*texts: str) -> bool:
    """Generated text that already looks like exception text would be a false alarm when a page echoes it."""
    return not any(LEAK.search(t) for t in texts)


# --- webhooks ----------------------------------------------------------------------------------------------------


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def _signed(source: str, body: bytes, timestamp: int) -> dict[str, str]:
    if source == "github":
        return {"x-hub-signature-256": sign_github(SECRETS["STEPFOLD_GITHUB_WEBHOOK_SECRET"], body)}
    if source == "slack":
        secret = SECRETS["STEPFOLD_SLACK_SIGNING_SECRET"]
        return {"x-slack-request-timestamp": str(timestamp), "x-slack-signature": sign_slack(secret, timestamp, body)}
    signature = sign_stepfold(SECRETS["STEPFOLD_WEBHOOK_SECRET"], timestamp, body, path=f"/webhooks/{source}")
    return {"x-stepfold-signature": signature}


HEADER_NAMES = st.sampled_from(
    [
        "x-hub-signature-256",
        "x-github-event",
        "x-github-delivery",
        "x-slack-request-timestamp",
        "x-slack-signature",
        "x-stepfold-signature",
        "content-type",
    ]
)
CONTENT_TYPES = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "text/plain", ""])


@FUZZ
@given(
    source=st.one_of(st.sampled_from(["github", "slack", "shop", "stepfold"]), TEXT.filter(bool)),
    headers=st.dictionaries(HEADER_NAMES, TEXT, max_size=5),
    body=BODY,
    content_type=CONTENT_TYPES,
    signed=st.booleans(),
    github_event=st.sampled_from(["issues", "push", "ping", "", "\u00b2"]),
)
@example(source="slack", headers={"x-slack-request-timestamp": "\u00b2", "x-slack-signature": "v0=0"}, body="{}",
         content_type="application/json", signed=False, github_event="issues")  # fmt: skip
@example(source="shop", headers={"x-stepfold-signature": "t=\u00b2,v2=00"}, body="{}",
         content_type="application/json", signed=False, github_event="issues")  # fmt: skip
@example(source="shop", headers={"x-stepfold-signature": "t=\u00b2,v1=00"}, body="{}",
         content_type="application/json", signed=False, github_event="issues")  # fmt: skip
@example(source="shop", headers={"x-stepfold-signature": "t=" + "9" * 5000 + ",v1=00"}, body="{}",
         content_type="application/json", signed=False, github_event="issues")  # fmt: skip
@example(source="shop", headers={}, body=_nested(20_000), content_type="application/json", signed=True,
         github_event="issues")  # fmt: skip
@example(source="github", headers={"x-github-delivery": "d-1"}, body='{"x": "\\ud800"}',
         content_type="application/json", signed=True, github_event="issues")  # fmt: skip
def test_webhooks_never_answer_5xx_or_exception_text(
    stack: LocalStack,
    source: str,
    headers: dict[str, str],
    body: str,
    content_type: str,
    signed: bool,
    github_event: str,
) -> None:
    assume(_clean(source))
    raw = body.encode("utf-8", "surrogatepass")
    sent = {"content-type": content_type, "x-github-event": github_event, "x-github-delivery": "d-fuzz", **headers}
    if signed:
        assume(_encodable(source))  # no sender can sign a path that is not UTF-8; unsigned, the server still sees it
        sent |= _signed(source, raw, int(time.time()))
    event = http_event("POST", "/webhooks/{source}", {"source": "placeholder"}, headers=sent, body=raw)
    event["pathParameters"] = {"source": source}
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/webhooks/{source}"
    _assert_safe(_call(triggers.handler, event), f"POST /webhooks/{source!r}")


# --- the approval page --------------------------------------------------------------------------------------------

QUERY_NAMES = st.sampled_from(["exp", "sig", "decision", "x"])


@FUZZ
@given(
    real_id=st.booleans(),
    other_id=TEXT.filter(bool),
    keep=st.sampled_from(["both", "exp", "sig", "none"]),
    extra=st.dictionaries(QUERY_NAMES, TEXT, max_size=3),
)
@example(real_id=True, other_id="x", keep="sig", extra={"exp": "\u00b2"})
@example(real_id=True, other_id="x", keep="sig", extra={"exp": "9" * 5000})
@example(real_id=True, other_id="x", keep="both", extra={})
@example(real_id=True, other_id="x", keep="exp", extra={"sig": "\u00b2"})  # hmac.compare_digest of non-ASCII str
def test_the_approval_page_get_never_answers_5xx_or_exception_text(
    stack: LocalStack, link: tuple[str, str, str], real_id: bool, other_id: str, keep: str, extra: dict[str, str]
) -> None:
    approval_id, exp, sig = link
    assume(_clean(other_id, *extra.values(), *extra))
    query = (
        {"exp": exp, "sig": sig} if keep == "both" else {keep: {"exp": exp, "sig": sig}[keep]} if keep != "none" else {}
    )
    query |= extra
    target = approval_id if real_id else other_id
    event = http_event("GET", "/approvals/{approval_id}", {"approval_id": "placeholder"})
    event["pathParameters"] = {"approval_id": target}
    event["queryStringParameters"] = query
    event["rawQueryString"] = urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in query.items()})
    _assert_safe(_call(approvals.handler, event), f"GET /approvals/{target!r}?{query!r}")


FORM_NAMES = st.sampled_from(["decision", "by", "comment", "args", "answer", "choice", "x"])
FORM_VALUES = st.one_of(
    TEXT,
    st.sampled_from(["approve", "reject", "edit", "answer"]),
    JSON_VALUE.map(_raw_json),
    st.integers(min_value=60, max_value=20_000).map(lambda d: _nested(d, open_='{"a":', close="}")),
)


@FUZZ
@given(
    fields=st.dictionaries(FORM_NAMES, FORM_VALUES, max_size=6),
    raw_body=st.one_of(st.none(), st.text(max_size=300)),
    base64_body=st.booleans(),
    valid_link=st.booleans(),
)
@example(fields={"decision": "edit", "by": "a", "args": "[" * 20_000}, raw_body=None, base64_body=True,
         valid_link=True)  # fmt: skip
@example(fields={"decision": "edit", "by": "a", "args": '{"service": "\\ud800"}'}, raw_body=None, base64_body=True,
         valid_link=True)  # fmt: skip
@example(fields={"decision": "answer", "by": "\ud800", "answer": "x"}, raw_body=None, base64_body=False,
         valid_link=True)  # fmt: skip
def test_the_approval_page_post_never_answers_5xx_or_exception_text(
    stack: LocalStack,
    link: tuple[str, str, str],
    fields: dict[str, str],
    raw_body: str | None,
    base64_body: bool,
    valid_link: bool,
) -> None:
    approval_id, exp, sig = link
    assume(_clean(*fields.values(), raw_body or ""))
    body = raw_body if raw_body is not None else "&".join(
        f"{k}={_quote(v)}" for k, v in fields.items()
    )  # fmt: skip
    query = {"exp": exp, "sig": sig} if valid_link else {"exp": exp, "sig": "0" * 64}
    headers = {"content-type": "application/x-www-form-urlencoded", "origin": f"https://{DOMAIN}"}
    event = http_event("POST", "/approvals/{approval_id}", {"approval_id": approval_id}, query=query, headers=headers)
    wire = body.encode("utf-8", "surrogatepass")
    event["body"] = base64.b64encode(wire).decode() if base64_body else body
    event["isBase64Encoded"] = base64_body
    _assert_safe(_call(approvals.handler, event), f"POST /approvals/{approval_id} {body[:200]!r}")


def _quote(value: str) -> str:
    from urllib.parse import quote  # noqa: PLC0415

    return quote(value.encode("utf-8", "surrogatepass"), safe="")


# --- the authorizer ------------------------------------------------------------------------------------------------


@FUZZ
@given(
    authorization=st.one_of(st.none(), TEXT, TEXT.map(lambda t: f"Bearer {t}"), st.just(f"Bearer {KEY}")),
    api_key=st.one_of(st.none(), TEXT, st.just(KEY)),
)
@example(authorization="Bearer \ud800", api_key=None)
@example(authorization=None, api_key=KEY + "\udfff")
def test_the_authorizer_never_fails_and_allows_only_the_key(
    stack: LocalStack, authorization: str | None, api_key: str | None
) -> None:
    headers = {k: v for k, v in {"authorization": authorization, "x-api-key": api_key}.items() if v is not None}
    event = http_event("GET", "/threads", headers=headers)
    event |= {
        "type": "REQUEST",
        "routeArn": "arn:aws:execute-api:us-east-1:123456789012:a1b2c3d4e5/$default/GET/threads",
    }
    result = _call(authorizer.handler, event)
    expected = authorization == f"Bearer {KEY}" or (api_key is not None and api_key.strip() == KEY)
    assert result["isAuthorized"] is expected, (headers, result)


HEADER_BYTES = st.binary(max_size=80).filter(lambda b: b"\r" not in b and b"\n" not in b)


@fuzz(80)
@given(authorization=st.one_of(HEADER_BYTES, HEADER_BYTES.map(lambda b: b"Bearer " + b)), api_key=HEADER_BYTES)
def test_key_routes_through_the_front_door_answer_401_to_any_wrong_header_bytes(
    door: FrontDoor, authorization: bytes, api_key: bytes
) -> None:
    assume(authorization.strip() and api_key.strip())
    headers = [(b"authorization", authorization), (b"x-api-key", api_key)]
    try:
        reply = httpx.get(f"{door.base_url}/agents", headers=headers, timeout=30)
    except httpx.LocalProtocolError:
        assume(False)  # httpx itself refuses to send it (e.g. NUL in a header): nothing reached the door
        raise
    assert reply.status_code == 401, reply.text
    assert LEAK.search(reply.text) is None, reply.text
    assert reply.headers["x-content-type-options"] == "nosniff"


# --- the API's JSON bodies -----------------------------------------------------------------------------------------


@FUZZ
@given(
    body=BODY,
    route=st.sampled_from(["/threads", "/thread", "/threads/th_fuzz/responses", "/threads/th_fuzz/messages"]),
)
@example(body=_nested(100_000), route="/threads")
@example(body='{"agent": "calculator", "input": "\\ud800"}', route="/threads")
@example(body='{"decision": "answer", "answer": "\\ud800"}', route="/threads/th_fuzz/responses")
def test_api_json_bodies_never_answer_5xx_or_exception_text(stack: LocalStack, body: str, route: str) -> None:
    assume(_clean(body))
    _assert_safe(_call(api.handler, _api_event("POST", route, raw=body)), f"POST {route} {body[:200]!r}")


# --- the front door itself ---------------------------------------------------------------------------------------


def test_the_front_doors_500_names_the_function_and_request_but_not_the_exception(
    stack: LocalStack, door: FrontDoor
) -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("secret=hunter2 at /var/task/core/store/dynamodb.py line 42")

    saved = stack.handler("ApiFunction")
    stack._handlers["ApiFunction"] = broken  # the function failing as a Lambda would, not a mock of ours
    try:
        reply = httpx.get(f"{door.base_url}/agents", headers={"authorization": f"Bearer {KEY}"}, timeout=30)
    finally:
        assert saved is not None
        stack._handlers["ApiFunction"] = saved
    assert reply.status_code == 500
    assert reply.json()["error"] == "internal"
    assert "ApiFunction failed (request " in reply.json()["detail"]
    for leaked in ("hunter2", "RuntimeError", "/var/task", "dynamodb.py"):
        assert leaked not in reply.text
    assert reply.headers["x-content-type-options"] == "nosniff"
