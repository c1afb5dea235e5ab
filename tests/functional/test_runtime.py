"""The serverless runtime end to end: real handlers, the real agent_loop.asl.json on moto's engine."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from agents import AGENTS, deploybot
from core.adapters.llm.scripted import ScriptedLLM
from core.kernel.events import Error, HumanRequest, HumanResponse, LLMCall, ToolCall
from core.kernel.store import VersionConflictError
from core.kernel.thread import Thread, fold, start_thread
from core.services.approvals import Decision
from functions import step as step_function
from functions._boundary import ConcurrentWrite, Unrecoverable
from infra.local.stack import LambdaContext, LocalStack
from tests.functional._agents import CountingAgentKit
from tests.functional.conftest import Shared

QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING"}


def _approve(stack: LocalStack, thread: Thread, decision: Decision) -> None:
    approval, url = stack.notifier.sent[-1]
    assert approval.thread_id == thread.id
    assert "sig=" in url
    assert approval.task_token not in url
    stack.decide(approval.approval_id, decision)


def _states(stack: LocalStack, thread: Thread, seq: int = 1) -> list[str]:
    return [
        e["stateEnteredEventDetails"]["name"]
        for e in stack.history(stack.execution_arn(thread.id, seq))
        if "stateEnteredEventDetails" in e
    ]


def _burst_steps(stack: LocalStack) -> list[int]:
    """The steps each burst of the express loop mode ran (the stack's AgentBurst), oldest first."""
    sfn = stack.clients["stepfunctions"]
    bursts = sfn.list_executions(stateMachineArn=stack.workflow_arns["AgentBurst"])["executions"]
    return [
        sum("stateEnteredEventDetails" in e and e["stateEnteredEventDetails"]["name"] == "Step" for e in history)
        for history in (stack.history(b["executionArn"]) for b in sorted(bursts, key=lambda b: b["startDate"]))
    ]


def test_calculator_runs_to_done_through_the_state_machine(stack: LocalStack) -> None:
    thread = stack.launch("calculator", "multiply 3 and 4, then divide the result by 2 and then add 12")
    final = stack.wait(thread.id)
    state = fold(final)
    assert state.status == "done"
    assert state.answer == "The answer is 18."
    assert [e.tool for e in final.events if isinstance(e, ToolCall)] == ["multiply", "divide", "add", "done_for_now"]
    assert state.steps == 4 == sum(isinstance(e, LLMCall) for e in final.events)
    assert stack.execution_status(stack.execution_arn(thread.id)) == "SUCCEEDED"
    states = _states(stack, thread)
    if stack.loop_mode == "standard":
        assert (states.count("Step"), states.count("Burst")) == (4, 0)
        assert _burst_steps(stack) == []
    else:  # every step runs in one burst, the first one too (LoopEntry; ARCHITECTURE.md "Loop modes")
        assert (states.count("Step"), states.count("Burst")) == (0, 1)
        assert _burst_steps(stack) == [4]
    assert states[-1] == "Done"


def test_deploybot_waits_for_human_then_approval_resumes_to_done(stack: LocalStack) -> None:
    thread = stack.launch("deploybot", "deploy the latest backend to production")
    waiting = stack.wait(thread.id)
    assert fold(waiting).status == "awaiting_human"
    execution = stack.execution_arn(thread.id)
    assert stack.execution_status(execution) == "RUNNING"
    assert _states(stack, thread)[-1] == "WaitForHuman"
    assert deploybot.SERVICE.deployments == []  # nothing ran before the approval

    _approve(stack, waiting, Decision(decision="approve", by="alice", channel="link"))
    final = stack.wait(thread.id)
    assert fold(final).status == "done"
    assert fold(final).answer == "Deployed backend v1.5.0 to production."
    assert [(d["component"], d["environment"]) for d in deploybot.SERVICE.deployments] == [("backend", "production")]
    assert list(deploybot.SERVICE.runs.values()) == [1]
    response = next(e for e in final.events if isinstance(e, HumanResponse))
    assert (response.decision, response.by, response.channel) == ("approve", "alice", "link")
    stack.wait_idle()
    assert stack.execution_status(execution) == "SUCCEEDED"
    assert "AfterHuman" in _states(stack, thread)


def test_an_answered_token_whose_answer_the_engine_has_not_recorded_yet_is_busy_not_parked(stack: LocalStack) -> None:
    """SendTaskSuccess wakes the engine's worker, which records the answer only when it runs. In between the
    execution is about to move on: counting it parked would let the stack's reset stop it mid-way (a flake seen
    under load). Here the worker is held in that window: the answer is on the token, the worker not woken yet."""
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends  # noqa: PLC0415

    thread = stack.launch("deploybot", "deploy the latest backend to production")
    waiting = stack.wait(thread.id)
    assert fold(waiting).status == "awaiting_human"
    stack.wait_idle()
    assert stack.busy_executions() == []
    execution_arn = stack.execution_arn(thread.id)
    backend = stepfunctions_parser_backends["123456789012"]["us-east-1"]
    execution: Any = next(e for m in backend.state_machines for e in m.executions if e.exec_arn == execution_arn)  # type: ignore[attr-defined]
    endpoint = next(reversed(execution.exec_worker.env.callback_pool_manager._pool.values()))
    woken, endpoint._notify_event = endpoint._notify_event, threading.Event()  # the worker waits on ``woken``
    answer = {"thread_id": thread.id, "seq": waiting.version}  # no decision recorded: the step asks again
    stack.rt.sfn.send_task_success(taskToken=endpoint.callback_id, output=json.dumps(answer))
    try:
        assert stack.busy_executions() == [execution_arn]
    finally:
        woken.set()  # let the worker record the answer and go on
    stack.wait_idle()
    assert fold(stack.wait(thread.id)).status == "awaiting_human"


def test_a_decision_reaches_its_token_while_another_execution_is_still_starting(stack: LocalStack) -> None:
    """moto's SendTaskSuccess searched every running execution's engine and failed on one whose engine was not
    built yet (a 500 from the API relaying the decision, seen when a burst started at that moment). An execution
    still starting holds no token: the decision reaches the parked one."""
    from moto.stepfunctions.parser.api import ExecutionStatus  # noqa: PLC0415
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends  # noqa: PLC0415

    thread = stack.launch("deploybot", "deploy the latest backend to production")
    waiting = stack.wait(thread.id)
    assert fold(waiting).status == "awaiting_human"
    machine: Any = stepfunctions_parser_backends["123456789012"]["us-east-1"].state_machines[0]
    starting = SimpleNamespace(status=ExecutionStatus.RUNNING, exec_status="STARTING", exec_worker=None)
    machine.executions.insert(0, starting)
    try:
        approval = fold(waiting).open_request
        assert approval is not None
        stack.decide(approval.approval_id, Decision(decision="approve", by="alice", channel="link"))
    finally:
        machine.executions.remove(starting)
    assert fold(stack.wait(thread.id)).status == "done"


def test_rejection_is_fed_back_to_the_model_which_replans(stack: LocalStack) -> None:
    thread = stack.launch("deploybot", "deploy v1.4.2 frontend to production")
    stack.wait(thread.id)
    _approve(stack, thread, Decision(decision="reject", comment="deploy to staging first", by="bob"))
    again = stack.wait(thread.id)
    assert fold(again).status == "awaiting_human"  # staging ran, production asked again
    assert [(d["environment"]) for d in deploybot.SERVICE.deployments] == ["staging"]
    model = stack.rt.llm_for(AGENTS["deploybot"])
    assert isinstance(model, ScriptedLLM)
    seen = [r for r in model.calls if "rejected by bob" in r.context]
    assert seen, "the model's context after the rejection shows the reviewer's reason"
    assert "← NOT RUN - rejected by bob" in seen[0].context
    assert "deploy to staging first" in seen[0].context


def test_expired_approval_denies_by_default(shared: Shared) -> None:
    with shared.lease(QUIET) as stack:
        stack.use_state_machine("approvals-expire-in-1s", ApprovalTimeoutSeconds=1)
        thread = stack.launch("deploybot", "deploy the latest backend to production")
        stack.wait(thread.id)
        final = stack.wait(thread.id, until=("done", "failed"), timeout=30)
        expired = [e for e in final.events if isinstance(e, HumanResponse)]
        assert [(e.decision, e.by) for e in expired] == [("expired", "system")]
        assert deploybot.SERVICE.deployments == []
        assert "nobody approved it" in (fold(final).answer or "")
        assert "ExpireApproval" in _states(stack, thread)
        approval, _ = stack.notifier.sent[-1]
        assert stack.rt.approvals.get(approval.approval_id).state == "expired"


def test_iteration_guard_continues_the_thread_in_a_new_execution(shared: Shared) -> None:
    """Before the history limit the Guard hands the thread to a new execution (<thread>-<seq>) and succeeds."""
    with shared.lease(QUIET) as stack:
        stack.use_state_machine("two-iterations-per-execution", MaxIterations=2)
        thread = stack.launch("calculator", "multiply 3 and 4, then divide the result by 2 and then add 12")
        final = stack.wait(thread.id, until=("done",), timeout=60)
        stack.wait_idle()
        sfn = stack.clients["stepfunctions"]
        for e in sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]:
            stack.wait_execution(e["executionArn"])  # each waits for the next one's answer (.sync:2)
        executions = [
            e
            for e in sfn.list_executions(stateMachineArn=stack.state_machine_arn)["executions"]
            if e["name"].startswith(f"{thread.id}-")
        ]
        assert len(executions) >= 2
        assert {e["status"] for e in executions} == {"SUCCEEDED"}
        assert _states(stack, thread)[-2:] == ["ContinueAsNew", "ContinuedAsNew"]
        assert fold(final).answer is not None
        assert fold(final).steps >= 3


