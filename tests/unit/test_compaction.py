"""Compacted threads (what a snapshot keeps) fold, count stale results and render exactly as the whole thread.

The oracle for the fold is the two-pass fold it replaced (copied below as ``reference_fold``); for the context it is
``render`` of the whole thread. Threads are built the way the kernel writes them (ids unique, a result after its
call, an answer after its request), long enough that the context drops most of them.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, ValidationError

from core.kernel.agent import Agent, StepContext, step
from core.kernel.compaction import WholeEvents, compact, render_context, uncompacted
from core.kernel.context import ContextOptions, render
from core.kernel.events import (
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
)
from core.kernel.model import LLMRequest, LLMResponse, Usage
from core.kernel.thread import (
    ASK_TOOL,
    DONE_TOOL,
    Base,
    CallState,
    Fold,
    FoldCarry,
    PendingCall,
    StaleCarry,
    Staleness,
    Status,
    Thread,
    ThreadState,
    call_signature,
    fold,
    stale_results,
)
from core.kernel.tools import Tool, ToolContext, ToolRegistry

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WINDOW = 15_000
"""The store's default ``snapshot_window_tokens`` (1.25 x the default budget of 12,000)."""


# --- threads as the kernel writes them ----------------------------------------------------------------------------


class Log:
    """Events with contiguous seqs, a second apart."""

    def __init__(self, text: str = "look into it") -> None:
        self.events: list[Event] = [UserInput(seq=0, ts=T0, text=text)]

    def add(self, cls: type[Event], **fields: Any) -> Event:
        event = cls(seq=len(self.events), ts=T0 + timedelta(seconds=len(self.events)), **fields)
        self.events.append(event)
        return event

    def thread(self, thread_id: str = "t-c") -> Thread:
        return Thread(id=thread_id, agent="researcher", events=tuple(self.events))


