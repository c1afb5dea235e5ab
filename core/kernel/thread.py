"""A thread is an agent name and its event log; everything else is a fold over the events (Factor 5, 12).

A thread read back from a snapshot is *compacted* (``Thread.base``): the folds' accumulators as of the snapshot
stand in for the events before it, and ``events`` holds the first event, the events the context may still show and
every event since ("The data model" in ARCHITECTURE.md). :func:`fold` and :func:`stale_results` give the same
answers for it as for the whole thread; the store's ``load`` still returns the whole thread, the record.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import is_
from typing import Any, Literal, Protocol, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SkipValidation,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
    dump_event,
    parse_event,
)

Status = Literal["running", "awaiting_human", "paused", "done", "failed"]
CallState = Literal["awaiting_approval", "ready", "dispatched"]

DONE_TOOL = "done_for_now"
ASK_TOOL = "request_human_input"

_A = TypeVar("_A")


class _Accumulates(Protocol):
    """A fold over events that can be copied and fed more (:class:`Fold`, :class:`Staleness`)."""

    def copy(self: _A) -> _A: ...

    def feed(self: _A, events: Iterable[Event]) -> _A: ...


_Acc = TypeVar("_Acc", bound=_Accumulates)

BASE_FORMAT = 1
"""The version of :meth:`Base.dump`'s shape; a snapshot of another version is not used (the store reads the log)."""


