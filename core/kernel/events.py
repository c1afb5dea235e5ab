"""The thread's event log: one pydantic discriminated union (Factor 5).

Every event carries its position in the thread (``seq``), when it happened (``ts``) and the schema
version it was written with (``v``). Events are immutable; a thread only ever grows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

SCHEMA_VERSION = 2
"""Schema version written on every new event. Bump it and add an upgrade in ``_UPGRADES`` when a
stored event's shape changes.

- 2: ``done`` carries ``data``, the agent's typed answer (an older stepfold would refuse the field, so it refuses the
  version, loudly). A version-1 ``done`` has none: it reads as ``data=None``."""

JSON = Any
"""A JSON-serialisable value (what tools return and what the model sends as arguments)."""

ErrorKind = Literal[
    "invalid_json",  # the model's output was not parseable
    "unknown_tool",  # the model named a tool the agent does not have
    "invalid_args",  # arguments failed the tool's schema
    "tool_failed",  # the tool raised
    "denied",  # the tool's policy forbids it
    "no_tool_call",  # the model answered with text instead of a tool call
    "llm_error",  # the provider refused the request (non-retryable)
    "outcome_unknown",  # a non-idempotent tool may or may not have run (effect ledger)
    "limit",  # a limit (steps, cost, errors) was reached
    # The model stopped without a usable tool call (its provider's stop reason), or its prompt did not fit:
    "output_truncated",  # cut off at the output token limit before the tool call was complete
    "refused",  # the model declined to answer (Anthropic stop_reason "refusal", OpenAI message.refusal)
    "guardrail",  # a guardrail or content filter stopped the output (Bedrock, OpenAI content_filter)
    "malformed_tool_use",  # the provider says the model's tool call was malformed (Bedrock)
    "context_window_exceeded",  # the thread no longer fits the model's context window (stop reason or a 400)
]

HumanDecision = Literal["approve", "reject", "edit", "answer", "expired"]


def utcnow() -> datetime:
    """The default clock: an aware UTC datetime."""
    return datetime.now(UTC)


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=0, description="Position in the thread, 0-based and contiguous.")
    ts: datetime = Field(description="When the event was recorded (UTC).")
    v: int = Field(default=SCHEMA_VERSION, description="Schema version this event was written with.")


class UserInput(_Event):
    """Input from a person or a trigger (webhook, schedule, event rule)."""

    type: Literal["user_input"] = "user_input"
    text: str
    source: str = "api"


class LLMCall(_Event):
    """One model call: what was asked, what it cost, and what came back (kept for replay)."""

    type: Literal["llm_call"] = "llm_call"
    model: str
    prompt_id: str
    prompt_hash: str
    input_tokens: int = Field(ge=0)
    output_tokens: int = Field(ge=0)
    cost_usd: float = Field(ge=0)
    latency_ms: int = Field(ge=0)
    output: dict[str, JSON] = Field(
        default_factory=dict, description="The raw tool call as the model returned it: {name, arguments} or {text}."
    )


class ToolCall(_Event):
    """The intent: a validated tool call, recorded before the tool runs."""

    type: Literal["tool_call"] = "tool_call"
    call_id: str
    tool: str
    args: dict[str, JSON]
    prefetch: bool = Field(default=False, description="True when deterministic code, not the model, made the call.")


class ToolStarted(_Event):
    """Marker committed before an approved tool runs, so a retry knows it may already have run."""

    type: Literal["tool_started"] = "tool_started"
    call_id: str


class ToolResult(_Event):
    """What a tool returned."""

    type: Literal["tool_result"] = "tool_result"
    call_id: str
    tool: str
    result: JSON


class Error(_Event):
    """A compacted error the model sees on its next step (Factor 9)."""

    type: Literal["error"] = "error"
    kind: ErrorKind
    message: str
    call_id: str | None = None
    tool: str | None = None


class HumanRequest(_Event):
    """The agent waits for a person: an approval of a tool call, or an answer to a question."""

    type: Literal["human_request"] = "human_request"
    kind: Literal["approval", "question"]
    approval_id: str
    call_id: str | None = None
    question: str
    context: str = ""
    urgency: Literal["low", "medium", "high"] = "medium"
    format: Literal["free_text", "yes_no", "multiple_choice"] = "free_text"
    choices: list[str] = Field(default_factory=list)
    origin: Literal["model", "policy", "errors", "limit", "ledger"] = Field(
        default="model",
        description="Who asked: the model (request_human_input), a tool policy, the error limit, another limit, "
        "or the effect ledger (a tool whose outcome is unknown).",
    )


class HumanResponse(_Event):
    """A person's decision (or the system's, when the request expired)."""

    type: Literal["human_response"] = "human_response"
    approval_id: str
    decision: HumanDecision
    by: str
    channel: str = "api"
    comment: str = ""
    args: dict[str, JSON] | None = Field(default=None, description="New arguments, for decision='edit'.")
    answer: str | None = Field(default=None, description="The answer text, for decision='answer'.")
    note: str | None = Field(
        default=None, description="A display note from the caller (e.g. who they act for); never the decider."
    )


class Paused(_Event):
    type: Literal["paused"] = "paused"
    by: str = "api"
    reason: str = ""


class Resumed(_Event):
    type: Literal["resumed"] = "resumed"
    by: str = "api"


class Done(_Event):
    """The agent finished for now with a final answer; a new user_input continues the thread."""

    type: Literal["done"] = "done"
    answer: str
    """The answer in plain words, for people (and every reader of older events)."""
    data: dict[str, JSON] | None = Field(
        default=None,
        description="The typed answer, for an agent that declares its schema (Agent.answer): the fields of its "
        "done_for_now call besides the text, validated. What a parent workflow branches on.",
    )


class Failed(_Event):
    """The thread ended without an answer (limit with on_limit='fail', cancelled, unrecoverable)."""

    type: Literal["failed"] = "failed"
    reason: str
    error: str | None = None
    """Set when the execution ended on a system error (retries exhausted, a bug, a timeout): the Step Functions
    error name, e.g. ``ModelUnavailable``. Only such failures can be retried."""
    execution: str | None = None
    """The Step Functions execution that failed, for the console and the logs."""

    @property
    def cancelled(self) -> bool:
        """Whether a person ended the thread (``core.services.control.cancel`` writes ``cancelled by <who>``)."""
        return self.error is None and self.reason.startswith(CANCELLED_BY)


CANCELLED_BY = "cancelled by "
"""How the reason of a cancel begins: the one mark of a cancel among failures (see :attr:`Failed.cancelled`)."""


class Retried(_Event):
    """A person retried a thread that failed on a system error: it continues from where it stopped."""

    type: Literal["retried"] = "retried"
    by: str = "api"


class ToolsListed(_Event):
    """The tools an MCP server lists, recorded by the runtime (ARCHITECTURE.md "MCP tools").

    ``pinned``: the list this thread uses from now on, recorded at its first step (the list a thread started with is
    the list it keeps). Not pinned: what the server lists now differs from the pinned list (``changes`` says how); the
    thread keeps its pinned list, this only makes the change visible in the timeline."""

    type: Literal["tools_listed"] = "tools_listed"
    server: str
    digest: str = Field(description="A hash of the listed tools (names, descriptions, schemas, annotations).")
    tools: list[dict[str, JSON]] = Field(default_factory=list, description="Each tool as the server listed it.")
    pinned: bool = True
    changes: list[str] = Field(default_factory=list, description="How the list differs from the pinned one.")


Event = Annotated[
    UserInput
    | LLMCall
    | ToolCall
    | ToolStarted
    | ToolResult
    | Error
    | HumanRequest
    | HumanResponse
    | Paused
    | Resumed
    | Done
    | Failed
    | Retried
    | ToolsListed,
    Field(discriminator="type"),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENTS_ADAPTER: TypeAdapter[list[Event]] = TypeAdapter(list[Event], config=ConfigDict(defer_build=True))
"""Built at its first use: no step reads or writes a list of events through it, so a cold start does not pay for
its validator (a second copy of every event's)."""


class UnknownSchemaVersionError(ValueError):
    """A stored event was written by a newer stepfold than this one."""


def _v1_to_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 2 added ``done.data`` (optional): a version-1 event is a version-2 event as it is."""
    return raw


_UPGRADES: dict[int, Any] = {1: _v1_to_v2}
"""Upgrade functions keyed by the version they upgrade *from*: ``raw dict -> raw dict`` of version+1."""


def parse_event(raw: dict[str, Any] | str | bytes, *, thread_id: str = "?") -> Event:
    """Parse a stored event, upgrading older schema versions; a newer version fails loudly."""
    data: dict[str, Any] = dict(raw) if isinstance(raw, dict) else json.loads(raw)
    version = int(data.get("v", 1))
    if version > SCHEMA_VERSION:
        raise UnknownSchemaVersionError(
            f"thread {thread_id}: event seq={data.get('seq')} has schema version {version}, "
            f"this code understands up to {SCHEMA_VERSION}; deploy a newer stepfold to read it"
        )
    while version < SCHEMA_VERSION:
        if version not in _UPGRADES:
            raise UnknownSchemaVersionError(
                f"thread {thread_id}: event seq={data.get('seq')} has schema version {version}, "
                "which no upgrade handles"
            )
        data = _UPGRADES[version](data)
        version += 1
        data["v"] = version
    return EVENT_ADAPTER.validate_python(data)


def dump_event(event: Event) -> dict[str, Any]:
    """The JSON-ready form of an event (what the stores write)."""
    return event.model_dump(mode="json")