def kernel_like(seed: int, steps: int, *, result_chars: int = 400, open_at_end: bool = False) -> Thread:
    """A thread as a long run writes it: model calls, tool calls and results, failed calls, approvals (approved,
    rejected, edited, expired), questions, limits, pauses, new input, a failure and a retry."""
    rng = random.Random(seed)
    log = Log()
    log.add(ToolCall, call_id="pre_0", tool="fetch", args={"page": 0}, prefetch=True)
    log.add(ToolResult, call_id="pre_0", tool="fetch", result={"page": 0, "text": "first page"})
    for i in range(steps):
        roll = rng.random()
        if roll < 0.03:
            log.add(UserInput, text=f"also look at {i}", source=rng.choice(["api", "slack"]))
            continue
        if roll < 0.05:
            log.add(Paused, reason="lunch")
            log.add(Resumed)
            continue
        if roll < 0.06:
            log.add(Failed, reason="cancelled", error="ModelUnavailable")
            log.add(Retried)
            continue
        log.add(
            LLMCall,
            model="scripted:x",
            prompt_id="p/v1",
            prompt_hash="h",
            input_tokens=rng.randrange(1000),
            output_tokens=rng.randrange(100),
            cost_usd=rng.randrange(100) / 1e5,
            latency_ms=5,
        )
        call = f"call_{i}"
        args = {"page": rng.randrange(8), "q": "x" * rng.randrange(30)}
        kind = rng.random()
        if kind < 0.08:
            log.add(Error, kind="invalid_args", message=f"bad args {i}", tool="fetch")
        elif kind < 0.18:
            log.add(ToolCall, call_id=call, tool="fetch", args=args)
            log.add(Error, kind="tool_failed", message=f"timeout {i}", call_id=call, tool="fetch")
        elif kind < 0.30:
            log.add(ToolCall, call_id=call, tool="deploy", args=args)
            log.add(
                HumanRequest,
                kind="approval",
                approval_id=f"apr_{i}",
                call_id=call,
                question="Approve?",
                origin="policy",
            )
            decision = rng.choice(["approve", "reject", "edit", "expired"])
            edited = {"page": 99, "q": "edited"} if decision == "edit" else None
            log.add(HumanResponse, approval_id=f"apr_{i}", decision=decision, by="ann", args=edited, comment="ok")
            if decision in ("approve", "edit"):
                log.add(ToolStarted, call_id=call)
                log.add(ToolResult, call_id=call, tool="deploy", result={"deployed": i})
        elif kind < 0.35:
            log.add(ToolCall, call_id=call, tool=ASK_TOOL, args={"question": f"which {i}?"})
            log.add(HumanRequest, kind="question", approval_id=f"apr_{i}", call_id=call, question=f"which {i}?")
            log.add(HumanResponse, approval_id=f"apr_{i}", decision="answer", by="bo", answer=f"that {i}")
        elif kind < 0.38:
            log.add(Error, kind="limit", message="reached the limit of 25 model calls")
            log.add(HumanRequest, kind="question", approval_id=f"apr_{i}", question="go on?", origin="limit")
            log.add(HumanResponse, approval_id=f"apr_{i}", decision="answer", by="ann", answer="go on")
        else:
            text = "y" * rng.randrange(result_chars // 2, result_chars)
            log.add(ToolCall, call_id=call, tool="fetch", args=args)
            log.add(ToolResult, call_id=call, tool="fetch", result={"page": args["page"], "text": text})
    if open_at_end:
        log.add(ToolCall, call_id="call_open", tool="deploy", args={"page": 1})
        log.add(HumanRequest, kind="approval", approval_id="apr_open", call_id="call_open", question="Approve?")
    else:
        log.add(ToolCall, call_id="call_done", tool=DONE_TOOL, args={"answer": "done"})
        log.add(Done, answer="done")
    return log.thread()


# --- the fold it replaced, as the oracle -------------------------------------------------------------------------


def reference_fold(thread: Thread) -> ThreadState:
    """``core.kernel.thread.fold`` before snapshots: a pass for what closes calls, then a pass for the rest."""
    events = thread.events
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
                last_input, errors = i, 0
            case _:
                pass
    open_requests = [r for aid, r in requests.items() if aid not in responses]
    open_request = open_requests[-1] if open_requests else None
    pending: PendingCall | None = None
    if open_call is not None:
        request = next((r for r in requests.values() if r.call_id == open_call.call_id), None)
        response = responses.get(request.approval_id) if request else None
        state: CallState
        if request is not None and response is None:
            state = "awaiting_approval"
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
        prefetched=any(isinstance(e, ToolCall) and e.prefetch for e in events),
    )


def reference_stale(thread: Thread) -> int:
    """``stale_results`` before snapshots: the fingerprints themselves, not their digests."""
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


def carried(folded: Fold) -> FoldCarry:
    """A fold's carry as a snapshot stores it and reads it back."""
    return FoldCarry.parse(json.loads(json.dumps(folded.carry().dump())), "t-c")


# --- the folds ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_the_one_pass_fold_is_the_two_pass_fold_it_replaced(seed: int) -> None:
    thread = kernel_like(seed, 60, open_at_end=seed % 2 == 0)
    for end in range(1, thread.version + 1):
        prefix = Thread(id=thread.id, agent=thread.agent, events=thread.events[:end])
        assert fold(prefix) == reference_fold(prefix), f"after {end} events"
        assert stale_results(prefix) == reference_stale(prefix), f"after {end} events"


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(seed=st.integers(0, 10_000), steps=st.integers(1, 40), cut=st.floats(0, 1))
def test_a_fold_resumed_from_its_carry_is_the_whole_fold(seed: int, steps: int, cut: float) -> None:
    thread = kernel_like(seed, steps, open_at_end=seed % 3 == 0)
    at = max(1, int(thread.version * cut))
    resumed = Fold.resume(carried(Fold().feed(thread.events[:at]))).feed(thread.events[at:])
    assert resumed.state() == fold(thread)
    stale = Staleness(StaleCarry.parse(json.loads(json.dumps(Staleness().feed(thread.events[:at]).carry().dump()))))
    assert stale.feed(thread.events[at:]).stale == stale_results(thread)