class Thread(BaseModel):
    """An agent's whole state: who runs it and what has happened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(min_length=1, max_length=128)
    agent: str = Field(min_length=1)
    events: tuple[Event, ...] = ()
    labels: dict[str, str] = Field(
        default_factory=dict, description="Launch metadata: prompt version pinned at start, trigger, callback."
    )
    base: SkipValidation[Base | None] = Field(
        default=None,
        exclude=True,
        description="Set on a compacted thread: the folds as of ``base.version``; ``events`` then holds the first "
        "event, the events from ``base.cut`` the context may show, and every event from ``base.version`` on.",
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
        base = self.base
        if base is None:
            for i, event in enumerate(self.events):
                if event.seq != i:
                    raise ValueError(
                        f"thread {self.id}: event at position {i} has seq {event.seq}; seqs must be 0..n-1"
                    )
            return self
        kept = self.events[: self._tail_start()]
        if not kept or kept[0].seq != 0 or any(b.seq <= a.seq for a, b in itertools.pairwise(kept)):
            raise ValueError(f"thread {self.id}: a compacted thread keeps seq 0 first, then increasing seqs")
        for expected, event in enumerate(self.events[len(kept) :], start=base.version):
            if event.seq != expected:
                raise ValueError(f"thread {self.id}: event seq {event.seq} after the snapshot, expected {expected}")
        return self

    def _tail_start(self) -> int:
        """The index of the first event at or after ``base.version`` (``len(events)`` when there is none)."""
        base = self.base
        if base is None:
            return 0
        events = self.events
        i = len(events)
        while i > 0 and events[i - 1].seq >= base.version:
            i -= 1
        return i

    @property
    def version(self) -> int:
        """The number of events: what an append must expect to write after."""
        events = self.events
        if self.base is None:
            return len(events)
        return max(self.base.version, events[-1].seq + 1) if events else self.base.version

    @property
    def next_seq(self) -> int:
        return self.version

    @property
    def recent(self) -> tuple[Event, ...]:
        """The events the folds have not seen in ``base``: all of them for a whole thread."""
        return self.events[self._tail_start() :] if self.base is not None else self.events

    def extend(self, events: Iterable[Event]) -> Thread:
        """A new thread with ``events`` appended; their seqs must continue this thread's."""
        added = tuple(events)
        for expected, event in enumerate(added, start=self.next_seq):
            if event.seq != expected:
                raise ValueError(f"thread {self.id}: appended event has seq {event.seq}, expected {expected}")
        return self.model_copy(update={"events": (*self.events, *added)}) if added else self

    def to_json(self) -> str:
        if self.base is not None:
            raise ValueError(
                f"thread {self.id} is compacted (read from a snapshot): load the whole thread to export it"
            )
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
    prefetched: bool = False
    """Whether the agent's prefetch ran (a ``tool_call`` made by code): a step prefetches only before any."""
    data: dict[str, JSON] | None = None
    """The typed answer of a done thread whose agent declares one (``Done.data``)."""
    cancelled: bool = False
    """Whether a failed thread was cancelled by a person (:attr:`~core.kernel.events.Failed.cancelled`)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def call_signature(tool: str, args: Mapping[str, JSON]) -> str:
    """What makes two tool calls "the same call" for ``Limits.max_repeats``: the tool and its arguments, key order
    ignored. One definition, because :func:`fold` counts the recorded calls by it and the step looks the new call
    up by it; two spellings could drift apart and the limit would silently never trigger."""
    return f"{tool}:{sorted(args.items())!r}"


_CLOSING_DECISIONS = frozenset({"reject", "expired", "answer"})


class Fold:
    """The fold's accumulator: feed it events in order, read :meth:`state` at any point.

    One pass. A call is closed by a result or an error naming it, or by an answer that ends its request (reject,
    expired, answer), wherever that comes; a person's answer is matched with the request made before it. What a
    snapshot keeps (:meth:`carry`) is what later events can still change or read: the counters, the calls still
    open with their requests and answers, the open requests, the last error and end.
    """

    __slots__ = (
        "calls",
        "closed",
        "cost",
        "errors",
        "input_tokens",
        "last_error",
        "last_input",
        "last_paused",
        "last_resumed",
        "last_terminal",
        "output_tokens",
        "prefetched",
        "requests",
        "responses",
        "review_at",
        "review_cost",
        "review_steps",
        "review_tokens",
        "signatures",
        "started",
        "steps",
        "terminal",
    )

    def __init__(self) -> None:
        self.steps = self.input_tokens = self.output_tokens = self.errors = 0
        self.cost = 0.0
        self.last_input = self.last_terminal = self.last_paused = self.last_resumed = -1
        self.terminal: Done | Failed | None = None
        self.last_error: Error | None = None
        self.calls: dict[str, ToolCall] = {}
        """Every call but ``done_for_now``'s, by id, in the order they were last made."""
        self.closed: set[str] = set()
        self.started: set[str] = set()
        self.requests: dict[str, HumanRequest] = {}
        self.responses: dict[str, HumanResponse] = {}
        self.signatures: dict[str, int] = {}
        self.review_steps = self.review_tokens = 0
        self.review_cost = 0.0
        self.review_at: datetime | None = None
        self.prefetched = False

    @classmethod
    def of(cls, thread: Thread) -> Fold:
        """The accumulator after every event of ``thread`` (from its snapshot's, for a compacted one); a thread
        that grew from one folded before is folded from there (see :class:`_Folded`). Yours to change."""
        return _FOLDED.fold(thread)

    @classmethod
    def resume(cls, carry: FoldCarry) -> Fold:
        folded = cls()
        folded.steps, folded.input_tokens, folded.output_tokens = carry.steps, carry.input_tokens, carry.output_tokens
        folded.cost, folded.errors = carry.cost, carry.errors
        folded.last_input, folded.last_terminal = carry.last_input, carry.last_terminal
        folded.last_paused, folded.last_resumed = carry.last_paused, carry.last_resumed
        folded.terminal, folded.last_error = carry.terminal, carry.last_error
        folded.calls = {call.call_id: call for call in carry.calls}
        folded.started = set(carry.started)
        folded.requests = {request.approval_id: request for request in carry.requests}
        folded.responses = {response.approval_id: response for response in carry.responses}
        folded.signatures = dict(carry.signatures)
        folded.review_steps, folded.review_cost = carry.review_steps, carry.review_cost
        folded.review_tokens, folded.review_at = carry.review_tokens, carry.review_at
        folded.prefetched = carry.prefetched
        return folded

    def copy(self) -> Fold:
        folded = Fold()
        for name in self.__slots__:
            value = getattr(self, name)
            setattr(folded, name, value.copy() if isinstance(value, dict | set) else value)
        return folded

    def feed(self, events: Iterable[Event]) -> Fold:
        """Fold ``events`` (the next ones, in seq order) in; returns itself."""
        calls, closed, started = self.calls, self.closed, self.started
        requests, responses, signatures = self.requests, self.responses, self.signatures
        for event in events:
            match event:
                case UserInput():
                    self.last_input, self.errors = event.seq, 0
                case LLMCall():
                    self.steps += 1
                    self.input_tokens += event.input_tokens
                    self.output_tokens += event.output_tokens
                    self.cost += event.cost_usd
                case ToolCall():
                    if event.prefetch:
                        self.prefetched = True
                    else:
                        signature = call_signature(event.tool, event.args)
                        signatures[signature] = signatures.get(signature, 0) + 1
                    if event.tool != DONE_TOOL:
                        calls.pop(event.call_id, None)
                        calls[event.call_id] = event
                case ToolStarted():
                    started.add(event.call_id)
                case ToolResult():
                    closed.add(event.call_id)
                    self.errors = 0
                case Error():
                    if event.call_id is not None:
                        closed.add(event.call_id)
                    self.errors += 1
                    self.last_error = event
                case HumanRequest():
                    requests[event.approval_id] = event
                case HumanResponse():
                    responses[event.approval_id] = event
                    self.errors = 0
                    request = requests.get(event.approval_id)
                    if request is not None:
                        if request.call_id and event.decision in _CLOSING_DECISIONS:
                            closed.add(request.call_id)
                        if request.origin == "limit":
                            self.review_steps, self.review_cost = self.steps, self.cost
                            self.review_tokens = self.input_tokens + self.output_tokens
                            signatures.clear()
                            self.review_at = event.ts
                case Paused():
                    self.last_paused = event.seq
                case Resumed():
                    self.last_resumed = event.seq
                case Done() | Failed():
                    self.last_terminal, self.terminal = event.seq, event
                case Retried():
                    self.last_input, self.errors = event.seq, 0  # reopens a failed thread, like new input a done one
                case _:
                    pass
        return self

    def _open_call(self) -> ToolCall | None:
        closed = self.closed
        return next((call for call in reversed(self.calls.values()) if call.call_id not in closed), None)

    def state(self) -> ThreadState:
        requests, responses = self.requests, self.responses
        open_request = next((r for aid, r in reversed(requests.items()) if aid not in responses), None)
        open_call = self._open_call()
        pending: PendingCall | None = None
        if open_call is not None:
            request = next((r for r in requests.values() if r.call_id == open_call.call_id), None)
            response = responses.get(request.approval_id) if request else None
            if request is not None and response is None:
                state: CallState = "awaiting_approval"
            elif request is not None and open_call.call_id not in self.started:
                state = "ready"
            else:
                state = "dispatched"
            args = response.args if response is not None and response.decision == "edit" and response.args else None
            pending = PendingCall(open_call, state, args or open_call.args, request, response)

        terminal = self.terminal
        status: Status
        if terminal is not None and self.last_terminal > self.last_input:
            status = "done" if isinstance(terminal, Done) else "failed"
        elif self.last_paused > self.last_resumed:
            status = "paused"
        elif open_request is not None:
            status = "awaiting_human"
        else:
            status = "running"
        tokens = self.input_tokens + self.output_tokens
        return ThreadState(
            status=status,
            steps=self.steps,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost_usd=round(self.cost, 10),
            consecutive_errors=self.errors,
            pending=pending,
            open_request=open_request,
            answer=terminal.answer if isinstance(terminal, Done) and status == "done" else None,
            failure=terminal.reason if isinstance(terminal, Failed) and status == "failed" else None,
            failure_error=terminal.error if isinstance(terminal, Failed) and status == "failed" else None,
            last_error=self.last_error,
            steps_since_review=self.steps - self.review_steps,
            cost_since_review=round(self.cost - self.review_cost, 10),
            last_review_at=self.review_at,
            tokens_since_review=tokens - self.review_tokens,
            calls_by_signature=dict(self.signatures),
            prefetched=self.prefetched,
            data=terminal.data if isinstance(terminal, Done) and status == "done" else None,
            cancelled=isinstance(terminal, Failed) and status == "failed" and terminal.cancelled,
        )

    def carry(self) -> FoldCarry:
        """What a snapshot keeps: closed calls, and answered requests whose call is closed, are left out."""
        closed = self.closed
        open_calls = tuple(call for call in self.calls.values() if call.call_id not in closed)
        open_ids = {call.call_id for call in open_calls}
        requests = tuple(
            r for aid, r in self.requests.items() if aid not in self.responses or (r.call_id and r.call_id in open_ids)
        )
        kept = {r.approval_id for r in requests}
        return FoldCarry(
            steps=self.steps,
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cost=self.cost,
            errors=self.errors,
            last_input=self.last_input,
            last_terminal=self.last_terminal,
            last_paused=self.last_paused,
            last_resumed=self.last_resumed,
            terminal=self.terminal,
            last_error=self.last_error,
            calls=open_calls,
            started=tuple(sorted(self.started & open_ids)),
            requests=requests,
            responses=tuple(r for aid, r in self.responses.items() if aid in kept),
            signatures=tuple(self.signatures.items()),
            review_steps=self.review_steps,
            review_cost=self.review_cost,
            review_tokens=self.review_tokens,
            review_at=self.review_at,
            prefetched=self.prefetched,
        )


