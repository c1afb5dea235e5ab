"""The API Gateway HTTP API (payload 2.0) event builder the local front door and the tests share.

Checked against the example event of AWS's developer guide ("Create AWS Lambda proxy integrations for HTTP APIs",
format 2.0) field by field, against what Powertools reads from it (the event data class, the parser's pydantic
model, and ``APIGatewayHttpResolver`` routing it), and for each rule API Gateway applies on the way in.
"""

from __future__ import annotations

import base64
import json
import re
import socket
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import APIGatewayAuthorizerEventV2
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model

from infra.local.apigw import authorizer_event, http_api_event
from infra.local.http import Request, Route, build_event, front_door
from infra.local.stack import LambdaContext
from tests.functional._http_events import http_event as route_event
from tests.functional.conftest import Shared

AT = datetime(2020, 3, 12, 19, 3, 58, 390_000, tzinfo=UTC)
ADDED = ("x-forwarded-for", "x-forwarded-port", "x-forwarded-proto", "x-amzn-trace-id")
"""Headers API Gateway adds, which the documentation's example leaves out (a captured event has them)."""

DOCS_EXAMPLE: dict[str, Any] = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "api-id",
        "authentication": {"clientCert": {"clientCertPem": "CERT_CONTENT", "subjectDN": "www.example.com"}},
        "authorizer": {"jwt": {"claims": {"claim1": "value1", "claim2": "value2"}, "scopes": ["scope1", "scope2"]}},
        "domainName": "id.execute-api.us-east-1.amazonaws.com",
        "domainPrefix": "id",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "192.168.0.1/32",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": "Hello from Lambda",
    "pathParameters": {"parameter1": "value1"},
    "isBase64Encoded": False,
    "stageVariables": {"stageVariable1": "value1", "stageVariable2": "value2"},
}
"""The guide's format 2.0 example (its clientCert shortened). Two of its fields come from features the template does
not use: ``requestContext.authentication`` (mutual TLS on a custom domain) and ``stageVariables``; its
``timeEpoch`` is 4 March while its ``time`` says 12 March, so the test takes the ``time`` and checks the epoch
agrees with it."""


def _docs_request() -> dict[str, Any]:
    return http_api_event(
        "POST",
        "/my/path",
        query="parameter1=value1&parameter1=value2&parameter2=value",
        headers=[
            ("Header1", "value1"),
            ("Header2", "value1"),
            ("Header2", "value2"),
            ("Cookie", "cookie1; cookie2"),
            ("User-Agent", "agent"),
            ("Content-Type", "text/plain"),
        ],
        body="Hello from Lambda",
        path_parameters={"parameter1": "value1"},
        authorizer=DOCS_EXAMPLE["requestContext"]["authorizer"],
        source_ip="192.168.0.1/32",
        api_id="api-id",
        account="123456789012",
        domain="id.execute-api.us-east-1.amazonaws.com",
        request_id="id",
        at=AT,
    )


def test_the_event_is_the_aws_documentation_example_field_by_field() -> None:
    event = _docs_request()

    headers = event["headers"]
    assert [headers.pop(name) for name in ADDED[:3]] == ["192.168.0.1/32", "443", "https"]
    assert re.fullmatch(r"Root=1-[0-9a-f]{8}-[0-9a-f]{24}", headers.pop("x-amzn-trace-id"))
    assert headers.pop("user-agent") == "agent"  # the example shows only its userAgent and its text body,
    assert headers.pop("content-type") == "text/plain"  # not the two headers they came from
    expected = json.loads(json.dumps(DOCS_EXAMPLE))
    del expected["requestContext"]["authentication"], expected["stageVariables"]
    expected["requestContext"]["timeEpoch"] = int(AT.timestamp() * 1000)
    assert set(event) == set(expected)
    for field in expected:
        assert event[field] == expected[field], field
    assert event == expected


