"""The local front door: HTTP requests in, API Gateway HTTP API (payload 2.0) events out, to the real handlers.

``stepfold serve`` and the tests put this in front of a :class:`~infra.local.stack.LocalStack`. The routes,
which function answers each one and which routes need the Lambda authorizer are read from the ``HttpApi``
events of ``template.yaml``, and requests are matched the way API Gateway does (exact and ``{param}`` routes
before greedy ``{proxy+}`` ones, then ``$default``). Each handler is the one the template deploys, taken
from the stack's registry and called with a real v2 event and a Lambda context. What API Gateway would do
in between happens here: run the authorizer, build the event (:mod:`infra.local.apigw`, the builder the tests use
too), map the response back.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from core.kernel.parsing import ascii_int
from infra.local.apigw import API_ID, authorizer_event, group_headers, http_api_event
from infra.local.stack import ACCOUNT, REGION, LambdaContext, LocalStack
from infra.local.template import Template, TemplateError

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
_NO_AUTH = "NONE"
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,8}")
_SECURITY_HEADERS = [("x-content-type-options", "nosniff")]
"""On the door's own JSON answers (404, 401, 413, 500), as on the functions'."""


class RouteError(TemplateError):
    """The template's HTTP API routes cannot be served locally as declared."""


@dataclass(frozen=True)
class Route:
    """One route of the HTTP API: ``METHOD /path`` (or ``$default``), its function and its authorizer."""

    method: str
    path: str
    function: str
    authorizer: str | None

    @property
    def key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters if this route takes the request, else None."""
        if self.path == "$default":
            return {}
        if self.method not in ("ANY", method):
            return None
        found = _pattern(self.path).fullmatch(path)
        if found is None:
            return None
        return {name: unquote(value) for name, value in found.groupdict().items()}

    def precedence(self) -> tuple[int, int, int]:
        """Sort key: exact and ``{param}`` routes, then greedy ones by longest prefix, then ``$default``.

        A route for the request's own method wins over ``ANY`` at the same path.
        """
        if self.path == "$default":
            return (2, 0, 0)
        segments = [s for s in self.path.split("/") if s]
        greedy = bool(segments) and segments[-1].endswith("+}")
        literal = sum(not s.startswith("{") for s in segments)
        return (int(greedy), -(literal * 2 + len(segments)), int(self.method == "ANY"))


def _pattern(path: str) -> re.Pattern[str]:
    parts = []
    for segment in path.split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(f"(?P<{segment[1:-2]}>.+)")
        elif segment.startswith("{") and segment.endswith("}"):
            parts.append(f"(?P<{segment[1:-1]}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/".join(parts))


@dataclass(frozen=True)
class Authorizer:
    """A Lambda authorizer of the HTTP API (payload 2.0)."""

    name: str
    function: str
    identity_headers: tuple[str, ...]
    simple_responses: bool


def _function_of(arn: Any, where: str) -> str:
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        return str(arn["Fn::GetAtt"][0])
    raise RouteError(f"{where}: FunctionArn must be !GetAtt <Function>.Arn for the local stack to route it")


def read_api(template: Template) -> tuple[list[Route], dict[str, Authorizer]]:
    """The HTTP API's routes (most specific first) and authorizers, as ``template.yaml`` declares them."""
    apis = [r.get("Properties", {}) for r in template.resources.values() if r.get("Type") == "AWS::Serverless::HttpApi"]
    auth: dict[str, Any] = (apis[0] if apis else template.doc.get("Globals", {}).get("HttpApi", {})).get("Auth", {})
    authorizers = {
        name: Authorizer(
            name,
            _function_of(spec.get("FunctionArn"), f"authorizer {name}"),
            tuple(h.lower() for h in spec.get("Identity", {}).get("Headers", [])),
            bool(spec.get("EnableSimpleResponses", False)),
        )
        for name, spec in auth.get("Authorizers", {}).items()
    }
    default_authorizer = auth.get("DefaultAuthorizer")
    routes: list[Route] = []
    for logical_id, resource in template.resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        for event in resource.get("Properties", {}).get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            props = event.get("Properties", {})
            path, method = props.get("Path"), str(props.get("Method", "ANY")).upper()
            chosen = props.get("Auth", {}).get("Authorizer", default_authorizer)
            authorizer = None if chosen in (None, _NO_AUTH) else str(chosen)
            if authorizer is not None and authorizer not in authorizers:
                raise RouteError(f"{logical_id}: route {method} {path} names unknown authorizer {authorizer}")
            routes.append(Route("ANY" if path is None else method, path or "$default", logical_id, authorizer))
    return sorted(routes, key=Route.precedence), authorizers


# --- the v2 event --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server read it."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes
    client: tuple[str, int]
    host_port: int


