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
that runs it; the local stack's own duration is printed beside it. Lambda is priced at each function's memory as
template.yaml deploys it (the step function's ``StepMemorySize``). **Today's** cost, the baseline the issue's goal is
measured against, is the standard mode's measured thread priced as the template deployed it before
``StepMemorySize``: every function at the Globals' ``MemorySize`` (1,024 MB). The figures per mode are printed for
both memory settings, so the loop mode's saving and the memory's are seen apart.

Read units count the functions' reads only: the benchmark's own polling of the thread (``LocalStack.wait``, in this
thread) is left out.

Run: ``python benchmarks/transitions.py`` (both loop modes; ``--mode standard`` or ``express`` for one; a minute).
``make bench`` runs it as benchmark 8 and writes its rows into benchmarks/README.md's table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
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

from benchmarks._common import BENCH_AGENT, Lookup, Report, lookup, print_report, verdict
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
STEP_FUNCTION = "StepFunction"
LINES = ("Step Functions Standard", "Step Functions Express", "Lambda", "DynamoDB")
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
        self.ignored: int | None = None
        """The thread whose reads are not counted (the benchmark's polling, see :meth:`polling`)."""

    @contextmanager
    def polling(self) -> Iterator[None]:
        """Reads made by this thread meanwhile are the benchmark's, not a function's: not counted."""
        self.ignored = threading.get_ident()
        try:
            yield
        finally:
            self.ignored = None

    def attach(self, client: Any) -> ReadUnits:
        for op in ("Query", "GetItem"):
            client.meta.events.register(f"before-call.dynamodb.{op}", self._before)
            client.meta.events.register(f"after-call.dynamodb.{op}", self._after)
        return self

    def _before(self, params: Any, context: Any, **_: Any) -> None:
        body = params.get("body") or b"{}"
        context["stepfold_consistent"] = bool(json.loads(body).get("ConsistentRead"))

    def _after(self, http_response: Any, context: Any, **_: Any) -> None:
        if threading.get_ident() == self.ignored:
            return
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

    def cost(self, memory_gb: Mapping[str, float]) -> dict[str, float]:
        """Dollars for this thread, by line, with each function at ``memory_gb[logical id]``."""
        p = PRICES
        lambda_gb_seconds = sum(
            count * (STEP_SECONDS if function == STEP_FUNCTION else OTHER_SECONDS) * memory_gb[function]
            for function, count in self.invocations.items()
        )
        return {
            "Step Functions Standard": self.transitions["STANDARD"] * p["sfn_transition"],
            "Step Functions Express": self.executions["EXPRESS"] * p["express_request"]
            + self.express_gb_seconds() * p["express_gb_second"],
            "Lambda": sum(self.invocations.values()) * p["lambda_request"] + lambda_gb_seconds * p["lambda_gb_second"],
            "DynamoDB": (self.wru + self.index_wru) * p["ddb_wru"] + self.rru * p["ddb_rru"],
        }

    def express_gb_seconds(self) -> float:
        """Express duration billed: each burst's model waits plus the stack's own time, rounded up to 100 ms, at
        the first 64 MB."""
        return (
            sum(
                math.ceil((steps * STEP_SECONDS + local) * 10) / 10
                for steps, local in zip(self.express_steps, self.express_seconds, strict=True)
            )
            * EXPRESS_GB
        )

    def per_thousand_steps(self, memory_gb: Mapping[str, float]) -> dict[str, float]:
        return {line: dollars * 1000 / self.steps for line, dollars in self.cost(memory_gb).items()}


def memory_settings() -> dict[str, dict[str, float]]:
    """GB of each function: as template.yaml deploys it ("template"), and as it did before ``StepMemorySize``, every
    function at the Globals' ``MemorySize`` ("today")."""
    from infra.local.template import load_template

    template = load_template(Path(__file__).resolve().parents[1] / "template.yaml")
    functions = [f.logical_id for f in template.functions()]
    return {
        "template": {f: template.memory_mb(f) / 1024 for f in functions},
        "today": {f: int(template.globals["MemorySize"]) / 1024 for f in functions},
    }


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
            with reads.polling():
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


TARGET_VS_TODAY = 1 / 3
"""Issue 19's goal: Step Functions + Lambda + DynamoDB per 1,000 steps at most a third of today's."""
DAILY = (10_000, 1_000_000)
"""Threads a day SCALE.md plans for."""


def run(modes: tuple[str, ...] = ("standard", "express")) -> Report:
    report = Report("8 transitions")
    memory = memory_settings()
    step_mb = round(memory["template"][STEP_FUNCTION] * 1024)
    today_mb = round(memory["today"][STEP_FUNCTION] * 1024)
    results: dict[tuple[str, str], Measured] = {}
    for mode in modes:
        for shape in SHAPES:
            with quieted():
                started = time.perf_counter()
                m = run_shape(shape, mode)
                seconds = time.perf_counter() - started
            results[shape.name, mode] = m
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
                    f"{[round(x, 2) for x in m.express_seconds]}, billed {m.express_gb_seconds():.3f} GB-s"
                )
            for label, gb in (("template", memory["template"]), ("today", memory["today"])):
                per = m.per_thousand_steps(gb)
                report.say(
                    f"    per 1,000 steps, step function at {round(gb[STEP_FUNCTION] * 1024)} MB ({label}): "
                    + ", ".join(f"{line} {money(v)}" for line, v in per.items())
                    + f", total {money(sum(per.values()))}"
                )
            per = m.per_thousand_steps(memory["template"])
            report.row(
                f"{m.shape} ({shape.calls} steps{', 1 approval' if shape.approval_at is not None else ''}), {mode} "
                "mode: Standard transitions (per step) / Express transitions / Express GB-s, per thread",
                ours=(
                    f"{m.transitions['STANDARD']} ({m.transitions['STANDARD'] / m.steps:.2f}) / "
                    f"{m.transitions['EXPRESS']} / {m.express_gb_seconds():.3f}"
                ),
            )
            report.row(
                f"{m.shape}, {mode} mode: per 1,000 steps, step function at {step_mb} MB (SFN Standard / Express / "
                "Lambda / DynamoDB)",
                ours=f"**{money(sum(per.values()))}** (" + " / ".join(money(per[line]) for line in LINES) + ")",
            )
    for shape in SHAPES:
        standard, express = results.get((shape.name, "standard")), results.get((shape.name, "express"))
        if standard is None or express is None:
            continue
        today = sum(standard.per_thousand_steps(memory["today"]).values())
        standard_now = sum(standard.per_thousand_steps(memory["template"]).values())
        express_now = sum(express.per_thousand_steps(memory["template"]).values())
        express_at_today_mb = sum(express.per_thousand_steps(memory["today"]).values())
        ratio = express_now / today
        report.say(f"cost vs today, {shape.name}: {ratio:.3f}")
        report.say(
            f"    {shape.name}: today (standard, {today_mb} MB) {money(today)}; standard at {step_mb} MB "
            f"{money(standard_now)} ({standard_now / today:.0%}); express at {today_mb} MB "
            f"{money(express_at_today_mb)} ({express_at_today_mb / today:.0%}); "
            f"express at {step_mb} MB {money(express_now)} ({ratio:.0%})"
        )
        report.row(
            f"{shape.name}: express mode at {step_mb} MB vs today (standard, step at {today_mb} MB); the loop mode "
            f"alone (express at {today_mb} MB) / the memory alone (standard at {step_mb} MB)",
            ours=(
                f"{ratio:.0%} ({money(express_now)} vs {money(today)}); {express_at_today_mb / today:.0%} / "
                f"{standard_now / today:.0%}"
            ),
            target=f"<= {TARGET_VS_TODAY:.0%}",
            verdict=verdict(ratio <= TARGET_VS_TODAY),
        )
        for daily in DAILY:
            steps = daily * shape.calls
            per_second = [m.transitions["STANDARD"] * daily / 86_400 for m in (standard, express)]
            report.say(
                f"    {daily:,} {shape.name} threads a day ({steps:,} steps): standard "
                f"{money(standard_now * steps / 1000)}, express {money(express_now * steps / 1000)} a day "
                f"(step function at {step_mb} MB); Standard transitions/s on average {per_second[0]:,.1f} vs "
                f"{per_second[1]:,.1f}"
            )
            report.row(
                f"{shape.name} at {daily:,} threads a day, step function at {step_mb} MB: standard / express mode, "
                "dollars a day; Standard state transitions per second on average",
                ours=(
                    f"${standard_now * steps / 1000:,.2f} / ${express_now * steps / 1000:,.2f}; "
                    f"{per_second[0]:,.1f} / {per_second[1]:,.1f}"
                ),
            )
    report.notes.append(
        f"benchmark 8: prices as published on {PRICES_READ} (us-east-1; PRICES in benchmarks/transitions.py); a step's "
        f"model call priced at {STEP_SECONDS:g} s of the step function (and of Express at 64 MB when a burst runs it); "
        f"functions at their template.yaml memory (the step function's StepMemorySize, {step_mb} MB); today = the "
        f"standard mode with every function at {today_mb} MB, as the template deployed before StepMemorySize"
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
    parser.add_argument("--mode", choices=("standard", "express", "both"), default="both")
    args = parser.parse_args(argv)
    modes = ("standard", "express") if args.mode == "both" else (args.mode,)
    report = run(modes)
    print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
