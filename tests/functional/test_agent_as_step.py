"""An agent as one step of a larger workflow, end to end (ARCHITECTURE.md "An agent as a step").

The real ASL files on moto's engine: the example parent workflow (infra/statemachine/issue_workflow.asl.json) runs
the agent loop with ``startExecution.sync:2`` through the real launch, step, request-human and record-end handlers.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from agents import deploybot
from core.kernel.thread import fold
from core.services.approvals import Decision
from core.services.control import cancel
from infra.local.stack import LambdaContext, LocalStack
from tests.functional.conftest import QUIET, Shared

BUG = "New issue #42 in acme/app by octo\nTitle: App crashes on login\n\nStack trace: NullPointerException"
FEATURE = "New issue #44 in acme/app by ada\nTitle: Please add dark mode\n\nIt would be nice."
SECURITY = "New issue #43 in acme/app by eve\nTitle: XSS in the search box\n\nA script tag runs."
OUTPUT_KEYS = {"thread_id", "status", "answer", "data", "reason", "timeline", "timeline_url"}


def _start(stack: LocalStack, name: str, text: str) -> str:
    arn: str = stack.clients["stepfunctions"].start_execution(
        stateMachineArn=stack.workflow_arns["IssueWorkflow"], name=name, input=json.dumps({"text": text})
    )["executionArn"]
    return arn


def _launched(stack: LocalStack, agent: str, timeout: float = 30) -> str:
    """The thread the launch function created for ``agent`` (polled: the workflow launches it when it gets there)."""
    deadline = time.monotonic() + timeout
    while True:
        for invocation in list(stack.invocations):
            if invocation.function == "LaunchFunction" and invocation.event.get("agent") == agent and invocation.result:
                return str(invocation.result["thread_id"])
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {agent} thread launched after {timeout}s")
        time.sleep(0.02)


def _described(stack: LocalStack, execution: str) -> dict[str, Any]:
    stack.wait_execution(execution, timeout=60)
    described: dict[str, Any] = stack.clients["stepfunctions"].describe_execution(executionArn=execution)
    return described


def _states(stack: LocalStack, execution: str) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in stack.history(execution) if "stateEnteredEventDetails" in e]


def _approve(stack: LocalStack, thread_id: str) -> None:
    approval, _ = stack.notifier.sent[-1]
    assert approval.thread_id == thread_id
    stack.decide(approval.approval_id, Decision(decision="approve", by="alice", channel="link"))


def test_a_bug_is_triaged_then_hotfixed_with_an_approval_inside_the_agent_while_the_parent_waits(
    stack: LocalStack,
) -> None:
    parent = _start(stack, "issue-42", BUG)
    triage_id = _launched(stack, "triage")
    hotfix_id = _launched(stack, "deploybot")
    waiting = stack.wait(hotfix_id)
    assert fold(waiting).status == "awaiting_human"
    assert stack.execution_status(parent) == "RUNNING"
    assert _states(stack, parent)[-1] == "Hotfix"  # the parent waits in its .sync:2 task
    assert stack.busy_executions() == []  # a parent waiting for a parked child is parked too
    assert deploybot.SERVICE.deployments == []

    _approve(stack, hotfix_id)
    described = _described(stack, parent)

    assert described["status"] == "SUCCEEDED"
    output = json.loads(described["output"])
    assert output["outcome"] == "hotfix"
    assert output["triage"] == {
        "thread_id": triage_id,
        "status": "done",
        "answer": "Issue #42: labelled bug, routed to backend, reporter acknowledged.",
        "data": {"issue": 42, "label": "bug", "team": "backend", "paged": False},
        "timeline": f"/threads/{triage_id}/view",
    }
    assert output["hotfix"]["thread_id"] == hotfix_id
    assert output["hotfix"]["answer"] == "Deployed backend v1.5.0 to production."
    assert [(d["component"], d["environment"]) for d in deploybot.SERVICE.deployments] == [("backend", "production")]
    assert _states(stack, parent) == [
        "LaunchTriage",
        "Triage",
        "IsItABugForATeam",
        "LaunchHotfix",
        "Hotfix",
        "HotfixDeployed",
        "Finished",
    ]
    request = stack.rt.threads.load(hotfix_id).events[0]
    assert getattr(request, "text", "") == "Deploy the latest backend tag to production: it fixes issue #42."


def test_the_agent_loop_execution_ends_with_the_output_a_parent_reads(stack: LocalStack) -> None:
    parent = _start(stack, "issue-44", FEATURE)
    described = _described(stack, parent)
    output = json.loads(described["output"])
    triage_id = output["triage"]["thread_id"]
    child = stack.execution_arn(triage_id)

    child_output = json.loads(_described(stack, child)["output"])

    assert set(child_output) == OUTPUT_KEYS
    assert child_output["status"] == "done"
    assert child_output["data"] == {"issue": 44, "label": "feature", "team": "product", "paged": False}
    assert child_output["timeline"] == f"/threads/{triage_id}/view"
    assert child_output["timeline_url"].endswith(f"/threads/{triage_id}/view")
    assert output == {"outcome": "triaged", "triage": {k: child_output[k] for k in output["triage"]}}
    assert "LaunchHotfix" not in _states(stack, parent)
    assert not [i for i in stack.invocations if i.function == "LaunchFunction" and i.event["agent"] == "deploybot"]


def test_an_agent_that_does_not_answer_is_caught_by_the_parent(stack: LocalStack) -> None:
    """A security report: triage asks a person to approve paging on-call; the person cancels the thread instead."""
    parent = _start(stack, "issue-43", SECURITY)
    triage_id = _launched(stack, "triage")
    assert fold(stack.wait(triage_id)).status == "awaiting_human"
    rt = stack.rt
    cancel(rt.threads, rt.waits, triage_id, by="alice", reason="a duplicate of #12", clock=rt.clock)

    described = _described(stack, parent)

    assert described["status"] == "SUCCEEDED"  # the parent handled it
    output = json.loads(described["output"])
    assert output["outcome"] == "needs_a_person"
    assert output["error"] == "Cancelled"
    assert output["agent"]["thread_id"] == triage_id
    assert output["agent"]["status"] == "cancelled"
    assert output["agent"]["reason"] == "cancelled by alice: a duplicate of #12"
    child = stack.execution_arn(triage_id)
    assert _described(stack, child)["error"] == "Cancelled"
    before = stack.rt.threads.load(triage_id).version
    assert stack.execution_ended(child) == [{"thread_id": triage_id, "recorded": False}]
    assert stack.rt.threads.load(triage_id).version == before  # not recorded as a system failure
    assert _states(stack, parent)[-3:] == ["WhyNoAnswer", "NeedsAPerson", "Finished"]


def test_a_thread_continued_as_new_hands_its_answer_back_up_the_chain(shared: Shared) -> None:
    with shared.lease(QUIET) as stack:
        stack.use_state_machine("two-iterations-for-parents", MaxIterations=2)
        thread = stack.launch("calculator", "multiply 3 and 4, then divide the result by 2 and then add 12")
        first = stack.execution_arn(thread.id)

        described = _described(stack, first)

        assert described["status"] == "SUCCEEDED"
        assert _states(stack, first)[-2:] == ["ContinueAsNew", "ContinuedAsNew"]
        output = json.loads(described["output"])
        assert (output["thread_id"], output["status"], output["answer"]) == (thread.id, "done", "The answer is 18.")
        stack.wait_idle()


def test_the_launch_handler_logs_at_info_and_a_retried_launch_returns_the_same_thread(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    """The launch function at INFO, as a deployment with LogLevel INFO runs it (its log line once named a field
    ``created``, which logging reserves: every launch crashed there), and retried with the same key."""
    from functions import launch  # noqa: PLC0415 - the handler module, imported where its runtime is installed

    event = {"agent": "triage", "text": "New issue #7: the login page is blank", "idempotency_key": "wf-7"}
    level = launch.logger.log_level
    launch.logger.setLevel("INFO")
    try:
        with caplog.at_level("INFO"):
            first = launch.handler(event, LambdaContext(function_name="LaunchFunction"))
            again = launch.handler(event, LambdaContext(function_name="LaunchFunction"))
    finally:
        launch.logger.setLevel(level)
    assert first == again
    assert first["execution"] == f"{first['thread_id']}-{first['seq']}"
    assert first["input"] == {"thread_id": first["thread_id"], "seq": first["seq"], "iteration": 0}
    assert stack.rt.threads.load(first["thread_id"]).agent == "triage"
    logged = [json.loads(r.getMessage()) if r.getMessage().startswith("{") else r.__dict__ for r in caplog.records]
    assert any(r.get("thread_id") == first["thread_id"] for r in logged), logged