def build_event(request: Request, route: Route, path_parameters: Mapping[str, str]) -> dict[str, Any]:
    """The API Gateway HTTP API payload 2.0 event for ``request`` on ``route`` (:mod:`infra.local.apigw`)."""
    url = urlsplit(request.target)
    host = next((value for name, value in request.headers if name.lower() == "host"), None)
    return http_api_event(
        request.method,
        url.path or "/",  # a target of only a query ("?a=1") is the root
        query=url.query,
        headers=request.headers,
        body=request.body or None,
        route_key=route.key,
        path_parameters=path_parameters,
        source_ip=request.client[0],
        port=request.host_port,
        scheme="http",
        api_id=API_ID,
        account=ACCOUNT,
        region=REGION,
        domain=host or f"127.0.0.1:{request.host_port}",
    )


# --- the response --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _json(status: int, error: str, detail: str) -> Response:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return Response(status, [("content-type", "application/json"), *_SECURITY_HEADERS], body)


def to_response(result: Any) -> Response:
    """Map a handler's v2 result back to HTTP, as API Gateway does (a bare value is a 200 JSON body)."""
    if not (isinstance(result, dict) and "statusCode" in result):
        text = result if isinstance(result, str) else json.dumps(result)
        return Response(200, [("content-type", "application/json")], text.encode())
    status = result["statusCode"]
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError(f"the function returned statusCode {status!r}; it must be an integer HTTP status")
    headers = [(str(k).lower(), str(v)) for k, v in (result.get("headers") or {}).items()]
    headers += [("set-cookie", str(c)) for c in result.get("cookies") or []]
    raw = "" if result.get("body") is None else str(result["body"])
    body = base64.b64decode(raw, validate=True) if result.get("isBase64Encoded") else raw.encode()
    if body and not any(k == "content-type" for k, _ in headers):
        headers.append(("content-type", "application/json"))
    return Response(status, headers, body)


# --- the server ----------------------------------------------------------------------------------


