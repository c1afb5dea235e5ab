"""Tools from MCP servers as ordinary tools (ARCHITECTURE.md "MCP tools").

An agent declares the servers it uses (:class:`McpServer`: a name, the setting that holds the URL, per-tool
overrides); this module is the pure part: the mapping from a server's tool annotations to a policy and
``idempotent`` flag, the tool list pinned per thread (a ``tools_listed`` event), and tools built from a list. The
network lives behind :class:`McpConnector`, which the adapter (``core/adapters/mcp/``) implements over streamable
HTTP and the wiring builds only when a thread of an agent with MCP servers takes a step.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from core.kernel.errors import clip
from core.kernel.events import JSON, Event, ToolsListed
from core.kernel.thread import Thread
from core.kernel.tools import FAIL_CLOSED, POLICIES, JsonArgs, Policy, Tool, ToolContext, ToolUnavailableError

if TYPE_CHECKING:
    from core.kernel.agent import Agent

SERVER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
SETTING_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,127}")
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]")
IDEMPOTENCY_META = "stepfold.dev/idempotency-key"
"""The ``_meta`` key of a ``tools/call`` that carries the call's idempotency key (a server may key its effect by it)."""


@dataclass(frozen=True)
class McpTool:
    """What the agent's author says about one of a server's tools, over what its annotations say."""

    policy: Policy | Callable[[JsonArgs], Policy] | None = None
    """``auto``, ``needs_approval``, ``deny`` or a function of the arguments (``args.root`` is the object); None:
    from the annotations."""
    idempotent: bool | None = None
    """None: from the annotations."""


@dataclass(frozen=True)
class McpServer:
    """An MCP server (streamable HTTP) whose tools an agent uses, next to its own.

    ``url_setting`` names the environment variable that holds the server's URL (or the ``url`` of its entry in the
    ``mcp_servers`` secret key); headers and tokens come only from that secret, never from agent code.
    """

    name: str
    """Lowercase letters, digits and ``_``: the key of its entry in the secret and of its ``tools_listed`` events."""
    url_setting: str
    tools: Mapping[str, McpTool] = field(default_factory=dict)
    """Overrides by the tool's name on the server."""
    only: tuple[str, ...] | None = None
    """Offer only these of the server's tools (None: every tool it lists)."""
    prefix: str = ""
    """Put before each tool's name (``ops_``), when its names could clash with the agent's own."""

    def __post_init__(self) -> None:
        if not SERVER_NAME.fullmatch(self.name):
            raise ValueError(f"MCP server name {self.name!r}: use 1-32 lowercase letters, digits and _")
        if not SETTING_NAME.fullmatch(self.url_setting):
            raise ValueError(f"MCP server {self.name}: url_setting {self.url_setting!r} must be an environment name")
        for tool, override in self.tools.items():
            if isinstance(override.policy, str) and override.policy not in POLICIES:
                raise ValueError(
                    f"MCP server {self.name}, tool {tool}: policy {override.policy!r} is not one of "
                    f"{', '.join(sorted(POLICIES))}"
                )