@dataclass(frozen=True)
class FoldCarry:
    """The part of a :class:`Fold` a snapshot keeps (see :meth:`Fold.carry`)."""

    steps: int
    input_tokens: int
    output_tokens: int
    cost: float
    errors: int
    last_input: int
    last_terminal: int
    last_paused: int
    last_resumed: int
    terminal: Done | Failed | None
    last_error: Error | None
    calls: tuple[ToolCall, ...]
    started: tuple[str, ...]
    requests: tuple[HumanRequest, ...]
    responses: tuple[HumanResponse, ...]
    signatures: tuple[tuple[str, int], ...]
    review_steps: int
    review_cost: float
    review_tokens: int
    review_at: datetime | None
    prefetched: bool

    def dump(self) -> dict[str, Any]:
        return {
            "counts": [self.steps, self.input_tokens, self.output_tokens, self.errors, self.review_steps],
            "cost": [self.cost, self.review_cost],
            "review_tokens": self.review_tokens,
            "review_at": self.review_at.isoformat() if self.review_at else None,
            "last": [self.last_input, self.last_terminal, self.last_paused, self.last_resumed],
            "terminal": dump_event(self.terminal) if self.terminal else None,
            "last_error": dump_event(self.last_error) if self.last_error else None,
            "calls": [dump_event(e) for e in self.calls],
            "started": list(self.started),
            "requests": [dump_event(e) for e in self.requests],
            "responses": [dump_event(e) for e in self.responses],
            "signatures": [list(pair) for pair in self.signatures],
            "prefetched": self.prefetched,
        }

    @classmethod
    def parse(cls, data: Mapping[str, Any], thread_id: str) -> FoldCarry:
        steps, input_tokens, output_tokens, errors, review_steps = (int(n) for n in data["counts"])
        cost, review_cost = (float(x) for x in data["cost"])
        last_input, last_terminal, last_paused, last_resumed = (int(n) for n in data["last"])
        terminal = _parse_optional(data["terminal"], thread_id)
        last_error = _parse_optional(data["last_error"], thread_id)
        return cls(
            steps=steps,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            cost=cost,
            errors=errors,
            last_input=last_input,
            last_terminal=last_terminal,
            last_paused=last_paused,
            last_resumed=last_resumed,
            terminal=_expect(terminal, (Done, Failed), "terminal"),
            last_error=_expect(last_error, (Error,), "last_error"),
            calls=tuple(_expect(parse_event(e, thread_id=thread_id), (ToolCall,), "calls") for e in data["calls"]),
            started=tuple(str(s) for s in data["started"]),
            requests=tuple(
                _expect(parse_event(e, thread_id=thread_id), (HumanRequest,), "requests") for e in data["requests"]
            ),
            responses=tuple(
                _expect(parse_event(e, thread_id=thread_id), (HumanResponse,), "responses") for e in data["responses"]
            ),
            signatures=tuple((str(s), int(n)) for s, n in data["signatures"]),
            review_steps=review_steps,
            review_cost=review_cost,
            review_tokens=int(data["review_tokens"]),
            review_at=datetime.fromisoformat(data["review_at"]) if data["review_at"] else None,
            prefetched=bool(data["prefetched"]),
        )


