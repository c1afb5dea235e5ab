"""MCP servers over streamable HTTP, for the kernel's :class:`~core.kernel.mcp.McpConnector` (ARCHITECTURE.md "MCP
tools").

Imported only when a thread of an agent that declares MCP servers takes a step (``functions/_wiring.py``), so a
step without MCP loads neither this, nor the JSON-schema validator. One :class:`HttpMcpConnector` per container
keeps each server's session, its tool list (for ``max_age_s``) and the compiled validator of each input schema.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from core.adapters.mcp.client import McpClient, McpProtocolError, McpUnavailableError
from core.kernel.mcp import IDEMPOTENCY_META, McpServer, McpToolGoneError, RemoteTool
from core.kernel.tools import InvalidArgsError

if TYPE_CHECKING:
    import httpx

__all__ = ["HttpMcpConnector", "McpClient", "McpProtocolError", "McpUnavailableError", "schema_checker"]

Endpoint = Callable[[McpServer], tuple[str, Mapping[str, str]]]
"""The server's URL and headers as they are now (the setting and the secret; read at every use, so a rotated
secret or a changed URL is used at once, on a new session)."""

_log = logging.getLogger("stepfold.mcp")


class HttpMcpConnector:
    """The network side of MCP tools, one per container."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        max_age_s: float = 300.0,
        timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        http: Callable[[], httpx.Client] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.max_age_s = max_age_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._http = http
        self._clients: dict[str, tuple[tuple[str, tuple[tuple[str, str], ...]], McpClient]] = {}
        self._lists: dict[str, tuple[float, str, tuple[RemoteTool, ...]]] = {}
        self._failed: dict[str, float] = {}
        self._checkers: dict[str, Callable[[dict[str, Any]], None]] = {}
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            for _, client in self._clients.values():
                client.close()
            self._clients.clear()

    def client(self, server: McpServer) -> McpClient:
        """The server's session client: a new one when its URL or headers changed."""
        url, headers = self.endpoint(server)
        key = (url, tuple(sorted(headers.items())))
        with self._lock:
            known = self._clients.get(server.name)
            if known is not None and known[0] == key:
                return known[1]
            if known is not None:
                known[1].close()
                if known[0][0] != url:
                    self._lists.pop(server.name, None)
            client = McpClient(
                url,
                headers,
                http=self._http() if self._http is not None else None,
                timeout_s=self.timeout_s,
                server=server.name,
            )
            self._clients[server.name] = (key, client)
            return client

    def list_tools(self, server: McpServer, *, fresh: bool = False) -> tuple[RemoteTool, ...]:
        with self._lock:
            cached = self._lists.get(server.name)
            if cached is not None and not fresh and self.clock() - cached[0] < self.max_age_s:
                return cached[2]
            client = self.client(server)
            try:
                tools = tuple(RemoteTool.of(t) for t in client.list_tools())
            except Exception:
                self._failed[server.name] = self.clock()
                raise
            self._failed.pop(server.name, None)
            self._lists[server.name] = (self.clock(), client.url, tools)
            return tools

    def listed(self, server: McpServer) -> tuple[RemoteTool, ...] | None:
        with self._lock:
            cached = self._lists.get(server.name)
            now = self.clock()
            if cached is not None and now - cached[0] < self.max_age_s:
                return cached[2]
            failed = self._failed.get(server.name)
            if failed is not None and now - failed < self.max_age_s:
                return None
            try:
                return self.list_tools(server, fresh=True)
            except Exception as exc:  # noqa: BLE001 - only noticing a change; the pinned list still works
                _log.warning("could not list the tools of MCP server %s: %s", server.name, type(exc).__name__)
                return None

    def call_tool(self, server: McpServer, name: str, arguments: dict[str, Any], key: str) -> Mapping[str, Any]:
        client = self.client(server)
        try:
            result = client.call_tool(name, arguments, {IDEMPOTENCY_META: key})
        except McpProtocolError:
            self._gone(server, name)
            raise
        if result.get("isError"):
            self._gone(server, name)
        return result

    def _gone(self, server: McpServer, name: str) -> None:
        """After a failed call: raise :class:`McpToolGoneError` if the server no longer lists the tool."""
        try:
            tools = self.list_tools(server, fresh=True)
        except (McpUnavailableError, McpProtocolError):
            return
        if all(t.name != name for t in tools):
            raise McpToolGoneError(
                f"MCP server {server.name} no longer has the tool {name} (this thread's pinned list still names it); "
                "use another tool or ask a person"
            )

    def checker(self, schema: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
        key = json.dumps(schema, sort_keys=True)
        with self._lock:
            found = self._checkers.get(key)
            if found is None:
                found = self._checkers[key] = schema_checker(schema)
            return found


def _no_remote_refs(uri: str) -> Any:
    raise ValueError(f"the schema refers to {uri}; remote references are not fetched")


def schema_checker(schema: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
    """A validator of arguments against a tool's JSON schema (fastjsonschema, compiled once; defaults are not filled
    in, remote ``$ref`` is never fetched). A schema it cannot compile refuses every call, saying why (fail closed)."""
    import fastjsonschema  # noqa: PLC0415 - only a step that runs MCP tools pays for it

    try:
        validate = fastjsonschema.compile(
            dict(schema),
            handlers=dict.fromkeys(("http", "https", "file", "ftp"), _no_remote_refs),
            use_default=False,
        )
    except Exception as exc:  # noqa: BLE001 - any failure to compile means we cannot check: refuse, saying why
        reason = f"the tool's input schema cannot be checked ({type(exc).__name__}: {str(exc)[:200]}); not run"

        def refuse(arguments: dict[str, Any]) -> None:
            raise InvalidArgsError(reason)

        return refuse

    def check(arguments: dict[str, Any]) -> None:
        try:
            validate(arguments)
        except fastjsonschema.JsonSchemaValueException as exc:
            where = ".".join(str(p) for p in exc.path[1:]) or "arguments"
            message = exc.message.removeprefix("data.").removeprefix("data ")
            if message.startswith(where + " "):
                message = message[len(where) + 1 :]
            raise InvalidArgsError(f"{where}: {message}") from None

    return check