def test_a_carry_keeps_only_what_later_events_can_change() -> None:
    thread = kernel_like(3, 300, open_at_end=True)
    carry = Fold.of(thread).carry()

    assert [call.call_id for call in carry.calls] == ["call_open"]
    assert [r.approval_id for r in carry.requests] == ["apr_open"]
    assert carry.responses == ()
    assert carry.started == ()


def test_a_malformed_base_is_refused() -> None:
    base = compact(kernel_like(5, 200), window_tokens=WINDOW)
    assert base is not None
    assert base.base is not None
    data = base.base.dump()

    assert Base.parse(json.loads(json.dumps(data)), "t-c") == base.base
    with pytest.raises(ValueError, match="format"):
        Base.parse({**data, "format": 99}, "t-c")
    with pytest.raises(ValueError, match="cut"):
        Base.parse({**data, "cut": data["version"] + 1}, "t-c")
    with pytest.raises(ValueError, match="whole digests"):
        Base.parse({**data, "stale": {**data["stale"], "seen": "abc"}}, "t-c")
    with pytest.raises(ValueError, match="holds a"):
        Base.parse({**data, "fold": {**data["fold"], "calls": [data["fold"]["terminal"]]}}, "t-c")


# --- compacted threads -------------------------------------------------------------------------------------------


OPTIONS = [
    ContextOptions(),
    ContextOptions(drop_resolved_errors=False),
    ContextOptions(max_tokens=4_000),
    ContextOptions(max_tokens=2_000, max_result_chars=150),
]


def whole_of(thread: Thread) -> Any:
    calls: list[int] = []

    def read() -> Thread:
        calls.append(1)
        return thread

    return read, calls