class FrontDoor(ThreadingHTTPServer):
    """A threading HTTP server that answers with the stack's handlers. Stop it with :meth:`close`."""

    daemon_threads = True

    def __init__(self, stack: LocalStack, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stack = stack
        self.routes, self.authorizers = read_api(stack.template)
        super().__init__((host, port), _Handler)
        self.thread: threading.Thread | None = None
        self._saved_public_url: str | None = None

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        """Serve on a background thread, and make approval links point here (``STEPFOLD_PUBLIC_URL``)."""
        self._saved_public_url = os.environ.get("STEPFOLD_PUBLIC_URL")
        os.environ["STEPFOLD_PUBLIC_URL"] = self.base_url
        rt = self.stack.rt
        rt.settings = rt.settings.model_copy(update={"public_url": self.base_url})
        self.thread = threading.Thread(target=self.serve_forever, name="stepfold-front-door", daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.thread is not None:
            self.shutdown()
            self.thread.join(timeout=5)
            self.thread = None
        self.server_close()
        if self._saved_public_url is None:
            os.environ.pop("STEPFOLD_PUBLIC_URL", None)
        else:
            os.environ["STEPFOLD_PUBLIC_URL"] = self._saved_public_url

    def route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def _call(self, function: str, event: dict[str, Any]) -> Any:
        """Invoke a function's handler as Lambda does: JSON in, JSON out, a fresh context."""
        handler = self.stack.handler(function)
        if handler is None:
            raise IntegrationError(f"template.yaml declares no function {function}")
        context = LambdaContext(function_name=function, invoked_function_arn=self.stack.function_arns.get(function, ""))
        try:
            return json.loads(json.dumps(handler(json.loads(json.dumps(event)), context)))
        except Exception as exc:
            raise IntegrationError(f"{function} failed: {type(exc).__name__}: {exc}") from exc

    def _authorize(self, event: dict[str, Any], authorizer: Authorizer) -> dict[str, Any] | None:
        """The authorizer's context when it allows the request, else None."""
        if any(h not in event["headers"] for h in authorizer.identity_headers):
            return None  # API Gateway refuses without calling the authorizer
        result = self._call(authorizer.function, authorizer_event(event, authorizer.identity_headers, region=REGION))
        if not isinstance(result, dict):
            return None
        context: dict[str, Any] = result["context"] if isinstance(result.get("context"), dict) else {}
        if authorizer.simple_responses or "isAuthorized" in result:
            return context if result.get("isAuthorized") is True else None
        statements = (result.get("policyDocument") or {}).get("Statement") or []
        allowed = bool(statements) and all(s.get("Effect") == "Allow" for s in statements)
        return context if allowed else None

    def _local(self, request: Request, path: str) -> Response | None:
        """The local-only routes (``/_local/...``, :mod:`infra.local.admin`): events and schedules on request."""
        from functions.authorizer import authenticate  # noqa: PLC0415
        from infra.local import admin  # noqa: PLC0415

        if not path.startswith(admin.PREFIX):
            return None
        headers = {name: ",".join(values) for name, values in group_headers(request.headers).items()}
        authorized = authenticate(headers, self.stack.rt.secrets.principals()) is not None
        try:
            local = admin.answer(self.stack, request.method, path, request.body, authorized)
        except Exception as exc:  # logged, and answered 500 like an integration failure
            logger.error("%s %s failed: %s", request.method, path, exc, exc_info=exc)
            return _json(500, "internal", f"{path} failed; the server's log has the error")
        if local is None:
            return None
        return Response(
            local.status, [("content-type", "application/json"), *_SECURITY_HEADERS], json.dumps(local.body).encode()
        )

    def answer(self, request: Request) -> Response:
        """The response API Gateway would give for ``request``; never raises."""
        path = urlsplit(request.target).path or "/"
        if not path.startswith("/"):  # `OPTIONS *`, or a target that is no path at all
            return _json(400, "bad_request", f"the request target {request.target[:100]!r} is not a path")
        local = self._local(request, path)
        if local is not None:
            return local
        found = self.route(request.method, path)
        if found is None:
            return _json(404, "not_found", f"no route for {request.method} {path}")
        route, params = found
        event = build_event(request, route, params)
        try:
            if route.authorizer is not None:
                context = self._authorize(event, self.authorizers[route.authorizer])
                if context is None:
                    return _unauthorized()
                event["requestContext"]["authorizer"] = {"lambda": context}
            result = self._call(route.function, event)
            try:
                return to_response(result)
            except ValueError as exc:
                raise IntegrationError(f"{route.function} returned an invalid response: {exc}") from exc
        except IntegrationError as exc:  # API Gateway answers 500 for a failed integration, and so do we
            # The exception goes to the log only: its text can hold paths, SQL, secrets or the caller's own input,
            # and the door is what `stepfold serve` exposes (API Gateway never echoes it either).
            request_id = event["requestContext"]["requestId"]
            logger.error("%s %s (request %s): %s", request.method, path, request_id, exc, exc_info=exc.__cause__)
            detail = f"{route.function} failed (request {request_id}); the server's log has the error"
            return _json(500, "internal", detail)


class IntegrationError(Exception):
    """A function failed or answered something API Gateway cannot use."""


def _unauthorized() -> Response:
    return _json(
        401,
        "unauthorized",
        "missing or invalid API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
    )


class _Handler(BaseHTTPRequestHandler):
    server: FrontDoor
    protocol_version = "HTTP/1.1"
    server_version = "stepfold-local"

    def _handle(self) -> None:
        started = time.monotonic()
        response = self._respond()
        self._send(response)
        logger.info("%s %s -> %d (%.0f ms)", self.command, self.path.split("?", 1)[0], response.status, _ms(started))

    def _respond(self) -> Response:
        try:
            body = self._read_body()
        except ValueError:
            self.close_connection = True
            return _json(400, "bad_request", "the request's Content-Length or chunk sizes are malformed")
        if body is None:
            self.close_connection = True  # the unread body is still on the connection
            return _json(413, "payload_too_large", f"the request body is over {MAX_BODY_BYTES} bytes")
        client = (self.client_address[0], self.client_address[1])
        request = Request(
            self.command, self.path, list(self.headers.items()), body, client, self.server.server_address[1]
        )
        return self.server.answer(request)

    def _read_body(self) -> bytes | None:
        """The request body, or None when it is over the cap (then it is not read at all)."""
        if "chunked" in self.headers.get("transfer-encoding", "").lower():
            chunks: list[bytes] = []
            size = 0
            while True:
                size_line = self.rfile.readline().split(b";", 1)[0].strip() or b"0"
                if not _CHUNK_SIZE.fullmatch(size_line):
                    raise ValueError("a chunk size is not 1-8 hex digits")
                length = int(size_line, 16)
                if length == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                size += length
                if size > MAX_BODY_BYTES:
                    return None
                chunks.append(self.rfile.read(length))
                self.rfile.readline()
        given = (self.headers.get("content-length") or "0").strip()
        declared = ascii_int(given, max_digits=19)  # not int(), which also takes '+7', '٣' and '1_0'
        if declared is None:
            raise ValueError(f"Content-Length {given[:40]!r} is not a number of bytes")
        if declared > MAX_BODY_BYTES:
            return None
        return self.rfile.read(declared) if declared > 0 else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        if self.close_connection:
            self.send_header("connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug(format, *args)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815 - the base class's names


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def serve(stack: LocalStack, host: str = "127.0.0.1", port: int = 0) -> tuple[FrontDoor, str]:
    """Start the front door for a started stack; returns the server (``close()`` it) and its base URL."""
    server = FrontDoor(stack, host, port)
    server.start()
    return server, server.base_url


@contextmanager
def front_door(stack: LocalStack, host: str = "127.0.0.1", port: int = 0) -> Iterator[FrontDoor]:
    server, _ = serve(stack, host, port)
    try:
        yield server
    finally:
        server.close()
