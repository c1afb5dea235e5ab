"""Many hands on one thread: concurrent steps, approvals, pauses and messages never fork it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from agents import deploybot
from core.kernel.events import HumanRequest, HumanResponse, LLMCall, Paused
from core.kernel.store import VersionConflictError
from core.kernel.thread import Thread, fold
from core.services.approvals import AlreadyDecidedError, Decision, ThreadEndedError, decide, waiting_request
from core.services.control import WrongStateError, add_message, cancel, pause
from functions import step as step_function
from functions._boundary import ConcurrentWrite
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._agents import CountingAgentKit


def _together(*calls: Callable[[], Any]) -> list[Any]:
    """Run calls at the same instant (a barrier), returning each result or the exception it raised."""
    barrier = threading.Barrier(len(calls), timeout=10)
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results[i] = call()
        except Exception as exc:
            results[i] = exc

    workers = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=30)
    return results


def _contiguous(thread: Thread) -> None:
    assert [e.seq for e in thread.events] == list(range(thread.version))


def _waiting_deploy(stack: LocalStack) -> Thread:
    thread = stack.launch("deploybot", "deploy the latest backend to production")
    return stack.wait(thread.id)


def _decide(stack: LocalStack, approval_id: str, by: str) -> Callable[[], Thread]:
    return lambda: stack.decide(approval_id, Decision(decision="approve", by=by, channel="link"))


def test_two_approvers_at_once_exactly_one_wins(stack: LocalStack) -> None:
    waiting = _waiting_deploy(stack)
    approval_id = fold(waiting).open_request.approval_id  # type: ignore[union-attr]
    results = _together(_decide(stack, approval_id, "alice"), _decide(stack, approval_id, "bob"))
    winners = [r for r in results if isinstance(r, Thread)]
    losers = [r for r in results if isinstance(r, AlreadyDecidedError)]
    assert (len(winners), len(losers)) == (1, 1), results
    final = stack.wait(waiting.id)
    _contiguous(final)
    assert fold(final).status == "done"
    responses = [e for e in final.events if isinstance(e, HumanResponse)]
    assert len(responses) == 1
    assert list(deploybot.SERVICE.runs.values()) == [1]
    assert stack.rt.approvals.get(approval_id).decided_by == responses[0].by


def test_the_slower_of_two_approvers_hears_who_won_even_after_the_thread_ended(stack: LocalStack) -> None:
    """The race window made deterministic: the loser read the record while it was still pending, and by the
    time it folds the thread the winner's answer has resumed the loop and the thread is done."""
    waiting = _waiting_deploy(stack)
    approval_id = fold(waiting).open_request.approval_id  # type: ignore[union-attr]
    stale = stack.rt.approvals.get(approval_id)
    _decide(stack, approval_id, "alice")()
    final = stack.wait(waiting.id)
    assert fold(final).status == "done"
    with pytest.raises(AlreadyDecidedError, match="already approved by alice"):
        waiting_request(stale, stack.rt.threads.load(waiting.id))


def test_a_double_clicked_approval_is_applied_once(stack: LocalStack) -> None:
    waiting = _waiting_deploy(stack)
    approval_id = fold(waiting).open_request.approval_id  # type: ignore[union-attr]
    _decide(stack, approval_id, "alice")()
    second = _together(_decide(stack, approval_id, "alice"))[0]
    assert isinstance(second, AlreadyDecidedError)
    assert "already approved by alice" in str(second)
    final = stack.wait(waiting.id)
    assert sum(isinstance(e, HumanResponse) for e in final.events) == 1
    assert list(deploybot.SERVICE.runs.values()) == [1]


