"""An example MCP server, run locally (``make demo``, the tests): the official ``mcp`` SDK's streamable HTTP app.

``ops`` serves the tools the ``oncall`` agent (agents/oncall.py) uses next to its own, one of each kind of
annotation: ``service_status`` is read-only (it runs without asking), ``restart_service`` is destructive (a person
approves it) and ``add_incident_note`` has no annotations (fail closed: a person approves it too).

:class:`LocalMcpServer` runs any ``MCPServer`` on a free local port in a thread (uvicorn), with a switch that makes
it answer the next requests with HTTP 503, the way a server that is down for a moment does. The ``mcp`` package is
a dev dependency (pyproject's ``dev`` extra), never in the Lambda package.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ListToolsResult, PaginatedRequestParams, ToolAnnotations
from starlette.types import ASGIApp, Receive, Scope, Send

URL_SETTING = "STEPFOLD_MCP_OPS_URL"
"""Where agents/oncall.py's declaration reads the ops server's URL."""


@dataclass
class Ops:
    """The example server's state: the services, and what was done to them."""

    status: dict[str, str] = field(default_factory=lambda: {"checkout": "degraded", "search": "ok"})
    restarts: list[str] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)
    calls: list[str] = field(default_factory=list)
    """The tools called, in order."""


class PagedMCPServer(MCPServer):
    """An ``MCPServer`` whose ``tools/list`` answers ``page_size`` tools at a time, with a ``nextCursor``."""

    page_size = 0
    """0: every tool on one page (what MCPServer itself does)."""

    async def _handle_list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        tools = await self.list_tools()
        if not self.page_size:
            return ListToolsResult(tools=tools)
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


def ops_server(ops: Ops | None = None, *, page_size: int = 0) -> tuple[PagedMCPServer, Ops]:
    """The ``ops`` MCP server and its state (``page_size``: list its tools that many per page)."""
    state = ops or Ops()
    server = PagedMCPServer("ops", log_level="WARNING")
    server.page_size = page_size

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    def service_status(service: str) -> dict[str, Any]:
        """The health of a service: ok, degraded or down, with its error rate."""
        state.calls.append("service_status")
        status = state.status.get(service)
        if status is None:
            raise ToolError(f"no service {service!r}; known: {', '.join(sorted(state.status))}")
        return {"service": service, "status": status, "error_rate": 0.31 if status == "degraded" else 0.0}

    @server.tool(annotations=ToolAnnotations(destructiveHint=True, idempotentHint=False))
    def restart_service(service: str, reason: str) -> dict[str, Any]:
        """Restart every instance of a service (drops its in-flight requests)."""
        state.calls.append("restart_service")
        if service not in state.status:
            raise ToolError(f"no service {service!r}")
        state.restarts.append(service)
        state.status[service] = "ok"
        return {"service": service, "restarted": True, "reason": reason}

    @server.tool()
    def add_incident_note(incident: str, note: str) -> str:
        """Add a note to an incident's timeline."""
        state.calls.append("add_incident_note")
        state.notes.append((incident, note))
        return f"noted on {incident}"

    return server, state


class _Outage:
    """ASGI middleware: answers the next ``remaining`` requests with 503 instead of passing them on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.remaining = 0
        self.refused = 0
        self.headers: list[dict[str, str]] = []
        """Each request's headers (lowercased names), to check what the client sent."""
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            with self._lock:
                self.headers.append({k.decode().lower(): v.decode() for k, v in scope.get("headers", [])})
                down = self.remaining > 0
                if down:
                    self.remaining -= 1
                    self.refused += 1
            if down:
                await send({"type": "http.response.start", "status": 503, "headers": [(b"content-length", b"0")]})
                await send({"type": "http.response.body", "body": b""})
                return
        await self.app(scope, receive, send)


class LocalMcpServer:
    """An ``MCPServer`` over streamable HTTP on ``127.0.0.1`` (a free port), in a daemon thread."""

    def __init__(self, server: MCPServer, *, stateless: bool = False, json_response: bool = False) -> None:
        self.server = server
        self.outage = _Outage(server.streamable_http_app(stateless_http=stateless, json_response=json_response))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self._uvicorn = uvicorn.Server(uvicorn.Config(self.outage, log_level="warning", lifespan="on"))
        self._thread: threading.Thread | None = None

    def start(self) -> LocalMcpServer:
        for name in ("mcp", "uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(
            target=self._uvicorn.run, kwargs={"sockets": [self._socket]}, name="mcp-server", daemon=True
        )
        self._thread.start()
        started = threading.Event()
        while not self._uvicorn.started:
            if not self._thread.is_alive():
                raise RuntimeError("the MCP server stopped while starting")
            started.wait(0.01)
        return self

    def fail_next(self, requests: int) -> None:
        """Answer the next ``requests`` requests with HTTP 503 (a server down for a moment)."""
        self.outage.remaining = requests

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> LocalMcpServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def free_url() -> str:
    """A local MCP URL where nothing listens (a server that is down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/mcp"


@contextlib.contextmanager
def example_mcp_servers(out: Callable[[str], None]) -> Iterator[None]:
    """The example MCP server on a local port for the agents that declare it (oncall), unless its URL setting already
    points somewhere: what ``make demo`` and ``stepfold serve`` run beside the local stack."""

    if os.environ.get(URL_SETTING):
        yield
        return
    server, _ = ops_server()
    with LocalMcpServer(server) as running:
        os.environ[URL_SETTING] = running.url
        out(f"mcp: the example ops MCP server (the official mcp SDK, streamable HTTP) at {running.url}")
        try:
            yield
        finally:
            os.environ.pop(URL_SETTING, None)