def test_paused_thread_ends_the_execution_cleanly(stack: LocalStack) -> None:
    from core.kernel.events import Paused  # noqa: PLC0415

    rt = stack.rt
    thread = start_thread("th_paused", "calculator", "add 1 and 2", now=rt.now())
    thread = rt.threads.create(thread)
    rt.threads.append(thread.id, 1, [Paused(seq=1, ts=rt.now(), by="ops")])
    stack.start_execution(thread.id, 2)
    stack.wait(thread.id, until=("paused",))
    stack.wait_idle()
    # No answer: the execution fails with Paused, which a parent catches (ARCHITECTURE.md "An agent as a step").
    assert stack.wait_execution(stack.execution_arn(thread.id, 2)) == "FAILED"
    assert _states(stack, thread, 2)[-1] == "Paused"
    assert fold(stack.thread(thread.id)).steps == 0


# --- the step handler, invoked directly as Lambda would (retries, races) ------------------------------


def _context() -> LambdaContext:
    return LambdaContext(function_name="StepFunction")


def test_retried_step_for_a_committed_seq_makes_no_second_llm_call(stack: LocalStack) -> None:
    kit = CountingAgentKit()
    kit.install(stack)
    thread = stack.rt.threads.create(start_thread("th_retry", kit.agent.name, "go", now=stack.rt.now()))
    first = step_function.handler({"thread_id": thread.id, "seq": 1}, _context())
    again = step_function.handler({"thread_id": thread.id, "seq": 1}, _context())
    assert first == again == {"thread_id": thread.id, "seq": 4, "route": "continue", "output": None}
    assert len(kit.llm.calls) == 1
    assert kit.runs == {"call_id_count": 1}
    events = stack.thread(thread.id).events
    assert [e.type for e in events] == ["user_input", "llm_call", "tool_call", "tool_result"]