class RemoteTool(BaseModel):
    """One tool as a server lists it (what a ``tools_listed`` event records)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str = Field(min_length=1)
    description: str = ""
    input_schema: dict[str, JSON] = Field(default_factory=lambda: {"type": "object"})
    annotations: dict[str, JSON] = Field(default_factory=dict)

    @classmethod
    def of(cls, listed: Mapping[str, Any]) -> RemoteTool:
        """From an entry of a ``tools/list`` result (``inputSchema``, ``annotations``; ``title`` when there is no
        description)."""
        annotations = listed.get("annotations")
        schema = listed.get("inputSchema")
        return cls(
            name=str(listed.get("name") or ""),
            description=str(listed.get("description") or listed.get("title") or ""),
            input_schema=dict(schema) if isinstance(schema, Mapping) else {"type": "object"},
            annotations={k: v for k, v in (annotations or {}).items() if k.endswith("Hint") and isinstance(v, bool)},
        )


def digest(tools: Sequence[RemoteTool]) -> str:
    """A short hash of a tool list: equal lists, equal digests."""
    text = json.dumps([t.model_dump() for t in tools], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Mapped:
    policy: Policy | Callable[[JsonArgs], Policy]
    idempotent: bool
    reason: str


def mapping(server: str, tool: RemoteTool, override: McpTool | None = None) -> Mapped:
    """The policy and ``idempotent`` flag of ``tool`` (ARCHITECTURE.md "MCP tools", the table).

    Only ``readOnlyHint: true`` runs unasked. Anything else may have an effect, so a person approves it: a
    destructive tool, an additive one (``destructiveHint: false``) and one with no annotations at all (fail closed,
    and not idempotent: a retry of an unknown outcome asks a person). ``idempotentHint`` is trusted for the effect
    ledger. The agent's own override wins over each.
    """
    hints = tool.annotations
    if hints.get("readOnlyHint") is True:
        policy: Policy = "auto"
        idempotent = True
        reason = f"{server} marks {tool.name} read-only (readOnlyHint)"
    elif not hints:
        policy, idempotent = FAIL_CLOSED, False
        reason = f"{server} gives {tool.name} no annotations (fail closed)"
    else:
        policy, idempotent = FAIL_CLOSED, hints.get("idempotentHint") is True
        destructive = hints.get("destructiveHint", True) is not False  # MCP's default for a tool that is not read-only
        reason = f"{server} marks {tool.name} " + (
            "destructive (destructiveHint)" if destructive else "as changing things (readOnlyHint is not true)"
        )
    if override is None:
        return Mapped(policy, idempotent, reason)
    chosen = override.policy if override.policy is not None else policy
    return Mapped(
        chosen,
        override.idempotent if override.idempotent is not None else idempotent,
        reason if override.policy is None else f"the agent's declaration sets the policy of {tool.name}",
    )


def local_name(server: McpServer, remote: str) -> str:
    """The tool's name as the model sees it: the server's prefix and name, with what providers refuse replaced."""
    return _NOT_IN_A_NAME.sub("_", f"{server.prefix}{remote}")[:64]


class McpToolError(Exception):
    """The server ran the call and reported an error (``isError``): the model sees its text."""


class McpToolGoneError(McpToolError):
    """The thread's pinned list has the tool but the server no longer does."""


def result_of(raw: Mapping[str, Any]) -> JSON:
    """A ``tools/call`` result as the thread's ``tool_result``: its ``structuredContent`` when it has one, else its
    content (one text part as the text, or its JSON when it is a JSON object or array; several parts as a list;
    images, audio and resources as a short description, never their bytes). ``isError`` raises
    :class:`McpToolError` with the text, which the step turns into a compacted ``error`` event."""
    content = raw.get("content")
    parts = [_part(c) for c in content if isinstance(c, Mapping)] if isinstance(content, list) else []
    if raw.get("isError"):
        text = " ".join(p for p in parts if isinstance(p, str)) or "the tool reported an error and said nothing more"
        raise McpToolError(clip(text))
    structured = raw.get("structuredContent")
    if structured is not None:
        return structured
    if len(parts) == 1:
        return _json_or_text(parts[0]) if isinstance(parts[0], str) else parts[0]
    return parts


def _part(part: Mapping[str, Any]) -> JSON:
    kind = part.get("type")
    if kind == "text":
        return str(part.get("text", ""))
    if kind in ("image", "audio"):
        data = part.get("data")
        size = len(data) * 3 // 4 if isinstance(data, str) else 0
        return {"type": kind, "mimeType": part.get("mimeType"), "bytes": size}
    if kind == "resource_link":
        return {"type": kind, "uri": part.get("uri"), "name": part.get("name")}
    if kind == "resource":
        found = part.get("resource")
        resource: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        if "text" in resource:
            return str(resource["text"])
        return {"type": kind, "uri": resource.get("uri"), "mimeType": resource.get("mimeType")}
    return {"type": str(kind)}