def test_approve_pause_and_message_at_once_never_fork_the_thread(stack: LocalStack) -> None:
    waiting = _waiting_deploy(stack)
    rt = stack.rt
    approval_id = fold(waiting).open_request.approval_id  # type: ignore[union-attr]
    results = _together(
        _decide(stack, approval_id, "alice"),
        lambda: pause(rt.threads, waiting.id, by="ops", reason="freeze", clock=rt.clock),
        lambda: add_message(rt.threads, rt.executions, waiting.id, text="also frontend", by="carol", clock=rt.clock),
    )
    assert isinstance(results[0], Thread)  # the answer is always recorded: a pause does not refuse it
    assert isinstance(results[2], WrongStateError)  # a waiting thread takes answers, not messages
    if isinstance(results[1], WrongStateError):
        # The answer resumed the loop and the thread ran to its end before the pause was read: a pause of a
        # finished thread is refused, and the approved deploy ran exactly once.
        assert "is done" in str(results[1])
        thread = stack.wait(waiting.id)
        stack.wait_idle()
        assert fold(thread).status == "done"
        assert len(deploybot.SERVICE.deployments) == 1
    else:
        assert isinstance(results[1], Thread), results[1]
        thread = stack.wait(waiting.id, until=("paused",))
        stack.wait_idle()
        assert fold(thread).status == "paused"
        assert sum(isinstance(e, Paused) for e in thread.events) == 1
        assert len(deploybot.SERVICE.deployments) <= 1  # paused before or after the approved step, never twice
    _contiguous(thread)
    assert sum(isinstance(e, HumanResponse) for e in thread.events) == 1


def test_five_concurrent_steps_for_one_seq_commit_once(stack: LocalStack) -> None:
    kit = CountingAgentKit()
    kit.install(stack)
    rt = stack.rt
    from core.kernel.thread import start_thread  # noqa: PLC0415

    thread = rt.threads.create(start_thread("th_five", kit.agent.name, "go", now=rt.now()))
    context = LambdaContext(function_name="StepFunction")
    results = _together(*[lambda: step_function.handler({"thread_id": thread.id, "seq": 1}, context)] * 5)
    committed = [r for r in results if isinstance(r, dict)]
    # the losers leave the Lambda as ConcurrentWrite, the name the state machine retries
    conflicts = [r for r in results if isinstance(r, ConcurrentWrite)]
    assert len(committed) + len(conflicts) == 5
    assert all(isinstance(r.__cause__, VersionConflictError) for r in conflicts)
    assert committed, results
    final = stack.thread(thread.id)
    _contiguous(final)
    assert sum(isinstance(e, LLMCall) for e in final.events) == 1
    # A step that loads the thread between another's intent and result commits cannot tell it from a
    # retry: the effect ledger lets it re-run an idempotent tool, always with the same idempotency key.
    assert len(set(kit.keys)) == 1
    assert kit.runs["call_id_count"] >= 1
    # every successful return names the same committed state
    assert {(r["seq"], r["route"]) for r in committed} == {(final.version, "continue")}


# --- issue 13: a cancel that lands while the approval is being recorded ------------------------------------------


class _CancelFirst:
    """The approval store, with a cancel committed just before the record is written: the request_human
    function read the thread while it was still waiting, the cancel's wait lookup then found no record."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.inner = stack.rt.approvals

    def put_pending(self, approval: Any) -> Any:
        rt = self.stack.rt
        cancel(rt.threads, rt.waits, approval.thread_id, by="ops", reason="wrong ticket", clock=rt.clock)
        self.stack.rt.approvals = self.inner  # only the first request races
        return self.inner.put_pending(approval)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_cancel_during_the_approval_record_leaves_no_pending_approval_no_link_and_no_later_decision(
    stack: LocalStack,
) -> None:
    stack.rt.approvals = _CancelFirst(stack)
    thread = stack.launch("deploybot", "deploy the latest backend to production")
    stack.wait(thread.id, until=("failed",))
    stack.wait_execution(stack.execution_arn(thread.id))  # request_human resumes it; the next step ends it
    final = stack.thread(thread.id)
    assert fold(final).status == "failed"
    assert stack.notifier.last_for(thread.id) is None  # no link went out for a cancelled thread
    request = next(e for e in final.events if isinstance(e, HumanRequest))
    assert stack.rt.approvals.get(request.approval_id).state == "cancelled"
    try:
        decide(
            request.approval_id,
            Decision(decision="approve", by="alice", channel="link"),
            threads=stack.rt.threads,
            approvals=stack.rt.approvals,
            agents=stack.rt.agents,
            tokens=stack.rt.sfn,
            clock=stack.rt.clock,
        )
    except (AlreadyDecidedError, ThreadEndedError):
        pass
    else:
        raise AssertionError("a decision was accepted for a cancelled thread")
    after = stack.thread(thread.id)
    assert after.version == final.version
    assert not [e for e in after.events if isinstance(e, HumanResponse)]
    assert deploybot.SERVICE.deployments == []