def test_powertools_reads_the_event_as_api_gateway_sent_it() -> None:
    event = _docs_request()

    APIGatewayProxyEventV2Model.model_validate(event)  # the parser's schema of the real event
    parsed = APIGatewayProxyEventV2(event)
    assert (parsed.http_method, parsed.path, parsed.raw_path, parsed.route_key) == (
        "POST",
        "/my/path",
        "/my/path",
        "$default",
    )
    assert parsed.cookies == ["cookie1", "cookie2"]
    assert parsed.headers["Header2"] == "value1,value2"  # case-insensitive, as on Lambda
    assert parsed.query_string_parameters == {"parameter1": "value1,value2", "parameter2": "value"}
    assert parsed.resolved_query_string_parameters == {"parameter1": ["value1", "value2"], "parameter2": ["value"]}
    assert parsed.path_parameters == {"parameter1": "value1"}
    assert parsed.decoded_body == "Hello from Lambda"
    context = parsed.request_context
    assert (context.http.source_ip, context.http.user_agent, context.stage) == ("192.168.0.1/32", "agent", "$default")
    assert context.authorizer.jwt_claim == {"claim1": "value1", "claim2": "value2"}
    assert context.time_epoch == int(AT.timestamp() * 1000)


def test_the_resolver_routes_it_and_decodes_a_base64_body() -> None:
    app = APIGatewayHttpResolver()

    @app.post("/threads/<thread_id>/messages")
    def post(thread_id: str) -> dict[str, Any]:
        event = app.current_event
        caller = event.request_context.authorizer.get_lambda["caller"]
        return {"thread": thread_id, "body": event.decoded_body, "x": event.query_string_parameters["x"], "by": caller}

    event = http_api_event(
        "POST",
        "/threads/th_1/messages",
        query="x=1&x=2",
        headers={"content-type": "application/x-www-form-urlencoded"},
        body="text=hi+there",
        route_key="ANY /{proxy+}",
        path_parameters={"proxy": "threads/th_1/messages"},
        authorizer={"lambda": {"caller": "ann"}},
    )
    assert event["isBase64Encoded"] is True  # a form post: API Gateway base64-encodes it

    context: Any = LambdaContext(function_name="ApiFunction")  # the stack's stand-in for Lambda's context object
    result = app.resolve(event, context)

    assert result["statusCode"] == 200
    assert json.loads(result["body"]) == {"thread": "th_1", "body": "text=hi+there", "x": "1,2", "by": "ann"}


@pytest.mark.parametrize(
    ("content_type", "body", "wire", "encoded"),
    [
        ("application/json", '{"a": 1}', '{"a": 1}', False),
        ("application/json; charset=utf-8", b'{"a": 1}', '{"a": 1}', False),
        ("text/html", "<p>é</p>", "<p>é</p>", False),
        ("application/xml", "<a/>", "<a/>", False),
        ("application/x-www-form-urlencoded", "a=1", base64.b64encode(b"a=1").decode(), True),
        (None, "a=1", base64.b64encode(b"a=1").decode(), True),
        ("application/octet-stream", b"\x00\xff", base64.b64encode(b"\x00\xff").decode(), True),
        ("text/plain", b"\xff\xfe", base64.b64encode(b"\xff\xfe").decode(), True),  # not UTF-8: binary after all
    ],
)
def test_the_content_type_decides_whether_the_body_is_base64(
    content_type: str | None, body: str | bytes, wire: str, encoded: bool
) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}

    event = http_api_event("POST", "/x", headers=headers, body=body)

    assert (event["body"], event["isBase64Encoded"]) == (wire, encoded)
    received = base64.b64decode(event["body"]) if encoded else event["body"].encode()
    assert received == (body if isinstance(body, bytes) else body.encode())  # the function gets the bytes sent


def test_what_a_request_without_query_body_cookies_or_parameters_leaves_out() -> None:
    event = http_api_event("GET", "/threads", headers=[("Connection", "keep-alive"), ("Accept", "a"), ("Accept", "b")])

    assert {"queryStringParameters", "pathParameters", "cookies", "body"}.isdisjoint(event)
    assert "authorizer" not in event["requestContext"]
    assert event["isBase64Encoded"] is False
    assert event["rawQueryString"] == ""
    assert event["headers"]["accept"] == "a,b"
    assert "connection" not in event["headers"]  # hop-by-hop: the connection's, not the request's
    assert event["requestContext"]["domainName"] == "localapi01.execute-api.us-east-1.amazonaws.com"
    assert event["requestContext"]["domainPrefix"] == "localapi01"
    assert re.fullmatch(r"[A-Za-z0-9+/]{15}=", event["requestContext"]["requestId"])
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", event["requestContext"]["time"])


