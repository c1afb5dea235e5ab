"""The express loop mode's own paths (ARCHITECTURE.md "Loop modes"), on the local stack with the real ASL.

Each test makes its own loop with :meth:`~infra.local.stack.LocalStack.use_state_machine` (the template's
express ``BurstBelow``, or 0 for the standard mode) and its own burst machine
(:meth:`~infra.local.stack.LocalStack.add_workflow` of ``AgentBurst`` with smaller budgets), so they test the express
paths whatever ``STEPFOLD_LOOP_MODE`` the tier runs in: the per-burst step cap (``BurstMaxSteps``), the time budget
(``BurstSeconds``, which the step judges with its clock: ``burst_over``), and a cancel that lands while a burst runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from agents import AGENTS, scripted_model
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.agent import Agent, Limits
from core.kernel.events import Failed, LLMCall
from core.kernel.model import LLMRequest
from core.kernel.thread import Thread, fold, start_thread
from core.kernel.tools import Tool
from core.services.control import cancel
from infra.local.stack import LocalStack


class CountArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int


def _install(stack: LocalStack, calls: int, on_call: Callable[[int], None] = lambda _: None) -> ScriptedLLM:
    """Agent ``counter``: ``calls`` model calls (steps), each but the last running the tool ``count``; ``on_call``
    runs on each model call with its number (1-based), inside the step that makes it."""

    def brain(request: LLMRequest) -> Say:
        made = sum(isinstance(e, LLMCall) for e in request.events) + 1
        on_call(made)
        if made >= calls:
            return Say("done_for_now", {"answer": f"counted to {made - 1}"})
        return Say("count", {"n": made})

    counter = Agent(
        name="counter",
        description="counts, one step at a time",
        prompt_id="calculator",
        prompt_version=1,
        model="scripted:counter",
        tools=(Tool("count", "Count one more.", CountArgs, lambda args, _: {"n": args.n}, idempotent=True),),
        limits=Limits(max_steps=calls + 5, max_repeats=calls + 5, max_stale_results=calls + 5),
    )
    model = ScriptedLLM(brain, name="counter")
    rt = stack.rt
    rt.agents = {**AGENTS, "counter": counter}
    rt.use_provider_config(ProviderConfig(scripted=lambda n: model if n == "counter" else scripted_model(n)))
    return model


def _loop(
    stack: LocalStack, name: str, mode: str, loop: Mapping[str, Any] | None = None, **burst: Any
) -> tuple[str, str]:
    """A loop of ``mode`` (with the substitutions ``loop`` on top) that threads launched from now on run in, and the
    burst machine it starts (``burst``: its budgets); returns both ARNs. The mode is the template's own substitution,
    as ``LoopMode`` chooses it."""
    burst_arn = stack.add_workflow("AgentBurst", f"{name}-burst", **burst)
    chosen: dict[str, Any] = {}
    for key in ("BurstBelow", "LoopEntry"):
        condition, express, standard = stack.template.state_machine().substitutions[key]["Fn::If"]
        assert condition == "ExpressLoop"
        chosen[key] = express if mode == "express" else standard
    arn = stack.use_state_machine(name, **chosen, **(loop or {}), BurstMachineArn=burst_arn)
    return arn, burst_arn  # before the agent is installed: the functions are redeployed with the loop's ARN


def _start(stack: LocalStack, thread_id: str) -> Thread:
    """A counter thread with a known id, started as a launch does (tests that act on it from the model need the id
    before its first step)."""
    rt = stack.rt
    thread = rt.threads.create(start_thread(thread_id, "counter", "count", now=rt.now()))
    stack.start_execution(thread.id, 1)
    return thread


def _entered(stack: LocalStack, execution_arn: str) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"] for e in stack.history(execution_arn) if "stateEnteredEventDetails" in e
    ]


def _bursts(stack: LocalStack, burst_arn: str) -> list[tuple[str, int]]:
    """Every execution of the burst machine, oldest first: its status and how many steps it ran."""
    listed = stack.clients["stepfunctions"].list_executions(stateMachineArn=burst_arn)["executions"]
    ordered = sorted(listed, key=lambda e: e["startDate"])
    return [(e["status"], _entered(stack, e["executionArn"]).count("Step")) for e in ordered]


def test_a_thread_longer_than_the_burst_cap_runs_in_several_bursts_and_finishes(stack: LocalStack) -> None:
    _, bursts = _loop(stack, "express-three-per-burst", "express", BurstMaxSteps=3)
    model = _install(stack, calls=9)
    thread = _start(stack, "th_capped")
    final = stack.wait(thread.id, until=("done", "failed"), timeout=60)
    assert fold(final).status == "done", fold(final).failure
    assert fold(final).answer == "counted to 8"
    assert fold(final).steps == 9 == len(model.calls)
    # Every step runs in a burst, the first one too (LoopEntry): bursts of at most three; the last one ends on done.
    assert _bursts(stack, bursts) == [("SUCCEEDED", 3), ("SUCCEEDED", 3), ("SUCCEEDED", 3)]
    execution = stack.execution_arn(thread.id)
    assert stack.wait_execution(execution) == "SUCCEEDED"
    states = _entered(stack, execution)
    assert (states.count("Step"), states.count("Burst"), states[0], states[-1]) == (0, 3, "Burst", "Done")
    assert stack.running_executions(thread.id) == []


def test_a_burst_ends_after_the_step_that_finds_its_time_budget_spent(stack: LocalStack) -> None:
    """The step judges the burst's time budget with its clock (ASL has no clock arithmetic). The model's fourth
    call moves the step's clock a whole budget ahead: the burst running it ends after that step, with the route
    still continue, and the Standard loop starts the next. The clock stays ahead (it never runs back), so every
    later burst's first step finds its budget spent too: one step each, and the thread still finishes."""
    budget = 3600  # seconds: a burst on the real clock never spends it here
    ahead = [timedelta(0)]

    def on_call(made: int) -> None:
        if made == 4:
            ahead[0] = timedelta(seconds=budget)

    _, bursts = _loop(stack, "express-budget", "express", BurstSeconds=budget)
    model = _install(stack, calls=7, on_call=on_call)
    real = stack.rt.clock
    stack.rt.clock = lambda: real() + ahead[0]  # the step's clock; put back by the stack's reset
    thread = _start(stack, "th_budget")
    final = stack.wait(thread.id, until=("done", "failed"), timeout=60)
    assert fold(final).status == "done", fold(final).failure
    assert fold(final).steps == 7 == len(model.calls)
    # calls 1-4 in the first burst (ended by the budget, not the 50-step cap); then one call per burst.
    assert _bursts(stack, bursts) == [("SUCCEEDED", 4), ("SUCCEEDED", 1), ("SUCCEEDED", 1), ("SUCCEEDED", 1)]
    execution = stack.execution_arn(thread.id)
    assert stack.wait_execution(execution) == "SUCCEEDED"
    assert _entered(stack, execution).count("Burst") == 4