def test_two_concurrent_steps_on_one_thread_commit_exactly_once(stack: LocalStack) -> None:
    kit = CountingAgentKit(barrier=threading.Barrier(2, timeout=10))
    kit.install(stack)
    thread = stack.rt.threads.create(start_thread("th_race", kit.agent.name, "go", now=stack.rt.now()))
    outcomes: list[Any] = []

    def run() -> None:
        try:
            outcomes.append(step_function.handler({"thread_id": thread.id, "seq": 1}, _context()))
        except ConcurrentWrite as exc:  # the name Step Functions retries
            outcomes.append(exc)

    workers = [threading.Thread(target=run) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=20)
    assert len(kit.llm.calls) == 2  # both decided...
    assert sum(isinstance(o, ConcurrentWrite) for o in outcomes) == 1  # ...one committed
    assert all(isinstance(o.__cause__, VersionConflictError) for o in outcomes if isinstance(o, ConcurrentWrite))
    assert kit.runs == {"call_id_count": 1}
    events = stack.thread(thread.id).events
    assert [e.type for e in events] == ["user_input", "llm_call", "tool_call", "tool_result"]


def test_intent_without_result_is_settled_by_the_ledger_on_retry(stack: LocalStack) -> None:
    kit = CountingAgentKit(idempotent=False)
    kit.install(stack)
    thread = stack.rt.threads.create(start_thread("th_crash", kit.agent.name, "go", now=stack.rt.now()))
    kit.crash_after_tool = True
    with pytest.raises(Unrecoverable, match="RuntimeError: the step crashed after the tool ran"):
        step_function.handler({"thread_id": thread.id, "seq": 1}, _context())
    kit.crash_after_tool = False
    assert [e.type for e in stack.thread(thread.id).events] == ["user_input", "llm_call", "tool_call"]
    result = step_function.handler({"thread_id": thread.id, "seq": 1}, _context())
    assert result["route"] == "await_human"
    events = stack.thread(thread.id).events
    assert kit.runs == {"call_id_count": 1}  # not run a second time
    error = next(e for e in events if isinstance(e, Error))
    assert error.kind == "outcome_unknown"
    assert next(e for e in events if isinstance(e, HumanRequest)).origin == "ledger"
    assert len(kit.llm.calls) == 1