def _parse_optional(raw: Any, thread_id: str) -> Event | None:
    return None if raw is None else parse_event(raw, thread_id=thread_id)


def _expect(event: Any, kinds: tuple[type, ...], what: str) -> Any:
    if event is not None and not isinstance(event, kinds):
        raise ValueError(f"a snapshot's {what} holds a {type(event).__name__}")
    return event


def fold(thread: Thread) -> ThreadState:
    """Fold a thread's events into its current state. Pure and O(n) (O(events since its snapshot) when compacted)."""
    return Fold.of(thread).state()


class Staleness:
    """:func:`stale_results`' accumulator: results seen (by digest), prefetched call ids, the current run."""

    __slots__ = ("prefetched", "seen", "stale")

    def __init__(self, carry: StaleCarry | None = None) -> None:
        self.seen: set[str] = set(carry.seen) if carry else set()
        self.prefetched: set[str] = set(carry.prefetched) if carry else set()
        self.stale = carry.stale if carry else 0

    @classmethod
    def of(cls, thread: Thread) -> Staleness:
        """The accumulator after every event of ``thread``, from where it was last counted (see :class:`_Folded`)."""
        return _FOLDED.staleness(thread)

    def copy(self) -> Staleness:
        counted = Staleness()
        counted.seen, counted.prefetched, counted.stale = set(self.seen), set(self.prefetched), self.stale
        return counted

    def feed(self, events: Iterable[Event]) -> Staleness:
        seen, prefetched = self.seen, self.prefetched
        for event in events:
            match event:
                case UserInput() | HumanResponse():
                    self.stale = 0
                case ToolCall(prefetch=True):
                    prefetched.add(event.call_id)
                case ToolResult():
                    fingerprint = result_digest(event)
                    if event.call_id not in prefetched:
                        self.stale = self.stale + 1 if fingerprint in seen else 0
                    seen.add(fingerprint)
                case _:
                    pass
        return self

    def carry(self) -> StaleCarry:
        return StaleCarry(frozenset(self.seen), frozenset(self.prefetched), self.stale)


