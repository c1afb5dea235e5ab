"""The fold (Factor 5): status, the pending call, error counts and the sums, all derived from events alone."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

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
)
from core.kernel.thread import Thread, fold, start_thread, summary
from tests.unit.conftest import FIXED_NOW, ThreadBuilder


def _llm(b: ThreadBuilder, *, tokens: tuple[int, int] = (100, 10), cost: float = 0.001) -> LLMCall:
    return b.add(
        LLMCall,
        model="scripted:test",
        prompt_id="calculator/v1",
        prompt_hash="h",
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=cost,
        latency_ms=3,
    )


def _started(text: str = "go") -> ThreadBuilder:
    b = ThreadBuilder()
    b.add(UserInput, text=text)
    return b


def _approval_for(b: ThreadBuilder, call_id: str = "call_1", approval_id: str = "apr_1") -> None:
    b.add(ToolCall, call_id=call_id, tool="deploy", args={"env": "prod"})
    b.add(HumanRequest, kind="approval", approval_id=approval_id, call_id=call_id, question="ok?", origin="policy")


# --- status ----------------------------------------------------------------------------------------


def test_a_new_thread_is_running_with_nothing_pending() -> None:
    thread = start_thread("t_1", "calculator", "hi", now=FIXED_NOW, source="cli", prompt_version="1")
    state = fold(thread)

    assert state.status == "running"
    assert state.pending is None
    assert state.open_request is None
    assert (state.steps, state.total_tokens, state.cost_usd, state.consecutive_errors) == (0, 0, 0.0, 0)
    assert thread.events == (UserInput(seq=0, ts=FIXED_NOW, text="hi", source="cli"),)
    assert thread.labels == {"prompt_version": "1"}
    assert thread.version == thread.next_seq == 1


def test_an_open_question_means_awaiting_human() -> None:
    b = _started()
    b.add(HumanRequest, kind="question", approval_id="apr_1", question="which one?")
    state = fold(b.thread())

    assert state.status == "awaiting_human"
    assert state.open_request is not None
    assert state.open_request.approval_id == "apr_1"
    assert state.pending is None


def test_an_answered_question_is_running_again() -> None:
    b = _started()
    b.add(HumanRequest, kind="question", approval_id="apr_1", question="which one?")
    b.add(HumanResponse, approval_id="apr_1", decision="answer", by="alice", answer="5")

    state = fold(b.thread())

    assert state.status == "running"
    assert state.open_request is None


def test_done_then_new_user_input_is_running_and_the_answer_is_forgotten() -> None:
    b = _started()
    b.add(Done, answer="12")
    done = fold(b.thread())
    b.add(UserInput, text="and now add 1")
    again = fold(b.thread())

    assert (done.status, done.answer) == ("done", "12")
    assert (again.status, again.answer) == ("running", None)


def test_failed_carries_the_reason() -> None:
    b = _started()
    b.add(Failed, reason="too many steps")
    state = fold(b.thread())

    assert (state.status, state.failure, state.answer) == ("failed", "too many steps", None)


def test_failed_then_new_input_runs_again() -> None:
    b = _started()
    b.add(Failed, reason="x")
    b.add(UserInput, text="try again")

    assert fold(b.thread()).status == "running"
    assert fold(b.thread()).failure is None


def test_paused_then_resumed() -> None:
    b = _started()
    b.add(Paused, reason="lunch")
    paused = fold(b.thread())
    b.add(Resumed)
    resumed = fold(b.thread())
    b.add(Paused)

    assert paused.status == "paused"
    assert resumed.status == "running"
    assert fold(b.thread()).status == "paused"


def test_pause_wins_over_an_open_request_and_resume_goes_back_to_waiting() -> None:
    b = _started()
    _approval_for(b)
    b.add(Paused)
    paused = fold(b.thread())
    b.add(Resumed)
    resumed = fold(b.thread())

    assert paused.status == "paused"
    assert resumed.status == "awaiting_human"
    assert resumed.pending is not None
    assert resumed.pending.state == "awaiting_approval"


def test_done_wins_over_a_pause_before_it() -> None:
    b = _started()
    b.add(Paused)
    b.add(Done, answer="x")

    assert fold(b.thread()).status == "done"


# --- the pending call ------------------------------------------------------------------------------


def test_a_call_needing_approval_is_awaiting_approval() -> None:
    b = _started()
    _approval_for(b)
    state = fold(b.thread())

    assert state.status == "awaiting_human"
    assert state.pending is not None
    assert state.pending.state == "awaiting_approval"
    assert state.pending.call.call_id == "call_1"
    assert state.pending.args == {"env": "prod"}
    assert state.pending.request is not None
    assert state.pending.response is None


def test_an_approved_call_is_ready_with_its_own_args() -> None:
    b = _started()
    _approval_for(b)
    b.add(HumanResponse, approval_id="apr_1", decision="approve", by="alice")
    state = fold(b.thread())

    assert state.status == "running"
    assert state.pending is not None
    assert state.pending.state == "ready"
    assert state.pending.args == {"env": "prod"}
    assert state.pending.response is not None
    assert state.pending.response.decision == "approve"


def test_an_edited_call_is_ready_with_the_edited_args() -> None:
    b = _started()
    _approval_for(b)
    b.add(HumanResponse, approval_id="apr_1", decision="edit", by="alice", args={"env": "staging"})
    state = fold(b.thread())

    assert state.pending is not None
    assert state.pending.state == "ready"
    assert state.pending.args == {"env": "staging"}
    assert state.pending.call.args == {"env": "prod"}


def test_an_auto_call_without_result_is_dispatched() -> None:
    b = _started()
    b.add(ToolCall, call_id="call_1", tool="add", args={"a": 1})
    state = fold(b.thread())

    assert state.status == "running"
    assert state.pending is not None
    assert state.pending.state == "dispatched"
    assert state.pending.request is None


def test_an_approved_call_that_started_is_dispatched() -> None:
    b = _started()
    _approval_for(b)
    b.add(HumanResponse, approval_id="apr_1", decision="approve", by="alice")
    b.add(ToolStarted, call_id="call_1")
    state = fold(b.thread())

    assert state.pending is not None
    assert state.pending.state == "dispatched"


@pytest.mark.parametrize(
    "closing",
    [
        pytest.param(lambda b: b.add(ToolResult, call_id="call_1", tool="deploy", result="ok"), id="result"),
        pytest.param(lambda b: b.add(Error, kind="tool_failed", message="boom", call_id="call_1"), id="error"),
    ],
)
def test_a_dispatched_call_is_closed_by(closing: Callable[[ThreadBuilder], object]) -> None:
    b = _started()
    b.add(ToolCall, call_id="call_1", tool="deploy", args={"env": "prod"})
    assert fold(b.thread()).pending is not None
    closing(b)

    state = fold(b.thread())

    assert state.pending is None
    assert state.status == "running"


@pytest.mark.parametrize(
    "closing",
    [
        pytest.param(lambda b: b.add(HumanResponse, approval_id="apr_1", decision="reject", by="alice"), id="rejected"),
        pytest.param(
            lambda b: b.add(HumanResponse, approval_id="apr_1", decision="expired", by="system"), id="expired"
        ),
        pytest.param(
            lambda b: b.add(HumanResponse, approval_id="apr_1", decision="answer", by="alice", answer="no"),
            id="answered",
        ),
    ],
)
def test_a_call_awaiting_approval_is_closed_by(closing: Callable[[ThreadBuilder], object]) -> None:
    b = _started()
    _approval_for(b)
    assert fold(b.thread()).pending is not None
    closing(b)

    state = fold(b.thread())

    assert state.pending is None
    assert state.open_request is None
    assert state.status == "running"


def test_an_approved_call_is_closed_by_its_result() -> None:
    b = _started()
    _approval_for(b)
    b.add(HumanResponse, approval_id="apr_1", decision="approve", by="alice")
    b.add(ToolStarted, call_id="call_1")
    b.add(ToolResult, call_id="call_1", tool="deploy", result="ok")

    assert fold(b.thread()).pending is None


def test_the_done_tool_call_is_never_pending() -> None:
    b = _started()
    b.add(ToolCall, call_id="call_1", tool="done_for_now", args={"answer": "x"})
    b.add(Done, answer="x")

    assert fold(b.thread()).pending is None


def test_an_error_without_a_call_id_closes_nothing() -> None:
    b = _started()
    b.add(ToolCall, call_id="call_1", tool="add", args={})
    b.add(Error, kind="invalid_args", message="a: missing")

    state = fold(b.thread())

    assert state.pending is not None
    assert state.pending.call.call_id == "call_1"


# --- errors ----------------------------------------------------------------------------------------


def _errors(b: ThreadBuilder, n: int) -> None:
    for _ in range(n):
        b.add(Error, kind="invalid_json", message="bad")


def test_consecutive_errors_count_up_and_the_last_is_kept() -> None:
    b = _started()
    _errors(b, 2)
    _llm(b)
    b.add(Error, kind="unknown_tool", message="no such tool")
    state = fold(b.thread())

    assert state.consecutive_errors == 3
    assert state.last_error is not None
    assert state.last_error.message == "no such tool"


@pytest.mark.parametrize(
    "reset",
    [
        pytest.param(lambda b: b.add(ToolResult, call_id="c", tool="t", result=1), id="tool_result"),
        pytest.param(lambda b: b.add(UserInput, text="again"), id="user_input"),
        pytest.param(
            lambda b: b.add(HumanResponse, approval_id="apr_x", decision="answer", by="a", answer="go"),
            id="human_response",
        ),
    ],
)
def test_consecutive_errors_reset_on(reset: Callable[[ThreadBuilder], object]) -> None:
    b = _started()
    _errors(b, 2)
    reset(b)
    after_reset = fold(b.thread()).consecutive_errors
    _errors(b, 1)

    assert after_reset == 0
    assert fold(b.thread()).consecutive_errors == 1


def test_llm_calls_do_not_reset_the_error_count() -> None:
    b = _started()
    _errors(b, 1)
    _llm(b)
    _errors(b, 1)

    assert fold(b.thread()).consecutive_errors == 2


# --- sums ------------------------------------------------------------------------------------------


def test_steps_tokens_and_cost_are_the_sums_of_the_llm_calls() -> None:
    b = _started()
    calls = [_llm(b, tokens=(100, 7), cost=0.1), _llm(b, tokens=(250, 13), cost=0.2), _llm(b, tokens=(1, 1), cost=0.0)]
    b.add(ToolCall, call_id="c", tool="add", args={})
    b.add(ToolResult, call_id="c", tool="add", result=3)
    state = fold(b.thread())

    assert state.steps == len(calls) == 3
    assert state.input_tokens == sum(c.input_tokens for c in calls) == 351
    assert state.output_tokens == sum(c.output_tokens for c in calls) == 21
    assert state.total_tokens == 372
    assert state.cost_usd == pytest.approx(sum(c.cost_usd for c in calls))
    assert state.cost_usd == 0.3  # rounded, not 0.30000000000000004


def test_the_review_counters_restart_after_a_limit_is_answered() -> None:
    b = _started()
    _llm(b, cost=0.5)
    _llm(b, cost=0.5)
    b.add(ToolCall, call_id="c1", tool="add", args={"a": 1})
    b.add(HumanRequest, kind="question", approval_id="apr_1", question="limit", origin="limit")
    before = fold(b.thread())
    b.add(HumanResponse, approval_id="apr_1", decision="answer", by="alice", answer="go on")
    _llm(b, cost=0.25)
    after = fold(b.thread())

    assert (before.steps_since_review, before.cost_since_review) == (2, 1.0)
    assert before.calls_by_signature == {"add:[('a', 1)]": 1}
    assert (after.steps, after.steps_since_review, after.cost_since_review) == (3, 1, 0.25)
    assert after.calls_by_signature == {}


def test_repeated_calls_are_counted_by_tool_and_args_but_prefetches_are_not() -> None:
    b = _started()
    for i in range(3):
        b.add(ToolCall, call_id=f"c{i}", tool="add", args={"b": 2, "a": 1})
        b.add(ToolResult, call_id=f"c{i}", tool="add", result=3)
    b.add(ToolCall, call_id="c9", tool="add", args={"a": 1, "b": 3})
    b.add(ToolCall, call_id="p", tool="add", args={"a": 1, "b": 3}, prefetch=True)

    assert fold(b.thread()).calls_by_signature == {"add:[('a', 1), ('b', 2)]": 3, "add:[('a', 1), ('b', 3)]": 1}


def test_summary_reports_the_fold() -> None:
    b = _started()
    _llm(b, tokens=(10, 2), cost=0.01)
    _approval_for(b)
    out = summary(b.thread(prompt_version="1"))

    assert out == {
        "thread_id": "t_1",
        "agent": "calculator",
        "status": "awaiting_human",
        "steps": 1,
        "events": 4,
        "input_tokens": 10,
        "output_tokens": 2,
        "cost_usd": 0.01,
        "consecutive_errors": 0,
        "waiting_for": "approval",
        "approval_id": "apr_1",
        "answer": None,
        "data": None,
        "failure": None,
        "failure_error": None,
        "labels": {"prompt_version": "1"},
    }


# --- seqs ------------------------------------------------------------------------------------------


def test_non_contiguous_seqs_are_rejected() -> None:
    events = (UserInput(seq=0, ts=FIXED_NOW, text="a"), UserInput(seq=2, ts=FIXED_NOW, text="b"))

    with pytest.raises(ValidationError, match="event at position 1 has seq 2"):
        Thread(id="t_1", agent="calculator", events=events)


def test_a_thread_must_start_at_seq_0() -> None:
    with pytest.raises(ValidationError, match="position 0 has seq 1"):
        Thread(id="t_1", agent="calculator", events=(UserInput(seq=1, ts=FIXED_NOW, text="a"),))


def test_extend_appends_contiguous_events_and_leaves_the_original_alone() -> None:
    thread = start_thread("t_1", "calculator", "hi", now=FIXED_NOW)
    more: list[Event] = [Paused(seq=1, ts=FIXED_NOW), Resumed(seq=2, ts=FIXED_NOW)]

    longer = thread.extend(more)

    assert [e.seq for e in longer.events] == [0, 1, 2]
    assert thread.version == 1
    assert longer.version == 3
    assert thread.extend([]) is thread


@pytest.mark.parametrize("seqs", [[2], [1, 3], [0], [1, 1]])
def test_extend_rejects_seqs_that_do_not_continue_the_thread(seqs: list[int]) -> None:
    thread = start_thread("t_1", "calculator", "hi", now=FIXED_NOW)

    with pytest.raises(ValueError, match=r"thread t_1: appended event has seq \d+, expected \d+"):
        thread.extend([Paused(seq=s, ts=FIXED_NOW) for s in seqs])


def test_threads_are_immutable() -> None:
    thread = start_thread("t_1", "calculator", "hi", now=FIXED_NOW)

    with pytest.raises(ValidationError, match="frozen"):
        thread.agent = "other"  # type: ignore[misc]
