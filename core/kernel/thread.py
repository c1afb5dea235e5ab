"""A thread is an agent name and its event log; everything else is a fold over the events (Factor 5, 12)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from core.kernel.events import (
    JSON,
    SCHEMA_VERSION,
    Done,
    Error,
    Event,
    Failed,
    HumanRequest,
    HumanResponse,
    LLMCall,
    Paused,
    Resumed,
    Retried,
    ToolCall,
    ToolResult,
    ToolStarted,
    UserInput,
    parse_event,
)

Status = Literal["running", "awaiting_human", "paused", "done", "failed"]
CallState = Literal["awaiting_approval", "ready", "dispatched"]

DONE_TOOL = "done_for_now"
ASK_TOOL = "request_human_input"


class Thread(BaseModel):
    """An agent's whole state: who runs it and what has happened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    agent: str = Field(min_length=1)
    events: tuple[Event, ...] = ()
    labels: dict[str, str] = Field(
        default_factory=dict, description="Launch metadata: prompt version pinned at start, trigger, callback."
    )

    @field_validator("events", mode="before")
    @classmethod
    def _known_versions(cls, value: Any, info: ValidationInfo) -> Any:
        """Raw events of another schema version go through ``parse_event``: upgraded if older, refused if newer."""
        if isinstance(value, list | tuple):
            return _upgraded(value, str(info.data.get("id", "?")))
        return value

    @model_validator(mode="after")
    def _contiguous(self) -> Thread:
        for i, event in enumerate(self.events):
            if event.seq != i:
                raise ValueError(f"thread {self.id}: event at position {i} has seq {event.seq}; seqs must be 0..n-1")
        return self

    @property
    def version(self) -> int:
        """The number of events: what an append must expect to write after."""
        return len(self.events)

    @property
    def next_seq(self) -> int:
        return len(self.events)

    def extend(self, events: Iterable[Event]) -> Thread:
        """A new thread with ``events`` appended; their seqs must continue this thread's."""
        added = tuple(events)
        for expected, event in enumerate(added, start=self.next_seq):
            if event.seq != expected:
                raise ValueError(f"thread {self.id}: appended event has seq {event.seq}, expected {expected}")
        return self.model_copy(update={"events": (*self.events, *added)}) if added else self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> Thread:
        """Read a thread; an event from a newer schema raises :class:`~core.kernel.events.UnknownSchemaVersionError`."""
        raw = json.loads(data)
        if isinstance(raw, dict) and isinstance(raw.get("events"), list):
            raw["events"] = _upgraded(raw["events"], str(raw.get("id", "?")))
        return cls.model_validate(raw)


def _upgraded(events: list[Any] | tuple[Any, ...], thread_id: str) -> list[Any]:
    return [
        parse_event(e, thread_id=thread_id) if isinstance(e, dict) and e.get("v", 1) != SCHEMA_VERSION else e
        for e in events
    ]


def start_thread(thread_id: str, agent: str, text: str, *, now: datetime, source: str = "api", **labels: str) -> Thread:
    """A new thread whose first event is the user's (or trigger's) input."""
    return Thread(
        id=thread_id, agent=agent, events=(UserInput(seq=0, ts=now, text=text, source=source),), labels=labels
    )


@dataclass(frozen=True)
class PendingCall:
    """A tool call that has been decided but has no result yet."""

    call: ToolCall
    state: CallState
    args: dict[str, JSON]
    request: HumanRequest | None = None
    response: HumanResponse | None = None


@dataclass(frozen=True)
class ThreadState:
    """Everything the runtime and the API need to know about a thread, folded from its events."""

    status: Status
    steps: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    consecutive_errors: int
    pending: PendingCall | None
    open_request: HumanRequest | None
    answer: str | None
    failure: str | None
    failure_error: str | None = None
    """The Step Functions error name when the thread failed because its execution did (retry can continue it)."""
    last_error: Error | None = None
    steps_since_review: int = 0
    cost_since_review: float = 0.0
    last_review_at: datetime | None = None
    """When a person last answered a limit question (budgets count from there)."""
    tokens_since_review: int = 0
    calls_by_signature: dict[str, int] = field(default_factory=dict)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def call_signature(tool: str, args: Mapping[str, JSON]) -> str:
    """What makes two tool calls "the same call" for ``Limits.max_repeats``: the tool and its arguments, key order
    ignored. One definition, because :func:`fold` counts the recorded calls by it and the step looks the new call
    up by it; two spellings could drift apart and the limit would silently never trigger."""
    return f"{tool}:{sorted(args.items())!r}"


def _closing_call_ids(events: Sequence[Event]) -> tuple[set[str], dict[str, HumanRequest], dict[str, HumanResponse]]:
    closed: set[str] = set()
    requests: dict[str, HumanRequest] = {}
    responses: dict[str, HumanResponse] = {}
    for event in events:
        match event:
            case ToolResult(call_id=cid) | Error(call_id=str() as cid):
                closed.add(cid)
            case HumanRequest():
                requests[event.approval_id] = event
            case HumanResponse():
                responses[event.approval_id] = event
                request = requests.get(event.approval_id)
                if request is not None and request.call_id and event.decision in ("reject", "expired", "answer"):
                    closed.add(request.call_id)
            case _:
                pass
    return closed, requests, responses