def _json_or_text(text: str) -> JSON:
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


class McpConnector(Protocol):
    """What the kernel needs from the network (``core/adapters/mcp/``). Every "cannot reach it now" is a
    :class:`~core.kernel.tools.ToolUnavailableError`."""

    def list_tools(self, server: McpServer) -> tuple[RemoteTool, ...]:
        """The server's tools, from this container's cache while it is fresh; raises when it cannot be listed."""
        ...

    def listed(self, server: McpServer) -> tuple[RemoteTool, ...] | None:
        """What the server lists now as far as this container knows (refreshed when stale); None when unknown.
        Never raises: a thread that keeps its pinned list only uses it to notice a change."""
        ...

    def call_tool(self, server: McpServer, name: str, arguments: dict[str, Any], key: str) -> Mapping[str, Any]:
        """The raw ``tools/call`` result. :class:`McpToolGoneError` when the server no longer has the tool."""
        ...

    def checker(self, schema: Mapping[str, Any]) -> Callable[[dict[str, Any]], None]:
        """A validator of arguments against ``schema``, raising :class:`~core.kernel.tools.InvalidArgsError`."""
        ...


def pins(thread: Thread) -> dict[str, tuple[ToolsListed, str]]:
    """Per server: the list the thread pinned, and the digest of the last list it recorded (pinned or not)."""
    found: dict[str, tuple[ToolsListed, str]] = {}
    for event in thread.events:
        if isinstance(event, ToolsListed):
            pinned = found.get(event.server)
            if pinned is None and event.pinned:
                found[event.server] = (event, event.digest)
            elif pinned is not None:
                found[event.server] = (pinned[0], event.digest)
    return found


def changes(before: Sequence[RemoteTool], after: Sequence[RemoteTool]) -> list[str]:
    """How a server's list changed, one line per tool."""
    old, new = {t.name: t for t in before}, {t.name: t for t in after}
    lines = [f"removed {name}" for name in old if name not in new]
    lines += [f"added {name}" for name in new if name not in old]
    for name in old.keys() & new.keys():
        a, b = old[name], new[name]
        what = [
            word
            for word, differs in (
                ("input schema", a.input_schema != b.input_schema),
                ("annotations", a.annotations != b.annotations),
                ("description", a.description != b.description),
            )
            if differs
        ]
        if what:
            lines.append(f"changed the {' and '.join(what)} of {name}")
    return sorted(lines)


def _unconnected(server: str, name: str) -> Callable[[JsonArgs, ToolContext], JSON]:
    def call(args: JsonArgs, ctx: ToolContext) -> JSON:
        raise ToolUnavailableError(f"{name} of MCP server {server} is not connected here")

    return call


def _caller(connector: McpConnector, server: McpServer, remote: str) -> Callable[[JsonArgs, ToolContext], JSON]:
    def call(args: JsonArgs, ctx: ToolContext) -> JSON:
        return result_of(connector.call_tool(server, remote, dict(args.root), ctx.idempotency_key))

    return call


def bind(agent: Agent, lists: Mapping[str, Sequence[RemoteTool]], connector: McpConnector | None = None) -> Agent:
    """``agent`` with the tools of its servers' ``lists`` after its own. Without a connector the tools describe
    themselves but cannot run and accept any object (views, evals, replay: nothing is called)."""
    tools: list[Tool[Any]] = []
    for server in agent.mcp:
        for remote in lists.get(server.name, ()):
            if server.only is not None and remote.name not in server.only:
                continue
            mapped = mapping(server.name, remote, server.tools.get(remote.name))
            tools.append(
                Tool(
                    local_name(server, remote.name),
                    remote.description or remote.name,
                    JsonArgs,
                    _caller(connector, server, remote.name)
                    if connector is not None
                    else _unconnected(server.name, remote.name),
                    policy=mapped.policy,
                    idempotent=mapped.idempotent,
                    schema=remote.input_schema,
                    check=connector.checker(remote.input_schema) if connector is not None else None,
                    policy_reason=mapped.reason,
                )
            )
    own = {t.name for t in agent.tools}
    clash = sorted(t.name for t in tools if t.name in own)
    if clash:
        raise ValueError(
            f"agent {agent.name}: MCP tools {', '.join(clash)} have the names of its own tools; give the server a "
            "prefix (McpServer(prefix=...))"
        )
    return replace(agent, tools=(*agent.tools, *tools))