def test_headers_the_client_sent_are_kept_and_a_query_is_decoded() -> None:
    event = http_api_event(
        "GET",
        "/a%20b",
        query="q=caf%C3%A9&q=x+y&empty=",
        headers={"X-Forwarded-For": "198.51.100.1", "Host": "api.example.com"},
        source_ip="203.0.113.9",
    )

    assert event["rawPath"] == event["requestContext"]["http"]["path"] == "/a%20b"
    assert event["queryStringParameters"] == {"q": "café,x y", "empty": ""}
    assert event["headers"]["x-forwarded-for"] == "198.51.100.1"
    assert event["requestContext"]["http"]["sourceIp"] == "203.0.113.9"
    assert (event["requestContext"]["domainName"], event["requestContext"]["domainPrefix"]) == (
        "api.example.com",
        "api",
    )


def test_the_authorizer_event_is_the_request_without_its_body_plus_the_route_arn() -> None:
    request = http_api_event(
        "GET",
        "/threads",
        query="status=running",
        headers={"Authorization": "Bearer k", "Cookie": "a=1"},
        authorizer={"lambda": {"caller": "stale"}},
        at=AT,
    )

    event = authorizer_event(request, ("authorization", "x-api-key"))

    assert event["version"] == "2.0"
    assert event["type"] == "REQUEST"
    assert event["routeArn"] == "arn:aws:execute-api:us-east-1:123456789012:localapi01/$default/GET/threads"
    assert event["identitySource"] == ["Bearer k"]
    assert "body" not in event
    assert "isBase64Encoded" not in event
    assert "authorizer" not in event["requestContext"], "the authorizer decides it; it is not in its own input"
    for field in ("routeKey", "rawPath", "rawQueryString", "cookies", "headers", "queryStringParameters"):
        assert event[field] == request[field], field
    parsed = APIGatewayAuthorizerEventV2(event)
    assert (parsed.parsed_arn.api_id, parsed.parsed_arn.stage, parsed.parsed_arn.http_method) == (
        "localapi01",
        "$default",
        "GET",
    )
    assert parsed.headers["Authorization"] == "Bearer k"  # case-insensitive, as on Lambda
    assert parsed.identity_source == ["Bearer k"]


def test_the_front_door_and_the_tests_build_the_same_event() -> None:
    """``stepfold serve`` turns a socket's request into the event; the tests build theirs from a route. Same shape."""
    headers = [("Host", "127.0.0.1:8000"), ("Content-Type", "application/x-www-form-urlencoded"), ("Cookie", "c=1")]
    request = Request("POST", "/approvals/apr_1?exp=1&sig=ab", headers, b"decision=approve", ("203.0.113.7", 5), 8000)
    route = Route("POST", "/approvals/{approval_id}", "ApprovalsFunction", None)

    served = build_event(request, route, {"approval_id": "apr_1"})
    built = route_event(
        "POST",
        "/approvals/{approval_id}",
        {"approval_id": "apr_1"},
        query="exp=1&sig=ab",
        headers={"content-type": "application/x-www-form-urlencoded", "cookie": "c=1"},
        body="decision=approve",
        base64_body=True,
    )

    assert set(served) == set(built)
    assert set(served["requestContext"]) == set(built["requestContext"])
    for field in ("routeKey", "rawPath", "rawQueryString", "queryStringParameters", "pathParameters", "cookies"):
        assert served[field] == built[field], field
    assert (served["body"], served["isBase64Encoded"]) == (built["body"], built["isBase64Encoded"])
    assert served["requestContext"]["http"]["path"] == built["requestContext"]["http"]["path"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: http_api_event("GET /x", "/x"), "is not an HTTP method"),
        (lambda: http_api_event("GET", "x"), "must start with '/'"),
        (lambda: http_api_event("GET", "/x", route_key="/x"), "neither '$default' nor 'METHOD /path'"),
        (lambda: http_api_event("GET", "/x", at=datetime(2020, 1, 1)), "has no time zone"),
        (lambda: http_api_event("POST", "/x", body=b"\xff", base64_body=False), "not UTF-8"),
    ],
)
def test_bad_input_says_what_is_wrong(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


def test_the_front_door_refuses_a_request_target_that_is_no_path(shared: Shared) -> None:
    """``OPTIONS *`` (or any target without a leading ``/``) gets a 400, never an event with a rawPath API Gateway
    could not have sent."""
    with shared.lease() as stack, front_door(stack) as door:
        url = urlsplit(door.base_url)
        with socket.create_connection((url.hostname or "", url.port or 80)) as conn:
            conn.sendall(b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert json.loads(body) == {"error": "bad_request", "detail": "the request target '*' is not a path"}
