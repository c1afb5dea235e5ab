"""Recording an execution's failure on its thread, and retrying it (core.services.control.record_failure / retry)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.adapters.store.memory import MemoryThreadStore
from core.kernel.events import Failed, Retried, ToolCall
from core.kernel.thread import fold, start_thread
from core.services.control import WrongStateError, cancel, pause, record_failure, retry

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def clock() -> datetime:
    return NOW


class Executions:
    def __init__(self) -> None:
        self.started: list[tuple[str, int]] = []

    def start(self, thread_id: str, seq: int) -> None:
        self.started.append((thread_id, seq))


def _store() -> MemoryThreadStore:
    store = MemoryThreadStore()
    store.create(start_thread("th_1", "calculator", "add 2 and 3", now=NOW))
    return store


def test_a_failed_execution_marks_a_running_thread_failed_with_its_error_and_cause() -> None:
    store = _store()
    failed = record_failure(
        store, "th_1", error="ModelUnavailable", cause="RetryableHTTPError: HTTP 500", execution="arn:1", clock=clock
    )
    assert failed is not None
    assert failed.seq == 1
    state = fold(store.load("th_1"))
    assert state.status == "failed"
    assert state.failure_error == "ModelUnavailable"
    assert "RetryableHTTPError: HTTP 500" in (state.failure or "")
    assert "retry" in (state.failure or "")
    assert failed.reason == state.failure
    last = store.load("th_1").events[-1]
    assert isinstance(last, Failed)
    assert last.execution == "arn:1"


@pytest.mark.parametrize("end", ["cancelled", "paused", "already failed"])
def test_recording_leaves_an_ended_or_paused_thread_alone(end: str) -> None:
    store = _store()
    if end == "cancelled":
        cancel(store, None, "th_1", by="alice", reason="", clock=clock)
    elif end == "paused":
        pause(store, "th_1", by="alice", reason="", clock=clock)
    else:
        record_failure(store, "th_1", error="Unrecoverable", cause="x", execution=None, clock=clock)
    before = store.load("th_1").version
    assert record_failure(store, "th_1", error="States.Timeout", cause="", execution=None, clock=clock) is None
    assert store.load("th_1").version == before


def test_retry_reopens_a_thread_that_failed_on_a_system_error_and_starts_an_execution() -> None:
    store, executions = _store(), Executions()
    record_failure(store, "th_1", error="ModelUnavailable", cause="HTTP 503", execution=None, clock=clock)
    thread = retry(store, executions, "th_1", by="alice", clock=clock)
    assert isinstance(thread.events[-1], Retried)
    assert fold(thread).status == "running"
    assert fold(thread).failure is None
    assert executions.started == [("th_1", thread.version)]


def test_retry_keeps_an_intent_without_a_result_for_the_ledger() -> None:
    store, executions = _store(), Executions()
    store.append("th_1", 1, [ToolCall(seq=1, ts=NOW, call_id="c1", tool="charge", args={"cents": 5})])
    record_failure(store, "th_1", error="DependencyUnavailable", cause="S3", execution=None, clock=clock)
    thread = retry(store, executions, "th_1", by="alice", clock=clock)
    pending = fold(thread).pending
    assert pending is not None
    assert (pending.call.call_id, pending.state) == ("c1", "dispatched")


@pytest.mark.parametrize("why", ["cancelled", "agent limit", "running", "done"])
def test_retry_refuses_what_a_retry_would_not_fix(why: str) -> None:
    store, executions = _store(), Executions()
    if why == "cancelled":
        cancel(store, None, "th_1", by="alice", reason="wrong customer", clock=clock)
    elif why == "agent limit":
        store.append("th_1", 1, [Failed(seq=1, ts=NOW, reason="reached max_steps=25")])
    elif why == "done":
        from core.kernel.events import Done  # noqa: PLC0415

        store.append("th_1", 1, [Done(seq=1, ts=NOW, answer="5")])
    with pytest.raises(WrongStateError) as caught:
        retry(store, executions, "th_1", by="alice", clock=clock)
    message = str(caught.value)
    assert "th_1" in message
    if why in ("cancelled", "agent limit"):
        assert "fork" in message
    assert executions.started == []