def test_idempotent_intent_without_result_reruns_with_the_same_key(stack: LocalStack) -> None:
    kit = CountingAgentKit(idempotent=True)
    kit.install(stack)
    thread = stack.rt.threads.create(start_thread("th_crash2", kit.agent.name, "go", now=stack.rt.now()))
    kit.crash_after_tool = True
    with pytest.raises(Unrecoverable, match="RuntimeError"):
        step_function.handler({"thread_id": thread.id, "seq": 1}, _context())
    kit.crash_after_tool = False
    result = step_function.handler({"thread_id": thread.id, "seq": 1}, _context())
    assert result["route"] == "continue"
    events = stack.thread(thread.id).events
    assert [e.type for e in events] == ["user_input", "llm_call", "tool_call", "tool_result"]
    assert kit.keys == [kit.keys[0], kit.keys[0]]  # ran twice, with one idempotency key
    assert len(kit.llm.calls) == 1


def test_bad_step_input_is_rejected_with_a_clear_error(stack: LocalStack) -> None:
    with pytest.raises(Unrecoverable, match=r"ValidationError: .*seq"):
        step_function.handler({"thread_id": "x", "seq": -1}, _context())
    with pytest.raises(Unrecoverable, match=r"ValidationError: .*thread_id"):
        step_function.handler({"seq": 1}, _context())


def test_step_lambda_errors_reach_step_functions_as_named_errors(stack: LocalStack) -> None:
    response = stack.clients["lambda"].invoke(
        FunctionName="StepFunction", Payload=json.dumps({"thread_id": "nope", "seq": 0})
    )
    assert response["FunctionError"] == "Unhandled"
    error = json.loads(response["Payload"].read())
    assert error["errorType"] == "Unrecoverable"  # a name of the contract (ARCHITECTURE.md, Errors)
    assert error["errorMessage"] == "ThreadNotFoundError: no thread 'nope'"


def test_an_unpriced_model_override_names_the_agents_whose_cost_limits_cannot_hold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from dataclasses import replace  # noqa: PLC0415

    from agents import AGENTS  # noqa: PLC0415
    from core.kernel.agent import Limits  # noqa: PLC0415
    from functions._wiring import warn_unpriced_override  # noqa: PLC0415

    calculator = AGENTS["calculator"]  # no cost limit; "capped" is the same agent with one
    agents = {"calculator": calculator, "capped": replace(calculator, name="capped", limits=Limits(max_cost_usd=0.1))}
    with caplog.at_level("WARNING", logger="stepfold"):
        assert warn_unpriced_override("openai:llama3.1", agents) == ["capped"]
    assert "the cost limits of capped cannot hold" in caplog.text
    assert warn_unpriced_override("openai:gpt-4o-mini", agents) == []
    assert warn_unpriced_override(None, agents) == []