@pytest.mark.parametrize("seed", range(4))
def test_a_compacted_thread_folds_counts_and_renders_as_the_whole_one_as_it_grows(seed: int) -> None:
    full = kernel_like(seed, 700, result_chars=800, open_at_end=seed % 2 == 1)
    snapshot_at = [1000, 1300, 1700, full.version]
    compacted = compact(full.model_copy(update={"events": full.events[: snapshot_at[0]]}), window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    assert compacted.base.cut > 1, "the context's window is far shorter than the thread"
    for start, end in zip(snapshot_at, [*snapshot_at[1:], full.version], strict=True):
        for at in range(start, end + 1, 37):
            grown = compacted.extend(full.events[compacted.version : at])
            whole = Thread(id=full.id, agent=full.agent, events=full.events[:at])
            read, calls = whole_of(whole)
            assert grown.version == whole.version
            assert fold(grown) == fold(whole)
            assert stale_results(grown) == stale_results(whole)
            for options in OPTIONS:
                assert render_context(grown, options, read) == render(whole, options), (at, options)
            assert calls == [], "the budgets here are within the window: nothing needs the whole log"
        compacted = compact(compacted.extend(full.events[compacted.version : end]), window_tokens=WINDOW) or compacted
    assert len(compacted.events) < full.version / 3


def test_a_snapshot_leaves_out_only_what_can_no_longer_change() -> None:
    full = kernel_like(11, 500, open_at_end=True)
    compacted = compact(full, window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    kept = {event.seq for event in compacted.events}

    pending = fold(full).pending
    assert pending is not None
    assert pending.call.seq in kept
    assert pending.request is not None
    assert pending.request.seq in kept
    assert not any(isinstance(e, LLMCall | ToolStarted) for e in compacted.events)
    calls = {e.call_id for e in compacted.events if isinstance(e, ToolCall)}
    requests = {e.approval_id for e in compacted.events if isinstance(e, HumanRequest)}
    for event in compacted.events:
        if isinstance(event, Error) and event.call_id:
            assert event.call_id in calls
        if isinstance(event, HumanResponse):
            assert event.approval_id in requests


def test_the_context_reads_the_whole_log_when_its_budget_is_wider_than_the_window() -> None:
    full = kernel_like(2, 600)
    compacted = compact(full, window_tokens=WINDOW)
    assert compacted is not None
    wide = ContextOptions(max_tokens=200_000)
    read, calls = whole_of(full)

    with pytest.raises(ValueError, match="needs its whole log"):
        render_context(compacted, wide)
    assert render_context(compacted, wide, read) == render(full, wide)
    assert calls == [1]


def test_the_context_reads_the_whole_log_when_an_answer_finds_no_request() -> None:
    """Answering a request the snapshot left out (the approvals service never does) is noticed, not rendered."""
    full = kernel_like(4, 600)
    compacted = compact(full, window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    old = next(e for e in full.events if isinstance(e, HumanRequest) and e.seq < compacted.base.cut)
    late = HumanResponse(seq=full.version, ts=T0, approval_id=old.approval_id, decision="answer", by="x", answer="?")
    grown, whole = compacted.extend([late]), full.extend([late])
    read, calls = whole_of(whole)

    assert render_context(grown, ContextOptions(), read) == render(whole, ContextOptions())
    assert calls == [1]


def test_a_short_thread_is_not_compacted_and_model_calls_are_left_out_of_a_longer_one() -> None:
    short = Log()
    short.add(ToolCall, call_id="c", tool="fetch", args={})
    short.add(ToolResult, call_id="c", tool="fetch", result="ok")
    assert compact(short.thread(), window_tokens=WINDOW) is None

    thread = kernel_like(1, 40)
    compacted = compact(thread, window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    assert compacted.base.cut == 1, "all of it is within the window"
    assert compacted.base.elided_blocks == (0, 0)
    assert [e for e in thread.events if not isinstance(e, LLMCall | ToolStarted)] == list(compacted.events)
    assert render_context(compacted, ContextOptions()) == render(thread, ContextOptions())


def test_a_thread_that_does_not_start_with_a_user_input_is_not_compacted() -> None:
    log = Log()
    log.events[0] = ToolCall(seq=0, ts=T0, call_id="c", tool="fetch", args={})
    assert compact(log.thread(), window_tokens=WINDOW) is None


def test_a_compacted_thread_keeps_its_shape() -> None:
    compacted = compact(kernel_like(6, 400), window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    base = compacted.base

    assert compacted.version == base.version
    assert compacted.recent == ()
    nxt = UserInput(seq=base.version, ts=T0, text="next")
    assert compacted.extend([nxt]).recent == (nxt,)
    with pytest.raises(ValueError, match="expected"):
        compacted.extend([UserInput(seq=base.version + 1, ts=T0, text="gap")])
    with pytest.raises(ValidationError, match="seq 0 first"):
        Thread(id="t-c", agent="a", events=compacted.events[1:], base=base)
    with pytest.raises(ValidationError, match="after the snapshot"):
        Thread(
            id="t-c", agent="a", events=(*compacted.events, nxt.model_copy(update={"seq": base.version + 2})), base=base
        )
    with pytest.raises(ValueError, match="compacted"):
        compacted.to_json()
    assert uncompacted(compacted, kernel_like(6, 400)).events == kernel_like(6, 400).events


# --- a step on a compacted thread ----------------------------------------------------------------------------------


class Fetch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    page: int
    q: str = ""


def fetch(args: Fetch, _: ToolContext) -> dict[str, Any]:
    return {"page": args.page, "text": f"page {args.page} " + "z" * 300}


RESEARCHER = Agent(
    name="researcher",
    description="reads pages",
    prompt_id="calculator",
    prompt_version=1,
    tools=(Tool("fetch", "Fetch a page.", Fetch, fetch, idempotent=True), Tool("deploy", "Deploy.", Fetch, fetch)),
    model="scripted:researcher",
)


class Recorder:
    """A model that answers from the context alone, as a real one does, unless told to read the events too."""

    def __init__(self, *, read_events: bool = False) -> None:
        self.read_events = read_events
        self.requests: list[LLMRequest] = []

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        # a scripted model counts what it has seen in the events; a real one reads only the context
        seen = sum(isinstance(e, ToolResult) for e in request.events) if self.read_events else 0
        page = seen or len(request.context) % 97
        return LLMResponse(tool="fetch", arguments={"page": page}, usage=Usage(len(request.context) // 4, 9))


def timeless(events: tuple[Event, ...]) -> list[Event]:
    """Events without the model call's measured latency (wall time)."""
    return [e.model_copy(update={"latency_ms": 0}) if isinstance(e, LLMCall) else e for e in events]


def _ctx(history: Any = None) -> StepContext:
    ids = iter(range(1000))
    return StepContext(clock=lambda: T0, ids=lambda prefix: f"{prefix}_{next(ids)}", history=history)


@pytest.mark.parametrize("read_events", [False, True], ids=["context-only", "reads-events"])
def test_a_step_on_a_compacted_thread_makes_what_the_whole_thread_makes(read_events: bool) -> None:
    full = kernel_like(9, 600)
    full = full.extend([UserInput(seq=full.version, ts=T0, text="and one more page")])
    compacted = compact(full, window_tokens=WINDOW)
    assert compacted is not None
    assert compacted.base is not None
    assert compacted.base.cut > 1
    read, calls = whole_of(full)
    on_whole, on_compacted = Recorder(read_events=read_events), Recorder(read_events=read_events)

    expected = step(full, RESEARCHER, on_whole, _ctx())
    got = step(compacted, RESEARCHER, on_compacted, _ctx(read))

    assert timeless(got.events) == timeless(expected.events)
    assert (got.route, got.checkpointed, got.llm_calls, got.tool_runs) == (
        expected.route,
        expected.checkpointed,
        expected.llm_calls,
        expected.tool_runs,
    )
    assert [r.context for r in on_compacted.requests] == [r.context for r in on_whole.requests]
    assert calls == ([1] if read_events else [])


def test_the_whole_events_are_read_once_and_only_when_looked_at() -> None:
    full = kernel_like(9, 300)
    compacted = compact(full, window_tokens=WINDOW)
    assert compacted is not None
    read, calls = whole_of(full)
    events = WholeEvents(compacted, read)

    assert len(events) == full.version
    assert calls == []
    assert list(events) == list(full.events)
    assert events[-1] == full.events[-1]
    assert events[:2] == full.events[:2]
    assert calls == [1]
    with pytest.raises(ValueError, match=r"StepContext\.history"):
        list(WholeEvents(compacted, None))


# --- tool specs, once ----------------------------------------------------------------------------------------------


class Counted(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int

    built: ClassVar[int] = 0

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        Counted.built += 1
        return super().model_json_schema(*args, **kwargs)


def test_tool_specs_are_built_once_not_every_step() -> None:
    tool = Tool("count", "Count.", Counted, lambda args, ctx: args.n)
    registry = ToolRegistry([tool])
    Counted.built = 0

    first, second = registry.specs(), registry.specs()

    assert first == second
    assert all(a is b for a, b in zip(first, second, strict=True))
    assert ToolRegistry([tool]).specs()[0] is first[0]
    assert Counted.built == 1
    assert first[0].parameters["properties"] == {"n": {"title": "N", "type": "integer"}}
    assert "title" not in first[0].parameters


def test_the_agent_keeps_one_registry_and_its_specs() -> None:
    assert RESEARCHER.registry is RESEARCHER.registry
    assert RESEARCHER.registry.specs() == RESEARCHER.registry.specs()
    assert [s.name for s in RESEARCHER.registry.specs()] == ["fetch", "deploy", ASK_TOOL, DONE_TOOL]


def test_a_thread_that_grew_is_folded_from_where_it_was_and_any_other_of_its_id_afresh() -> None:
    thread = kernel_like(7, 200, open_at_end=True)
    part = Thread(id=thread.id, agent=thread.agent, events=thread.events[:300])
    assert fold(part) == reference_fold(part)
    assert stale_results(part) == reference_stale(part)
    grown = part.extend(thread.events[300:])
    edited = list(grown.events)
    edited[150] = UserInput(seq=150, ts=T0, text="not what was folded")
    others = [
        grown,
        Thread(id=thread.id, agent=thread.agent, events=tuple(edited)),
        Thread(id=thread.id, agent=thread.agent, events=thread.events[:100]),
        thread,
    ]
    for other in others:
        assert fold(other) == reference_fold(other)
        assert stale_results(other) == reference_stale(other)
        folded = Fold.of(other)
        folded.feed([UserInput(seq=other.version, ts=T0, text="mine")])  # a copy: the next fold is not affected
        assert fold(other) == reference_fold(other)
