"""A small MCP client: JSON-RPC over streamable HTTP, on httpx (ARCHITECTURE.md "MCP tools").

What a step needs and nothing more: ``initialize`` and ``notifications/initialized`` (keeping the server's
``Mcp-Session-Id`` and sending ``MCP-Protocol-Version`` after it), ``tools/list`` page by page (``nextCursor``) and
``tools/call``. Every response may come as ``application/json`` or as a ``text/event-stream`` whose events carry
the answer (and perhaps notifications before it). A session the server forgot (404) is started again once.

Failures are one of two kinds: :class:`McpUnavailableError` (connection, timeout, 408/429/5xx: try later; the
boundary maps it to ``DependencyUnavailable``, which Step Functions retries) or :class:`McpProtocolError` (the
server refused: 4xx, a JSON-RPC error, an answer that is not JSON-RPC). Header values are never put in a message.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from core.kernel.errors import clip
from core.kernel.tools import ToolUnavailableError

PROTOCOL_VERSION = "2025-06-18"
"""The protocol version we ask for; the server may answer with another it supports, which we then send."""
CLIENT_INFO = {"name": "stepfold", "version": "0.1.0"}
_RETRYABLE = frozenset({408, 425, 429})
MAX_PAGES = 50
"""``tools/list`` pages followed at most (a server that always sends a cursor must not hold a step forever)."""


class McpUnavailableError(ToolUnavailableError):
    """The MCP server cannot be reached now, or said to try later: the step is retried."""


class McpProtocolError(Exception):
    """The MCP server refused the request or answered something that is not a JSON-RPC answer."""

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class McpClient:
    """One server's session, reused across invocations of a warm container. Thread-safe (one request at a time)."""

    def __init__(
        self,
        url: str,
        headers: Mapping[str, str] | None = None,
        *,
        http: httpx.Client | None = None,
        timeout_s: float = 30.0,
        server: str = "",
    ) -> None:
        self.url = url
        self.server = server or url
        self._headers = dict(headers or {})
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(5.0, timeout_s)), follow_redirects=False
        )
        self._owns_http = http is None
        self._session: str | None = None
        self._version: str | None = None
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    # --- the protocol --------------------------------------------------------------------------------------------

    def initialize(self) -> dict[str, Any]:
        with self._lock:
            self._session = None
            self._version = None
            result = self._call(
                "initialize",
                {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
                initialized=False,
            )
            version = result.get("protocolVersion")
            self._version = version if isinstance(version, str) else PROTOCOL_VERSION
            self._notify("notifications/initialized")
            return result

    def list_tools(self) -> list[dict[str, Any]]:
        """Every tool the server lists, following ``nextCursor``."""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            result = self.request("tools/list", {"cursor": cursor} if cursor else {})
            page = result.get("tools")
            if not isinstance(page, list):
                raise McpProtocolError(f"MCP server {self.server}: tools/list answered without a list of tools")
            tools.extend(t for t in page if isinstance(t, dict))
            cursor = result.get("nextCursor") or None
            if cursor is None:
                return tools
        raise McpProtocolError(f"MCP server {self.server}: tools/list still had more after {MAX_PAGES} pages")

    def call_tool(
        self, name: str, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"name": name, "arguments": dict(arguments)}
        if meta:
            params["_meta"] = dict(meta)
        return self.request("tools/call", params)

    def request(self, method: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One request in the session (started first if there is none; again once if the server forgot it)."""
        with self._lock:
            if self._version is None:
                self.initialize()
            try:
                return self._call(method, params)
            except _SessionGone:
                self.initialize()
                return self._call(method, params)

    # --- the wire ------------------------------------------------------------------------------------------------

    def _request_headers(self, initialized: bool) -> dict[str, str]:
        headers = {
            **self._headers,
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
        }
        if initialized and self._session:
            headers["Mcp-Session-Id"] = self._session
        if initialized and self._version:
            headers["MCP-Protocol-Version"] = self._version
        return headers

    def _notify(self, method: str) -> None:
        body = {"jsonrpc": "2.0", "method": method}
        with self._post(body, initialized=True) as response:
            self._check_status(response, method)

    def _call(self, method: str, params: Mapping[str, Any], *, initialized: bool = True) -> dict[str, Any]:
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": dict(params)}
        with self._post(body, initialized=initialized) as response:
            self._check_status(response, method)
            if not initialized:
                self._session = response.headers.get("mcp-session-id") or None
            message = self._answer(response, request_id, method)
        error = message.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            text = error.get("message") if isinstance(error, dict) else error
            raise McpProtocolError(
                f"MCP server {self.server} refused {method}: {clip(str(text), 300)} (JSON-RPC error {code})",
                code=code if isinstance(code, int) else None,
            )
        result = message.get("result")
        if not isinstance(result, dict):
            raise McpProtocolError(f"MCP server {self.server}: {method} answered without a result object")
        return result

    @contextlib.contextmanager
    def _post(self, body: dict[str, Any], *, initialized: bool) -> Iterator[httpx.Response]:
        what = body["method"]
        try:
            with self._http.stream(
                "POST", self.url, content=json.dumps(body), headers=self._request_headers(initialized)
            ) as response:
                yield response
        except httpx.TransportError as exc:  # connect, read, write, pool: nothing answered (yet)
            raise McpUnavailableError(f"MCP server {self.server}: {type(exc).__name__} on {what}") from None
        except (httpx.InvalidURL, httpx.HTTPError) as exc:  # not something a retry fixes
            raise McpProtocolError(f"MCP server {self.server}: {type(exc).__name__} on {what}") from None

    def _check_status(self, response: httpx.Response, method: str) -> None:
        status = response.status_code
        if status < 300:
            return
        if status == 404 and self._session is not None and method != "initialize":
            raise _SessionGone
        if status in _RETRYABLE or status >= 500:
            raise McpUnavailableError(f"MCP server {self.server} answered {method} with HTTP {status}")
        hint = " (check its headers in the mcp_servers secret key)" if status in (401, 403) else ""
        raise McpProtocolError(f"MCP server {self.server} answered {method} with HTTP {status}{hint}")

    def _answer(self, response: httpx.Response, request_id: int, method: str) -> dict[str, Any]:
        """The JSON-RPC message answering ``request_id``, from a JSON body or an event stream."""
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "text/event-stream":
            for message in _events(response.iter_lines()):
                if isinstance(message, dict) and message.get("id") == request_id and "method" not in message:
                    return message
            raise McpUnavailableError(f"MCP server {self.server}: the stream ended before the answer to {method}")
        response.read()
        try:
            message = json.loads(response.content)
        except ValueError:
            raise McpProtocolError(f"MCP server {self.server}: {method} answered with something not JSON") from None
        if isinstance(message, list):  # a batch: find ours
            message = next((m for m in message if isinstance(m, dict) and m.get("id") == request_id), None)
        if not isinstance(message, dict):
            raise McpProtocolError(f"MCP server {self.server}: {method} answered with no JSON-RPC message")
        return message


class _SessionGone(Exception):  # noqa: N818 - internal signal: the server forgot our session (HTTP 404)
    pass


def _events(lines: Iterator[str]) -> Iterator[Any]:
    """The JSON of each server-sent event's data (the ``message`` events; others are skipped)."""
    data: list[str] = []
    event = "message"
    for line in lines:
        if line == "":
            if data and event == "message":
                with contextlib.suppress(ValueError):
                    yield json.loads("\n".join(data))
            data, event = [], "message"
        elif line.startswith(":"):
            continue
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value or "message"
    if data and event == "message":
        try:
            yield json.loads("\n".join(data))
        except ValueError:
            return