@pytest.mark.parametrize("mode", ["standard", "express"])
def test_a_cancel_while_a_step_runs_ends_the_thread_and_its_executions_alike_in_both_modes(
    stack: LocalStack, mode: str
) -> None:
    """A person cancels the thread while its third step (in express mode: the third step of the first burst) waits for
    the model: the step's commit loses to the cancel, its retry replays the thread's route (failed), the burst ends
    on it, and the loop fails with Cancelled, exactly as in standard mode; nothing is left running."""
    thread_id = f"th_cancel_{mode}"

    def on_call(made: int) -> None:
        if made == 3:
            rt = stack.rt
            cancel(rt.threads, rt.waits, thread_id, by="ops", reason="wrong ticket", clock=rt.clock)

    _, bursts = _loop(stack, f"{mode}-cancel", mode)
    model = _install(stack, calls=10, on_call=on_call)
    _start(stack, thread_id)
    final = stack.wait(thread_id, until=("failed", "done"), timeout=60)
    state = fold(final)
    assert (state.status, state.cancelled) == ("failed", True)
    assert state.failure is not None
    assert "wrong ticket" in state.failure
    assert len(model.calls) == 3, "no model call after the cancel"
    execution = stack.execution_arn(thread_id)
    assert stack.wait_execution(execution) == "FAILED"
    described = stack.clients["stepfunctions"].describe_execution(executionArn=execution)
    assert described["error"] == "Cancelled"
    assert '"status":"cancelled"' in described["cause"].replace(" ", "")
    states = _entered(stack, execution)
    assert states[-1] == "Cancelled"
    if mode == "express":
        # the burst ran calls 1 to 3 and ended on the route failed: it succeeded, the Standard loop failed
        assert _bursts(stack, bursts) == [("SUCCEEDED", 3)]
        assert states.count("Burst") == 1
    else:
        assert _bursts(stack, bursts) == []
        assert states.count("Burst") == 0
    stack.wait_idle()
    assert stack.running_executions(thread_id) == []
    assert stack.busy_executions() == []


def test_a_burst_that_fails_itself_is_run_again_and_repeats_no_model_call(stack: LocalStack) -> None:
    """A burst can fail as a whole (Express's 5 minutes when a step and its retries run past the time budget, or a
    stop), never half a step: the Burst state runs a new one from the seq the Standard execution holds, whose first
    steps replay what the failed one committed. Here the first burst is stopped while its third step waits for the
    model; that step still commits (the Lambda runs on), and the thread finishes with each model call made once."""
    _, bursts = _loop(stack, "express-burst-stopped", "express")
    sfn = stack.clients["stepfunctions"]

    def on_call(made: int) -> None:
        if made == 3:
            (running,) = [
                e for e in sfn.list_executions(stateMachineArn=bursts)["executions"] if e["status"] == "RUNNING"
            ]
            sfn.stop_execution(executionArn=running["executionArn"], error="States.Timeout", cause="5 minutes")

    model = _install(stack, calls=6, on_call=on_call)
    thread = _start(stack, "th_burst_stopped")
    final = stack.wait(thread.id, until=("done", "failed"), timeout=60)
    assert fold(final).status == "done", fold(final).failure
    assert fold(final).steps == 6 == len(model.calls)
    assert [status for status, _ in _bursts(stack, bursts)] == ["ABORTED", "SUCCEEDED"]
    execution = stack.execution_arn(thread.id)
    assert stack.wait_execution(execution) == "SUCCEEDED"
    states = _entered(stack, execution)
    assert (states.count("Burst"), "RecordFailure" in states) == (1, False)  # a retry enters no state again
    stack.wait_idle()
    assert stack.running_executions(thread.id) == []