@dataclass(frozen=True)
class StaleCarry:
    seen: frozenset[str]
    prefetched: frozenset[str]
    stale: int

    def dump(self) -> dict[str, Any]:
        return {"seen": "".join(sorted(self.seen)), "prefetched": sorted(self.prefetched), "stale": self.stale}

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> StaleCarry:
        seen = str(data["seen"])
        if len(seen) % _DIGEST_CHARS:
            raise ValueError("a snapshot's seen results are not whole digests")
        digests = frozenset(seen[i : i + _DIGEST_CHARS] for i in range(0, len(seen), _DIGEST_CHARS))
        return cls(digests, frozenset(str(p) for p in data["prefetched"]), int(data["stale"]))


_DIGEST_CHARS = 16


def result_digest(result: ToolResult) -> str:
    """What :class:`Staleness` keeps of a tool result to tell a repeat: a digest of its tool and its JSON, key
    order ignored (a store's snapshot derives these from the results it keeps rather than storing them twice)."""
    return _digest(f"{result.tool}:{json.dumps(result.result, sort_keys=True, default=str)}")


def _digest(text: str) -> str:
    """A 64-bit digest of a result's fingerprint: the same test as the text itself, at a fixed size."""
    return hashlib.blake2b(text.encode(), digest_size=_DIGEST_CHARS // 2).hexdigest()


def stale_results(thread: Thread) -> int:
    """Tool results in a row (the model's calls, since the last input or human answer) that repeat a result already
    in the thread: the "no new information" heuristic. Kept out of :func:`fold` because it encodes every result;
    a step walks it once, right before its model call."""
    return Staleness.of(thread).stale


@dataclass(frozen=True)
class Base:
    """What a compacted thread knows of the events before ``version`` besides the ones it keeps (see ``Thread.base``).

    ``cut``: the first seq (after 0) whose events the thread keeps, those the context may show; ``elided_blocks``:
    how many context blocks the events in between make, with resolved errors left out and kept (``render`` counts
    them in its ``<omitted>`` marker). Built by :func:`core.kernel.compaction.compact`.
    """

    version: int
    cut: int
    elided_blocks: tuple[int, int]
    fold: FoldCarry
    stale: StaleCarry

    def dump(self) -> dict[str, Any]:
        return {
            "format": BASE_FORMAT,
            "version": self.version,
            "cut": self.cut,
            "elided_blocks": list(self.elided_blocks),
            "fold": self.fold.dump(),
            "stale": self.stale.dump(),
        }

    @classmethod
    def parse(cls, data: Mapping[str, Any], thread_id: str) -> Base:
        """Raises ``ValueError``, ``KeyError`` or ``TypeError`` for a malformed one (the caller says which item)."""
        if data.get("format") != BASE_FORMAT:
            raise ValueError(f"snapshot format {data.get('format')!r}, this code reads {BASE_FORMAT}")
        dropped, kept = (int(n) for n in data["elided_blocks"])
        version, cut = int(data["version"]), int(data["cut"])
        if not 1 <= cut <= version:
            raise ValueError(f"snapshot cut {cut} is outside 1..{version}")
        return cls(
            version, cut, (dropped, kept), FoldCarry.parse(data["fold"], thread_id), StaleCarry.parse(data["stale"])
        )


Thread.model_rebuild()


class _Folded:
    """The folds of the threads folded last, by id, with the events they were folded from.

    A warm container extends its thread (the store keeps it), so the next step's thread starts with the very event
    objects the last one was folded from: folding it again costs only the new events. Any other thread of that id
    (cut back, edited, another base) is folded afresh. Bounded in threads; callers get copies.
    """

    def __init__(self, max_threads: int = 64) -> None:
        self._max = max_threads
        self._folds: OrderedDict[str, tuple[Base | None, tuple[Event, ...], Fold]] = OrderedDict()
        self._stale: OrderedDict[str, tuple[Base | None, tuple[Event, ...], Staleness]] = OrderedDict()
        self._lock = threading.Lock()

    def fold(self, thread: Thread) -> Fold:
        return self._go_on(self._folds, thread, _fresh_fold)

    def staleness(self, thread: Thread) -> Staleness:
        return self._go_on(self._stale, thread, _fresh_staleness)

    def _go_on(
        self,
        memo: OrderedDict[str, tuple[Base | None, tuple[Event, ...], _Acc]],
        thread: Thread,
        fresh: Callable[[Thread], _Acc],
    ) -> _Acc:
        """Feed ``thread``'s events to the accumulator kept for it, from where it stopped (or to ``fresh(thread)``)."""
        with self._lock:
            entry = memo.get(thread.id)
            at = _resumable(entry[:2] if entry else None, thread)
        go_on = entry[2].copy() if entry is not None and at is not None else fresh(thread)
        fed = go_on.feed(thread.events[at if at is not None else len(thread.events) - len(thread.recent) :])
        with self._lock:
            self._keep(memo, thread, fed.copy())
        return fed

    def _keep(
        self, memo: OrderedDict[str, tuple[Base | None, tuple[Event, ...], _A]], thread: Thread, value: _A
    ) -> None:
        memo[thread.id] = (thread.base, thread.events, value)
        memo.move_to_end(thread.id)
        while len(memo) > self._max:
            memo.popitem(last=False)


def _resumable(kept: tuple[Base | None, tuple[Event, ...]] | None, thread: Thread) -> int | None:
    """How many of ``thread``'s events an accumulator kept for ``kept`` (its base and events) has folded, if it
    can go on from there: the same base, and its events the very first objects of the thread's."""
    if kept is None:
        return None
    base, seen = kept
    events = thread.events
    if base is not thread.base or len(seen) > len(events) or len(seen) < len(events) - len(thread.recent):
        return None
    return len(seen) if all(map(is_, seen, events)) else None


def _fresh_fold(thread: Thread) -> Fold:
    return Fold.resume(thread.base.fold) if thread.base is not None else Fold()


def _fresh_staleness(thread: Thread) -> Staleness:
    return Staleness(thread.base.stale if thread.base is not None else None)


_FOLDED = _Folded()


def summary(thread: Thread) -> dict[str, Any]:
    """A JSON-ready summary of the fold (what `GET /threads/{id}` and the CLI show)."""
    state = fold(thread)
    waiting = state.open_request if state.status not in ("done", "failed") else None  # an ended thread waits for no one
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
        "waiting_for": waiting.kind if waiting else None,
        "approval_id": waiting.approval_id if waiting else None,
        "answer": state.answer,
        "data": state.data,
        "failure": state.failure,
        "failure_error": state.failure_error,
        "labels": thread.labels,
    }
