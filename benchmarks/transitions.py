"""8. What a thread costs the infrastructure: state transitions, Express duration, Lambda and DynamoDB, per 1,000 steps.

Measured, not estimated (issue 19): each thread runs on the local stack (``infra/local/stack.py``: the real ASL in
moto's Step Functions engine, every Lambda task routed to the real handler, DynamoDB in this process) with a scripted
model, alone in a fresh stack, and then everything it caused is counted:

- **state transitions**, from the history of every execution the thread caused (its own, a continue-as-new's, an
  Express burst's): one per state entered, plus one per retry of a Task (AWS: "Step Functions counts a state
  transition each time a step of your workflow is executed ... including retries"); Standard and Express apart, as
  only Standard's are billed per transition;
- **Express requests and duration**: one request per Express execution; its duration from the history's first to
  last event (what the stack took, model calls included: the scripted model answers at once);
- **Lambda invocations** by function, as the stack routed them;
- **DynamoDB request units**, from every request the functions sent (moto meters no capacity): write units by
  DynamoDB's item-size rules (``benchmarks/bytes_per_step.py`` ``WriteUnits``: 1 per started KB, 2 in a
  transaction, the status index's delete + put apart), read units 1 per started 4 KB of what a Query or GetItem
  returned (half for an eventually consistent read).

The threads (the demo's shapes): ``approval10``, 10 model calls with one approval (call 5 asks to apply a change a
person must approve; the stack approves it as soon as the link is sent), and ``long50``, 50 model calls, no human.
Both end in ``done_for_now``.

Prices: the published us-east-1 prices in ``PRICES``, as read on ``PRICES_READ``. The model's time is priced, not
measured: a step's Lambda waits ``STEP_SECONDS`` for the model (SCALE.md's assumption), and so does an Express burst
that runs it; the local stack's own duration is printed beside it.

Run: ``python benchmarks/transitions.py`` (``--mode express`` once the Express loop mode exists; a minute).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydantic import BaseModel, ConfigDict

from benchmarks._common import BENCH_AGENT, Lookup, Report, lookup, print_report
from benchmarks.bytes_per_step import WriteUnits, item_bytes
from benchmarks.throughput import quiet_stdout
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.events import LLMCall
from core.kernel.model import LLMRequest
from core.kernel.tools import Tool, ToolContext

# --- prices (us-east-1) -----------------------------------------------------------------------------------------

PRICES_READ = "2026-12-01"
PRICES: Mapping[str, float] = {
    # https://aws.amazon.com/step-functions/pricing/ : Standard, per state transition ($25.00 per million), retries
    # included. Express: $1.00 per million requests; duration per GB-second, rounded up to 100 ms, memory in 64 MB
    # chunks; $0.00001667 per GB-second is the first tier (the first 1,000 GB-hours a month).
    "sfn_transition": 25.00 / 1_000_000,
    "express_request": 1.00 / 1_000_000,
    "express_gb_second": 0.00001667,
    # https://aws.amazon.com/lambda/pricing/ : arm64, $0.20 per million requests, $0.0000133334 per GB-second
    "lambda_request": 0.20 / 1_000_000,
    "lambda_gb_second": 0.0000133334,
    # https://aws.amazon.com/dynamodb/pricing/on-demand/ : $0.625 per million write request units, $0.125 per
    # million read request units (since the November 2024 reduction)
    "ddb_wru": 0.625 / 1_000_000,
    "ddb_rru": 0.125 / 1_000_000,
}
STEP_SECONDS = 3.0
"""A step's model call (SCALE.md's assumption): the step Lambda waits for it, and so does an Express burst."""
OTHER_SECONDS = 0.1
"""What an invocation of another function (request_human, record_end) is priced at."""
LAMBDA_GB = 1.0
"""template.yaml Globals MemorySize: 1,024 MB."""
EXPRESS_GB = 64 / 1024
"""An Express burst holds a small payload: the first 64 MB chunk."""


# --- the threads --------------------------------------------------------------------------------------------------


class Change(BaseModel):
    model_config = ConfigDict(extra="forbid")
    what: str


def apply_change(args: Change, _: ToolContext) -> dict[str, Any]:
    return {"applied": args.what}


TOOLS = (
    Tool("lookup", "Look up record n.", Lookup, lookup, idempotent=True),
    Tool("apply", "Apply a change (a person approves it).", Change, apply_change, policy="needs_approval"),
)


@dataclass(frozen=True)
class Shape:
    name: str
    calls: int
    """Model calls: the last one is ``done_for_now``."""
    approval_at: int | None = None
    """The model call (0-based) that asks for the approved tool."""

    def brain(self, request: LLMRequest) -> Say:
        made = sum(isinstance(e, LLMCall) for e in request.events)
        if made >= self.calls - 1:
            return Say("done_for_now", {"answer": f"{made} calls"})
        if made == self.approval_at:
            return Say("apply", {"what": "restart"})
        return Say("lookup", {"n": made})


SHAPES = (Shape("approval10", 10, approval_at=4), Shape("long50", 50))


# --- read units ---------------------------------------------------------------------------------------------------


class ReadUnits:
    """Read units of every Query and GetItem: 1 per started 4 KB of the items returned (0.5 eventually consistent)."""

    def __init__(self) -> None:
        self.units = 0.0

    def attach(self, client: Any) -> ReadUnits:
        for op in ("Query", "GetItem"):
            client.meta.events.register(f"before-call.dynamodb.{op}", self._before)
            client.meta.events.register(f"after-call.dynamodb.{op}", self._after)
        return self

    def _before(self, params: Any, context: Any, **_: Any) -> None:
        body = params.get("body") or b"{}"
        context["stepfold_consistent"] = bool(json.loads(body).get("ConsistentRead"))

    def _after(self, http_response: Any, context: Any, **_: Any) -> None:
        answer = json.loads(http_response.content or b"{}")
        items = answer.get("Items") or ([answer["Item"]] if "Item" in answer else [])
        size = sum(item_bytes(item) for item in items)
        units = max(1, math.ceil(size / 4096))
        self.units += units if context.get("stepfold_consistent") else units / 2


# --- one run ------------------------------------------------------------------------------------------------------


@dataclass
class Measured:
    shape: str
    mode: str
    steps: int
    """Model calls (``llm_call`` events): the steps that did work."""
    status: str
    executions: Counter[str] = field(default_factory=Counter)
    transitions: Counter[str] = field(default_factory=Counter)
    """By state machine type (STANDARD, EXPRESS)."""
    states: Counter[str] = field(default_factory=Counter)
    """States entered, by (type, name), for the printout."""
    express_seconds: list[float] = field(default_factory=list)
    express_steps: list[int] = field(default_factory=list)
    invocations: Counter[str] = field(default_factory=Counter)
    wru: int = 0
    index_wru: int = 0
    rru: float = 0.0

    def cost(self) -> dict[str, float]:
        """Dollars for this thread, by line."""
        p = PRICES
        step_invokes = self.invocations.get("StepFunction", 0)
        other_invokes = sum(self.invocations.values()) - step_invokes
        express_billed = sum(
            math.ceil((steps * STEP_SECONDS + local) * 10) / 10
            for steps, local in zip(self.express_steps, self.express_seconds, strict=True)
        )
        return {
            "Step Functions Standard": self.transitions["STANDARD"] * p["sfn_transition"],
            "Step Functions Express": self.executions["EXPRESS"] * p["express_request"]
            + express_billed * EXPRESS_GB * p["express_gb_second"],
            "Lambda": sum(self.invocations.values()) * p["lambda_request"]
            + (step_invokes * STEP_SECONDS + other_invokes * OTHER_SECONDS) * LAMBDA_GB * p["lambda_gb_second"],
            "DynamoDB": (self.wru + self.index_wru) * p["ddb_wru"] + self.rru * p["ddb_rru"],
        }

    def per_thousand_steps(self) -> dict[str, float]:
        return {line: dollars * 1000 / self.steps for line, dollars in self.cost().items()}


def run_shape(shape: Shape, mode: str) -> Measured:
    from core.kernel.thread import fold
    from core.services.approvals import Decision
    from infra.local.stack import TEST_TIME_SCALE, LocalStack

    agent = replace(BENCH_AGENT, name=shape.name, tools=TOOLS)
    options: dict[str, Any] = {"loop_mode": mode} if mode != "standard" else {}
    with LocalStack(time_scale=TEST_TIME_SCALE, **options) as stack:
        stack.rt.agents = {agent.name: agent}
        stack.rt.provider_config = ProviderConfig(scripted=lambda name: ScriptedLLM(shape.brain, name=name))
        ddb = stack.rt.clients["dynamodb"]
        writes, reads = WriteUnits().attach(ddb), ReadUnits().attach(ddb)
        thread_id = stack.launch(agent.name, "look everything up").id
        while True:
            thread = stack.wait(thread_id, timeout=300)
            state = fold(thread)
            if state.status != "awaiting_human":
                break
            assert state.open_request is not None
            stack.decide(state.open_request.approval_id, Decision(decision="approve", by="bench", channel="link"))
        stack.wait_idle(timeout=60)
        measured = Measured(shape.name, mode, sum(isinstance(e, LLMCall) for e in thread.events), fold(thread).status)
        measured.invocations.update(i.function for i in stack.invocations)
        measured.wru, measured.index_wru = writes.take()
        measured.rru = reads.units
        _count_executions(stack, measured)
    return measured


def _count_executions(stack: Any, measured: Measured) -> None:
    sfn = stack.clients["stepfunctions"]
    for machine in sfn.list_state_machines()["stateMachines"]:
        kind = sfn.describe_state_machine(stateMachineArn=machine["stateMachineArn"])["type"]
        for execution in sfn.list_executions(stateMachineArn=machine["stateMachineArn"])["executions"]:
            history = stack.history(execution["executionArn"])
            measured.executions[kind] += 1
            entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
            measured.transitions[kind] += len(entered) + _retries(history)
            measured.states.update(f"{kind.lower()}:{name}" for name in entered)
            if kind == "EXPRESS":
                stamps: list[datetime] = [e["timestamp"] for e in history]
                measured.express_seconds.append((max(stamps) - min(stamps)).total_seconds())
                measured.express_steps.append(sum(1 for name in entered if name == "Step"))


def _retries(history: list[dict[str, Any]]) -> int:
    """Task attempts after the first of each state entered: each retry is a billed transition."""
    retries, attempts = 0, 0
    for event in history:
        if event["type"].endswith("StateEntered"):
            attempts = 0
        elif event["type"] in ("TaskScheduled", "LambdaFunctionScheduled"):
            attempts += 1
            retries += attempts > 1
    return retries


# --- the report ---------------------------------------------------------------------------------------------------


def money(dollars: float) -> str:
    return f"${dollars:.4f}"


def run(modes: tuple[str, ...] = ("standard",)) -> Report:
    report = Report("8 transitions")
    results: list[Measured] = []
    for mode in modes:
        for shape in SHAPES:
            with quieted():
                started = time.perf_counter()
                m = run_shape(shape, mode)
                seconds = time.perf_counter() - started
            results.append(m)
            report.say(
                f"[{mode}] {m.shape}: {m.status} after {m.steps} model calls in {seconds:.1f}s; executions "
                f"{dict(m.executions)}; transitions {dict(m.transitions)} "
                f"({m.transitions['STANDARD'] / m.steps:.2f} Standard per step); Lambda {dict(m.invocations)}; "
                f"DynamoDB {m.wru} WRU + {m.index_wru} index WRU, {m.rru:g} RRU"
            )
            report.say(f"    states entered: {dict(sorted(m.states.items()))}")
            if m.express_seconds:
                report.say(
                    f"    Express bursts: {len(m.express_seconds)}, steps {m.express_steps}, local seconds "
                    f"{[round(s, 2) for s in m.express_seconds]}"
                )
            per = m.per_thousand_steps()
            report.say(
                "    per 1,000 steps: "
                + ", ".join(f"{line} {money(v)}" for line, v in per.items())
                + f", total {money(sum(per.values()))}"
            )
            report.row(
                f"{m.shape}: infrastructure per 1,000 steps ({mode})",
                ours=(
                    f"{money(sum(per.values()))} (Step Functions "
                    f"{money(per['Step Functions Standard'] + per['Step Functions Express'])}"
                    f", {m.transitions['STANDARD'] / m.steps:.2f} Standard transitions per step)"
                ),
            )
    report.notes.append(
        f"prices as published on {PRICES_READ} (us-east-1; see PRICES in benchmarks/transitions.py); a step's "
        f"model call priced at {STEP_SECONDS:g} s of Lambda at {LAMBDA_GB:g} GB (and of Express at 64 MB when a "
        "burst runs it)"
    )
    return report


@contextmanager
def quieted() -> Iterator[None]:
    if os.environ.get("BENCH_VERBOSE"):
        yield
        return
    with quiet_stdout():
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("standard", "express", "both"), default="standard")
    args = parser.parse_args(argv)
    modes = ("standard", "express") if args.mode == "both" else (args.mode,)
    report = run(modes)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