def test_a_burst_that_keeps_failing_fails_the_thread_and_the_execution_as_loop_failed(stack: LocalStack) -> None:
    """Every burst is stopped during its model call: after the Burst state's retries the failure is recorded on the
    thread under its own name (States.TaskFailed, which ``stepfold retry`` continues from) and the execution fails
    as LoopFailed (a Fail state may not carry a States.* name; AWS would end it as States.Runtime), with the
    original name in the Cause. Each model call was made once."""
    _, bursts = _loop(stack, "express-burst-keeps-failing", "express")
    sfn = stack.clients["stepfunctions"]

    def on_call(_: int) -> None:
        (running,) = [e for e in sfn.list_executions(stateMachineArn=bursts)["executions"] if e["status"] == "RUNNING"]
        sfn.stop_execution(executionArn=running["executionArn"])

    model = _install(stack, calls=6, on_call=on_call)
    thread = _start(stack, "th_burst_keeps_failing")
    final = stack.wait(thread.id, until=("done", "failed"), timeout=60)
    state = fold(final)
    assert (state.status, state.failure_error) == ("failed", "States.TaskFailed")
    attempts = 1 + 2  # the Burst state's Retry of States.TaskFailed: MaxAttempts 2
    assert len(model.calls) == attempts == state.steps
    assert [status for status, _ in _bursts(stack, bursts)] == ["ABORTED"] * attempts
    execution = stack.execution_arn(thread.id)
    assert stack.wait_execution(execution) == "FAILED"
    described = sfn.describe_execution(executionArn=execution)
    assert described["error"] == "LoopFailed"
    assert described["cause"].startswith("States.TaskFailed: ")
    assert _entered(stack, execution)[-3:] == ["RecordFailure", "FailAs", "LoopFailed"]
    stack.wait_idle()
    assert stack.running_executions(thread.id) == []


@pytest.mark.parametrize("mode", ["standard", "express"])
@pytest.mark.parametrize("end", ["Cancelled", "Paused"])
def test_a_deliberate_end_in_a_continued_execution_ends_the_first_one_of_the_chain_by_the_same_name(
    stack: LocalStack, mode: str, end: str
) -> None:
    """MaxIterations 2: the thread's fourth model call runs in the second execution of the chain, which the first
    waits for (ContinueAsNew, .sync:2). A person cancels or pauses the thread during that call: the second execution
    fails with that name, and the first, the one a parent workflow started and waits for, fails with the same name
    and Cause (PassOnFailure), in both loop modes. Neither is recorded on the thread as a system failure."""
    thread_id = f"th_chain_{end.lower()}_{mode}"
    from core.services.control import pause  # noqa: PLC0415

    def on_call(made: int) -> None:
        if made == 4:
            rt = stack.rt
            if end == "Cancelled":
                cancel(rt.threads, rt.waits, thread_id, by="ops", reason="wrong ticket", clock=rt.clock)
            else:
                pause(rt.threads, thread_id, by="ops", reason="change freeze", clock=rt.clock)

    _loop(stack, f"chain-{end}-{mode}", mode, loop={"MaxIterations": 2})
    _install(stack, calls=10, on_call=on_call)
    _start(stack, thread_id)
    final = stack.wait(thread_id, until=("failed", "paused", "done"), timeout=60)
    assert fold(final).status == ("failed" if end == "Cancelled" else "paused")
    sfn = stack.clients["stepfunctions"]
    first = stack.execution_arn(thread_id)
    assert stack.wait_execution(first) == "FAILED"
    chain = sorted(
        (e for e in sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]),
        key=lambda e: e["startDate"],
    )
    assert [e["status"] for e in chain] == ["FAILED", "FAILED"]
    described = [sfn.describe_execution(executionArn=e["executionArn"]) for e in chain]
    assert [d["error"] for d in described] == [end, end]
    assert described[0]["cause"] == described[1]["cause"]
    assert json.loads(described[0]["cause"])["thread_id"] == thread_id
    assert _entered(stack, first)[-3:] == ["ContinueAsNew", "NextExecutionFailed", "PassOnFailure"]
    assert not any(isinstance(e, Failed) and e.error == end for e in final.events), "not recorded as a failure"
    stack.wait_idle()
    assert stack.running_executions(thread_id) == []
