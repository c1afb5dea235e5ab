"""Property-based: any sequence of events folds to a consistent state and survives storage unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.adapters.store.memory import MemoryThreadStore
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
    ToolCall,
    ToolResult,
    ToolStarted,
    UserInput,
    dump_event,
    parse_event,
)
from core.kernel.thread import Thread, fold

T0 = datetime(2026, 1, 1, tzinfo=UTC)
IDS = st.sampled_from(["c1", "c2", "c3"])
APPROVALS = st.sampled_from(["a1", "a2"])
TEXT = st.text(max_size=40)
JSONISH: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | TEXT,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6,
)

# each builder takes the seq and returns an event of one type with random content
BUILDERS: list[st.SearchStrategy[Any]] = [
    st.builds(lambda t: lambda s: UserInput(seq=s, ts=T0 + timedelta(seconds=s), text=t), TEXT),
    st.builds(
        lambda i, o: (
            lambda s: LLMCall(
                seq=s,
                ts=T0,
                model="scripted:x",
                prompt_id="p/v1",
                prompt_hash="h",
                input_tokens=i,
                output_tokens=o,
                cost_usd=(i + 3 * o) / 1e6,
                latency_ms=1,
            )
        ),
        st.integers(0, 5000),
        st.integers(0, 500),
    ),
    st.builds(lambda c, a: lambda s: ToolCall(seq=s, ts=T0, call_id=c, tool="t", args={"a": a}), IDS, JSONISH),
    st.builds(lambda c: lambda s: ToolStarted(seq=s, ts=T0, call_id=c), IDS),
    st.builds(lambda c, r: lambda s: ToolResult(seq=s, ts=T0, call_id=c, tool="t", result=r), IDS, JSONISH),
    st.builds(lambda c, m: lambda s: Error(seq=s, ts=T0, kind="tool_failed", message=m, call_id=c), IDS, TEXT),
    st.builds(
        lambda a, c, k: lambda s: HumanRequest(seq=s, ts=T0, kind=k, approval_id=a, call_id=c, question="?"),
        APPROVALS,
        IDS,
        st.sampled_from(["approval", "question"]),
    ),
    st.builds(
        lambda a, d: lambda s: HumanResponse(seq=s, ts=T0, approval_id=a, decision=d, by="p", answer="x"),
        APPROVALS,
        st.sampled_from(["approve", "reject", "answer", "expired"]),
    ),
    st.just(lambda s: Paused(seq=s, ts=T0)),
    st.just(lambda s: Resumed(seq=s, ts=T0)),
    st.builds(lambda t: lambda s: Done(seq=s, ts=T0, answer=t or "ok"), TEXT),
    st.builds(lambda t: lambda s: Failed(seq=s, ts=T0, reason=t or "no"), TEXT),
]


@st.composite
def threads(draw: st.DrawFn) -> Thread:
    makers = draw(st.lists(st.one_of(*BUILDERS), min_size=1, max_size=30))
    events: list[Event] = [UserInput(seq=0, ts=T0, text="start")]
    events += [make(i + 1) for i, make in enumerate(makers)]
    return Thread(id="t_prop", agent="calculator", events=tuple(events))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(threads())
def test_fold_is_consistent_with_the_events(thread: Thread) -> None:
    state = fold(thread)
    calls = [e for e in thread.events if isinstance(e, LLMCall)]
    assert state.steps == len(calls)
    assert state.input_tokens == sum(c.input_tokens for c in calls)
    assert state.output_tokens == sum(c.output_tokens for c in calls)
    assert abs(state.cost_usd - sum(c.cost_usd for c in calls)) < 1e-9
    assert state.status in ("running", "awaiting_human", "paused", "done", "failed")
    assert (state.status == "done") == (state.answer is not None)
    assert (state.status == "failed") == (state.failure is not None)
    if state.status == "awaiting_human":
        assert state.open_request is not None
    if state.pending is not None:
        closed = {e.call_id for e in thread.events if isinstance(e, ToolResult | Error) and e.call_id}
        assert state.pending.call.call_id not in closed
    assert state.consecutive_errors <= sum(isinstance(e, Error) for e in thread.events)
    assert fold(thread) == state  # pure: the same events, the same state


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(threads())
def test_events_round_trip_through_json_and_the_store(thread: Thread) -> None:
    assert Thread.from_json(thread.to_json()) == thread
    assert [parse_event(dump_event(e)) for e in thread.events] == list(thread.events)
    store = MemoryThreadStore()
    store.create(Thread(id=thread.id, agent=thread.agent, events=thread.events[:1]))
    stored = store.append(thread.id, 1, thread.events[1:])
    assert stored == thread
    assert fold(store.load(thread.id)) == fold(thread)
