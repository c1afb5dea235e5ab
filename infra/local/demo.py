"""`make demo`: the example agents on the local stack, step by step.

Runs the real handlers and the real state machine on moto, with the scripted model by default
(``STEPFOLD_MODEL=openai:<model>`` with ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` uses a real one).
Every other agent of the registry that has a scripted brain (one you added to agents/) runs once too, with each
request it makes approved or answered. Exits non-zero if any thread does not end as its scenario says.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from agents import AGENTS, BRAINS
from core.kernel.events import (
    Done,
    Error,
    Event,
    HumanRequest,
    HumanResponse,
    LLMCall,
    ToolCall,
    ToolResult,
    ToolsListed,
)
from core.kernel.mcp import RemoteTool, mapping
from core.kernel.pricing import price_for
from core.kernel.thread import Thread, fold
from core.services.approvals import Decision
from infra.local.stack import Invocation, LocalStack


@dataclass(frozen=True)
class Scenario:
    title: str
    agent: str
    text: str
    answers: tuple[Decision, ...] = ()
    expect_status: str = "done"
    expect_in_answer: str = ""
    approve_all: bool = False
    """Approve every approval and answer every question ("yes"): how an agent without a scenario of its own runs."""


SCENARIOS = (
    Scenario(
        "calculator: a chain of operations",
        "calculator",
        "multiply 3 and 4, then divide the result by 2 and then add 12",
        expect_in_answer="18",
    ),
    Scenario(
        "calculator: an ambiguous request asks a human",
        "calculator",
        "multiply 3 and xyz",
        (Decision(decision="answer", answer="5", by="demo-user", channel="cli"),),
        expect_in_answer="15",
    ),
    Scenario(
        "deploybot: production needs approval",
        "deploybot",
        "deploy the latest backend to production",
        (Decision(decision="approve", by="alice@example.com", channel="link"),),
        expect_in_answer="backend v1.5.0 to production",
    ),
    Scenario(
        "oncall: MCP tools, a read-only one runs unasked, a destructive one asks first",
        "oncall",
        "alert: checkout error rate above 25%",
        (Decision(decision="approve", by="carol@example.com", channel="link"),),
        expect_in_answer="restarted it after approval",
    ),
    Scenario(
        "deploybot: a rejection with a reason re-plans",
        "deploybot",
        "deploy v1.4.2 frontend to production",
        (
            Decision(decision="reject", comment="deploy to staging first", by="bob@example.com", channel="link"),
            Decision(decision="approve", by="bob@example.com", channel="link"),
        ),
        expect_in_answer="frontend v1.4.2 to production",
    ),
)


def scenarios() -> tuple[Scenario, ...]:
    """The scenarios above, then one for each registered agent with a brain and no scenario (ARCHITECTURE.md
    "User space": an agent added to agents/ shows up here without an edit)."""
    covered = {s.agent for s in SCENARIOS}
    extra = (
        Scenario(f"{name}: from agents/, with its scripted brain", name, AGENTS[name].description, approve_all=True)
        for name in BRAINS
        if name not in covered
    )
    return (*SCENARIOS, *extra)


def _next_answer(scenario: Scenario, answers: list[Decision], thread: Thread, given: int) -> Decision | None:
    """The next scripted decision, or for ``approve_all`` one that fits the open request (at most 10)."""
    if answers:
        return answers.pop(0)
    request = fold(thread).open_request
    if not scenario.approve_all or request is None or given >= 10:
        return None
    if request.kind == "question":
        return Decision(decision="answer", answer="yes", by="demo-user", channel="cli")
    return Decision(decision="approve", by="demo-user", channel="cli")


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass
class _Printer:
    """Prints each step when the step Lambda returns (it runs on the state machine's thread)."""

    stack: LocalStack
    out: Callable[[str], None] = print
    seen: dict[str, int] = field(default_factory=dict)
    steps: dict[str, int] = field(default_factory=dict)

    def __call__(self, invocation: Invocation) -> None:
        if invocation.function != "StepFunction" or invocation.error or not isinstance(invocation.result, dict):
            if invocation.error:
                self.out(f"    ! {invocation.function} raised {invocation.error}; Step Functions retries it")
            return
        thread_id = str(invocation.result["thread_id"])
        thread = self.stack.thread(thread_id)
        new = list(thread.events[self.seen.get(thread_id, 1) :])
        self.seen[thread_id] = thread.version
        for line in self.describe(thread_id, new, str(invocation.result["route"])):
            self.out(line)

    def describe(self, thread_id: str, events: list[Event], route: str) -> list[str]:
        lines: list[str] = []
        for event in events:
            match event:
                case LLMCall():
                    self.steps[thread_id] = self.steps.get(thread_id, 0) + 1
                    tool = event.output.get("name") or "(text)"
                    lines.append(
                        f"  step {self.steps[thread_id]:>2}  {tool:<20} tokens {event.input_tokens}+"
                        f"{event.output_tokens}  ${event.cost_usd:.6f}"
                    )
                case ToolCall(prefetch=True):
                    lines.append(f"  pre-fetch {event.tool}")
                case ToolsListed(pinned=True):
                    lines.append(f"  mcp {event.server}: tools pinned for this thread (from the server's annotations):")
                    for raw in event.tools:
                        tool = RemoteTool.model_validate(raw)
                        hints = ", ".join(f"{k}={v}" for k, v in tool.annotations.items()) or "no annotations"
                        lines.append(f"           {tool.name:<18} {hints:<36} -> {mapping(event.server, tool).policy}")
                case ToolsListed():
                    lines.append(f"  mcp {event.server} lists other tools now: {'; '.join(event.changes)}")
                case ToolResult():
                    lines.append(f"           -> {event.tool}: {_short(event.result)}")
                case Error():
                    lines.append(f"           !! {event.kind}: {_short(event.message)}")
                case HumanRequest():
                    lines.append(f"           ?? waiting for a human ({event.kind}): {_short(event.question)}")
                    if "\n\nAsked because " in event.context:
                        lines.append(f"              asked because {event.context.split('Asked because ', 1)[1]}")
                case Done():
                    lines.append(f"           == done: {_short(event.answer, 90)}")
                case _:
                    pass
        lines.append(f"           route: {route}")
        return lines


def run(out: Callable[[str], None] = print) -> int:
    scripted = not os.environ.get("STEPFOLD_MODEL")
    failures: list[str] = []
    # The demo prints each step itself; the handlers' JSON logs and the engine's own error log would repeat it.
    logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
    quiet = {
        "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "ERROR"),
        "POWERTOOLS_METRICS_DISABLED": os.environ.get("POWERTOOLS_METRICS_DISABLED", "true"),
    }
    from infra.local.mcp_server import example_mcp_servers  # noqa: PLC0415 - the mcp SDK, for this run only

    with example_mcp_servers(out), LocalStack(env=quiet) as stack:
        printer = _Printer(stack, out)
        stack.listeners.append(printer)
        model = os.environ.get("STEPFOLD_MODEL") or "scripted (each agent's own scripted:<agent> model)"
        out("stepfold demo: moto DynamoDB/S3/Lambda/Step Functions in this process, the real agent_loop.asl.json")
        out(f"model: {model}")
        if scripted and (nominal := price_for("scripted:demo")) is not None:
            out(
                "costs: NOMINAL. The scripted model estimates its tokens (about 4 characters each) and is priced at "
                f"${nominal.input_per_mtok:.2f}/${nominal.output_per_mtok:.2f} per million input/output tokens so "
                "the cost limits have something to count; no provider is called"
            )
        out("approvals: this demo answers each request itself; `stepfold serve` prints links you open in a browser\n")
        results: list[tuple[Scenario, Thread]] = []
        for scenario in scenarios():
            out(f"== {scenario.title}\n   {scenario.agent} <- {scenario.text!r}")
            thread = stack.launch(scenario.agent, scenario.text)
            answers = list(scenario.answers)
            given = 0
            while True:
                thread = stack.wait(thread.id, timeout=60)
                state = fold(thread)
                answer = _next_answer(scenario, answers, thread, given) if state.status == "awaiting_human" else None
                if answer is None:
                    break
                given += 1
                approval, url = stack.notifier.sent[-1]
                out(f"   link sent to the approvers: {urlsplit(url).path}?exp=...&sig=... (answered here, in-process)")
                out(
                    f"   {answer.by} answers via {answer.channel}: {answer.decision}"
                    + (f" ({answer.comment or answer.answer})" if answer.comment or answer.answer else "")
                )
                stack.decide(approval.approval_id, answer)
            state = fold(thread)
            if state.failure_error == "ModelUnavailable":
                out(
                    f"\nerror: the model {os.environ.get('STEPFOLD_MODEL')} could not be reached after every retry: "
                    f"{_short(state.failure or '', 400)}\nCheck the network, the key and the base URL "
                    "(OPENAI_BASE_URL for an OpenAI-compatible server); "
                    "`make demo` without STEPFOLD_MODEL runs offline."
                )
                return 1
            ok = state.status == scenario.expect_status and (
                not scripted or scenario.expect_in_answer in (state.answer or "")
            )
            if not ok:
                failures.append(f"{scenario.title}: ended {state.status} with {state.answer!r}")
            results.append((scenario, thread))
            out("")
        if (failed := _workflow(stack, out)) is not None:
            failures.append(failed)
        stack.wait_idle()
        items, size = stack.items()
        out("== results")
        for scenario, thread in results:
            state = fold(thread)
            decided = [e for e in thread.events if isinstance(e, HumanResponse)]
            humans = f", {len(decided)} human decision(s)" if decided else ""
            out(
                f"  {scenario.agent:<11} {state.status:<6} {state.steps} model calls, {state.total_tokens} tokens, "
                f"${state.cost_usd:.6f}{humans}: {_short(state.answer or state.failure or '', 80)}"
            )
        out(
            f"\nDynamoDB: {items} items ({size} bytes) in the table; {stack.write_requests} write requests "
            f"carried {stack.bytes_written} bytes"
        )
    if failures:
        out("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    out("\nall threads reached their expected end")
    return 0


WORKFLOW_ISSUE = "New issue #42 in acme/app by octo\nTitle: App crashes on login\n\nStack trace: NullPointerException"


def _workflow(stack: LocalStack, out: Callable[[str], None], timeout: float = 120) -> str | None:
    """The example parent workflow (infra/statemachine/issue_workflow.asl.json): triage classifies an issue, a Choice
    reads its typed answer, deploybot deploys the fix once a person approves inside the agent while the parent waits
    (ARCHITECTURE.md "An agent as a step"). Prints the parent execution's output; returns why it failed, if it did."""
    out("== an agent as one step of a workflow: the IssueWorkflow state machine (issue_workflow.asl.json)")
    out(f"   IssueWorkflow <- {{'text': {WORKFLOW_ISSUE!r}}}")
    sfn = stack.clients["stepfunctions"]
    workflow, started = stack.workflow_arns["IssueWorkflow"], json.dumps({"text": WORKFLOW_ISSUE})
    parent = sfn.start_execution(stateMachineArn=workflow, name="issue-42", input=started)["executionArn"]
    answered = {approval.approval_id for approval, _ in stack.notifier.sent}  # the scenarios above answered these
    deadline = time.monotonic() + timeout
    while (status := stack.execution_status(parent)) == "RUNNING":
        for approval, url in list(stack.notifier.sent):
            if approval.approval_id in answered:
                continue
            answered.add(approval.approval_id)
            where = _entered(stack, parent)[-1]
            out(f"   the parent waits in {where}; link sent: {urlsplit(url).path}?exp=...&sig=...")
            out("   alice answers via link: approve")
            stack.decide(approval.approval_id, Decision(decision="approve", by="alice", channel="link"))
        if time.monotonic() > deadline:
            return f"the IssueWorkflow execution is still RUNNING after {timeout:.0f}s"
        time.sleep(0.05)
    described = sfn.describe_execution(executionArn=parent)
    out(f"   the parent went through: {' -> '.join(_entered(stack, parent))}")
    out(f"   IssueWorkflow {status}; its output:")
    output = json.loads(described.get("output") or "null")
    for line in json.dumps(output, indent=2).splitlines():
        out(f"   {line}")
    out("")
    if status != "SUCCEEDED" or not isinstance(output, dict) or output.get("outcome") != "hotfix":
        return f"IssueWorkflow: ended {status} with {_short(output, 200)}"
    return None


def _entered(stack: LocalStack, execution: str) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in stack.history(execution) if "stateEnteredEventDetails" in e]


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