def pinned_lists(thread: Thread) -> dict[str, tuple[RemoteTool, ...]]:
    """The lists ``thread`` pinned, by server (no network)."""
    return {name: tuple(RemoteTool.model_validate(t) for t in ev.tools) for name, (ev, _) in pins(thread).items()}


def with_pinned_tools(agent: Agent, thread: Thread) -> Agent:
    """``agent`` with the MCP tools ``thread`` pinned, described but not connected: what the model saw, for views,
    evals and replay."""
    return bind(agent, pinned_lists(thread)) if agent.mcp else agent


ToolResolver = Callable[["Agent", Thread, Callable[[], datetime]], tuple["Agent", tuple[Event, ...]]]
"""What the runner calls before a step of an agent with MCP servers: the agent with the thread's tools, and the events
to record first (a pinned list, a noticed change)."""


class McpTools:
    """Resolves an agent's MCP tools for a thread: one per container (``functions/_wiring.py``).

    A thread without a pinned list for a server gets the server's list now (this container's cached copy while it is
    fresh) and records it as a pinned ``tools_listed`` event; a thread with one keeps it, and when the server's list
    as this container knows it differs from the last one the thread recorded, the difference is recorded (not
    pinned) so it shows in the timeline. Agents built from the same lists are reused.
    """

    def __init__(self, connector: McpConnector, max_agents: int = 128) -> None:
        self.connector = connector
        self._max = max_agents
        self._built: OrderedDict[tuple[int, tuple[str, ...]], tuple[Agent, Agent]] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, agent: Agent, thread: Thread, clock: Callable[[], datetime]) -> tuple[Agent, tuple[Event, ...]]:
        if not agent.mcp:
            return agent, ()
        pinned = pins(thread)
        events: list[Event] = []
        lists: dict[str, tuple[RemoteTool, ...]] = {}
        digests: dict[str, str] = {}
        seq = thread.next_seq
        for server in agent.mcp:
            known = pinned.get(server.name)
            if known is None:
                tools = self.connector.list_tools(server)
                listed = digest(tools)
                events.append(
                    ToolsListed(
                        seq=seq, ts=clock(), server=server.name, digest=listed, tools=[t.model_dump() for t in tools]
                    )
                )
                seq += 1
                lists[server.name], digests[server.name] = tools, listed
                continue
            event, last = known
            digests[server.name] = event.digest
            lists[server.name] = tuple(RemoteTool.model_validate(t) for t in event.tools)
            live = self.connector.listed(server)
            if live is not None and (now := digest(live)) != last:
                events.append(
                    ToolsListed(
                        seq=seq,
                        ts=clock(),
                        server=server.name,
                        digest=now,
                        pinned=False,
                        changes=changes(lists[server.name], live),
                    )
                )
                seq += 1
        key = (id(agent), tuple(digests[s.name] for s in agent.mcp))
        with self._lock:
            hit = self._built.get(key)
            if hit is not None and hit[0] is agent:
                self._built.move_to_end(key)
                return hit[1], tuple(events)
        bound = bind(agent, lists, self.connector)
        with self._lock:
            self._built[key] = (agent, bound)
            while len(self._built) > self._max:
                self._built.popitem(last=False)
        return bound, tuple(events)