def fold(thread: Thread) -> ThreadState:
    """Fold a thread's events into its current state. Pure and O(n)."""
    events = thread.events
    closed, requests, responses = _closing_call_ids(events)
    steps = in_tok = out_tok = errors = 0
    cost = 0.0
    last_input = last_terminal = last_paused = last_resumed = -1
    terminal: Done | Failed | None = None
    last_error: Error | None = None
    started: set[str] = set()
    open_call: ToolCall | None = None
    signatures: dict[str, int] = {}
    review_steps, review_cost, review_tokens = 0, 0.0, 0
    review_at: datetime | None = None
    for i, event in enumerate(events):
        match event:
            case UserInput():
                last_input, errors = i, 0
            case LLMCall():
                steps += 1
                in_tok += event.input_tokens
                out_tok += event.output_tokens
                cost += event.cost_usd
            case ToolCall():
                if not event.prefetch:
                    signature = call_signature(event.tool, event.args)
                    signatures[signature] = signatures.get(signature, 0) + 1
                if event.call_id not in closed and event.tool != DONE_TOOL:
                    open_call = event
            case ToolStarted():
                started.add(event.call_id)
            case ToolResult():
                errors = 0
            case Error():
                errors += 1
                last_error = event
            case HumanResponse():
                errors = 0
                request = requests.get(event.approval_id)
                if request is not None and request.origin == "limit":
                    review_steps, review_cost, review_tokens, signatures = steps, cost, in_tok + out_tok, {}
                    review_at = event.ts
            case Paused():
                last_paused = i
            case Resumed():
                last_resumed = i
            case Done() | Failed():
                last_terminal, terminal = i, event
            case Retried():
                last_input, errors = i, 0  # reopens a failed thread, like new input reopens a done one
            case _:
                pass

    open_requests = [r for aid, r in requests.items() if aid not in responses]
    open_request = open_requests[-1] if open_requests else None

    pending: PendingCall | None = None
    if open_call is not None:
        request = next((r for r in requests.values() if r.call_id == open_call.call_id), None)
        response = responses.get(request.approval_id) if request else None
        if request is not None and response is None:
            state: CallState = "awaiting_approval"
        elif request is not None and open_call.call_id not in started:
            state = "ready"
        else:
            state = "dispatched"
        args = response.args if response is not None and response.decision == "edit" and response.args else None
        pending = PendingCall(open_call, state, args or open_call.args, request, response)

    status: Status
    if terminal is not None and last_terminal > last_input:
        status = "done" if isinstance(terminal, Done) else "failed"
    elif last_paused > last_resumed:
        status = "paused"
    elif open_request is not None:
        status = "awaiting_human"
    else:
        status = "running"
    return ThreadState(
        status=status,
        steps=steps,
        input_tokens=in_tok,
        output_tokens=out_tok,
        cost_usd=round(cost, 10),
        consecutive_errors=errors,
        pending=pending,
        open_request=open_request,
        answer=terminal.answer if isinstance(terminal, Done) and status == "done" else None,
        failure=terminal.reason if isinstance(terminal, Failed) and status == "failed" else None,
        failure_error=terminal.error if isinstance(terminal, Failed) and status == "failed" else None,
        last_error=last_error,
        steps_since_review=steps - review_steps,
        cost_since_review=round(cost - review_cost, 10),
        last_review_at=review_at,
        tokens_since_review=in_tok + out_tok - review_tokens,
        calls_by_signature=signatures,
    )


def stale_results(thread: Thread) -> int:
    """Tool results in a row (the model's calls, since the last input or human answer) that repeat a result already
    in the thread: the "no new information" heuristic. Kept out of :func:`fold` because it encodes every result;
    a step walks it once, right before its model call."""
    seen: set[str] = set()
    prefetched: set[str] = set()
    stale = 0
    for event in thread.events:
        match event:
            case UserInput() | HumanResponse():
                stale = 0
            case ToolCall(prefetch=True):
                prefetched.add(event.call_id)
            case ToolResult():
                fingerprint = f"{event.tool}:{json.dumps(event.result, sort_keys=True, default=str)}"
                if event.call_id not in prefetched:
                    stale = stale + 1 if fingerprint in seen else 0
                seen.add(fingerprint)
            case _:
                pass
    return stale


def summary(thread: Thread) -> dict[str, Any]:
    """A JSON-ready summary of the fold (what `GET /threads/{id}` and the CLI show)."""
    state = fold(thread)
    return {
        "thread_id": thread.id,
        "agent": thread.agent,
        "status": state.status,
        "steps": state.steps,
        "events": thread.version,
        "input_tokens": state.input_tokens,
        "output_tokens": state.output_tokens,
        "cost_usd": state.cost_usd,
        "consecutive_errors": state.consecutive_errors,
        "waiting_for": state.open_request.kind if state.open_request else None,
        "approval_id": state.open_request.approval_id if state.open_request else None,
        "answer": state.answer,
        "failure": state.failure,
        "failure_error": state.failure_error,
        "labels": thread.labels,
    }
