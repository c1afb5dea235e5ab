"""The fault-injection matrix: crash a step at each write point, or make a dependency fail, and let
Step Functions retry it exactly as it would in AWS (the real ASL's Retry, the real handler).
Model provider faults are injected on the wire, through the real adapters, in test_failure_truth.py.

For every point the thread must end complete, in order and without duplicates; an idempotent tool's
effect happens exactly once per tool call id, and a non-idempotent tool runs at most once, with an
``outcome_unknown`` event asking a human whenever the step cannot know whether it ran.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from agents import AGENTS, scripted_model
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.agent import Agent
from core.kernel.events import Error, Event, HumanRequest, ToolCall, ToolResult
from core.kernel.model import LLMRequest
from core.kernel.store import ThreadStore
from core.kernel.thread import Thread, fold
from core.kernel.tools import Tool, ToolContext
from infra.local.stack import LocalStack
from tests.functional.conftest import Shared

RESULTS: list[tuple[str, str, str]] = []


class ChargeArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cents: int


@dataclass
class PaymentsService:
    """The fake external system: counts calls, and effects per idempotency key (dedupes when asked to)."""

    dedupe: bool
    calls: Counter[str] = field(default_factory=Counter)
    effects: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def charge(self, key: str) -> dict[str, Any]:
        with self._lock:
            self.calls[key] += 1
            if not self.dedupe or self.effects[key] == 0:
                self.effects[key] += 1
        return {"charged": True, "key": key, "receipt": "r" * 40_000}  # large: the result goes through S3


@dataclass
class Fault:
    """Fires once at ``point``; ``fired`` tells whether it did."""

    point: str
    fired: bool = False

    def fire(self, point: str) -> bool:
        if self.point == point and not self.fired:
            self.fired = True
            return True
        return False


class FaultyStore:
    """The real store with crashes at the step's write points (a Lambda dying there)."""

    def __init__(self, inner: ThreadStore, fault: Fault) -> None:
        self.inner = inner
        self.fault = fault

    def create(self, thread: Thread) -> Thread:
        return self.inner.create(thread)

    def load(self, thread_id: str) -> Thread:
        return self.inner.load(thread_id)

    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        intent = any(isinstance(e, ToolCall) and e.tool == "charge" for e in events)
        result = any(isinstance(e, ToolResult) and e.tool == "charge" for e in events)
        if intent and self.fault.fire("before intent commit"):
            raise SystemExit("crash before the intent commit")
        if result and self.fault.fire("after tool, before result commit"):
            raise SystemExit("crash after the tool ran, before its result was committed")
        committed = self.inner.append(thread_id, expected_version, events)
        if intent and self.fault.fire("after intent, before tool"):
            raise SystemExit("crash after the intent commit, before the tool ran")
        if result and self.fault.fire("after result, before return"):
            raise SystemExit("crash after the result commit, before returning to Step Functions")
        return committed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _brain(request: LLMRequest) -> Say:
    if any(isinstance(e, ToolResult) and e.tool == "charge" for e in request.events):
        return Say("done_for_now", {"answer": "charged"})
    if any(isinstance(e, Error) and e.kind == "outcome_unknown" for e in request.events):
        return Say("done_for_now", {"answer": "not sure the charge happened; a human was asked"})
    return Say("charge", {"cents": 500})


@dataclass
class Kit:
    payments: PaymentsService
    fault: Fault
    agent: Agent
    llm: ScriptedLLM


def _install(stack: LocalStack, *, idempotent: bool, point: str) -> Kit:
    payments = PaymentsService(dedupe=idempotent)

    def charge(_: ChargeArgs, ctx: ToolContext) -> dict[str, Any]:
        return payments.charge(ctx.idempotency_key)

    agent = Agent(
        name="payer",
        description="charges once",
        prompt_id="calculator",
        prompt_version=1,
        model="scripted:payer",
        tools=(Tool("charge", "Charge the card.", ChargeArgs, charge, idempotent=idempotent),),
    )
    fault = Fault(point)
    llm = ScriptedLLM(_brain, name="payer")
    rt = stack.rt
    rt.agents = {**AGENTS, agent.name: agent}
    rt.use_provider_config(ProviderConfig(scripted=lambda n: llm if n == "payer" else scripted_model(n)))
    rt.threads = FaultyStore(rt.threads, fault)
    _inject_aws_faults(rt.clients["dynamodb"], rt.clients["s3"], fault)
    return Kit(payments, fault, agent, llm)


class _ErrorResponse:
    """What botocore needs of an HTTP response to raise the service's error."""

    def __init__(self, status: int) -> None:
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""


def _inject_aws_faults(dynamodb: Any, s3: Any, fault: Fault) -> None:
    """The services fail once, as AWS does after the SDK's own retries gave up: DynamoDB throttles the
    intent commit, S3 answers 503 SlowDown to the offloaded result."""

    def throttle(params: dict[str, Any], **_: Any) -> Any:
        body = params.get("body") or b""  # the serialized request: does it commit a tool_call intent?
        intent = b'tool_call"}' in (body if isinstance(body, bytes) else body.encode()).replace(b" ", b"")
        if intent and fault.fire("dynamodb throttles"):
            error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate of requests exceeds"}
            return _ErrorResponse(400), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}
        return None

    def slow_down(**_: Any) -> Any:
        if fault.fire("s3 fails"):
            error = {"Code": "SlowDown", "Message": "Please reduce your request rate."}
            return _ErrorResponse(503), {"Error": error, "ResponseMetadata": {"HTTPStatusCode": 503}}
        return None

    for client, event, hook in (
        (dynamodb, _THROTTLED, throttle),
        (s3, _SLOWED, slow_down),
    ):
        client.meta.events.register(event, hook, unique_id=f"fault:{event}")


_THROTTLED, _SLOWED = "before-call.dynamodb.PutItem", "before-call.s3.PutObject"


def _remove_aws_faults(dynamodb: Any, s3: Any) -> None:
    for client, event in ((dynamodb, _THROTTLED), (s3, _SLOWED)):
        client.meta.events.unregister(event, unique_id=f"fault:{event}")


@pytest.fixture(scope="module")
def shared_stack(shared: Shared) -> Iterator[LocalStack]:
    with shared.lease({"POWERTOOLS_LOG_LEVEL": "ERROR"}) as running:
        yield running


POINTS = (
    "before intent commit",
    "after intent, before tool",
    "after tool, before result commit",
    "after result, before return",
    "dynamodb throttles",
    "s3 fails",
)


def _check_log(thread: Thread) -> None:
    """Complete, in order, never duplicated: one intent and at most one outcome per call id."""
    assert [e.seq for e in thread.events] == list(range(thread.version))
    intents = Counter(e.call_id for e in thread.events if isinstance(e, ToolCall))
    outcomes = Counter(
        e.call_id for e in thread.events if isinstance(e, ToolResult | Error) and getattr(e, "call_id", None)
    )
    assert all(n == 1 for n in intents.values()), intents
    assert all(n == 1 for n in outcomes.values()), outcomes
    assert set(outcomes) <= set(intents)


@pytest.mark.parametrize("idempotent", [True, False], ids=["idempotent", "non-idempotent"])
@pytest.mark.parametrize("point", POINTS)
def test_fault_matrix(shared_stack: LocalStack, point: str, idempotent: bool) -> None:
    stack = shared_stack
    rt = stack.rt
    original_threads, original_agents, original_config = rt.threads, rt.agents, rt.provider_config
    try:
        kit = _install(stack, idempotent=idempotent, point=point)
        thread = stack.launch("payer", f"charge 500 ({point}, {idempotent})")
        final = stack.wait(thread.id, timeout=60)
        stack.wait_idle()
        state = fold(final)
        assert kit.fault.fired, f"the fault at {point!r} never fired"
        _check_log(final)
        charges = [e for e in final.events if isinstance(e, ToolCall) and e.tool == "charge"]
        assert len(charges) == 1
        key = f"{final.id}:{charges[0].call_id}"
        unknown = [e for e in final.events if isinstance(e, Error) and e.kind == "outcome_unknown"]
        if idempotent:
            assert kit.payments.effects == {key: 1}, "an idempotent tool's effect happens exactly once"
            assert state.status == "done"
            assert not unknown
            outcome = f"done; effect x{kit.payments.effects[key]}, calls x{kit.payments.calls[key]}"
        else:
            assert kit.payments.calls[key] <= 1, "a non-idempotent tool never runs twice"
            if point in ("after intent, before tool", "after tool, before result commit", "s3 fails"):
                # the retry cannot tell these apart (S3 failing fails the result commit): it must not guess, so it asks
                ran = kit.payments.calls[key]
                assert ran == (0 if point == "after intent, before tool" else 1)
                assert len(unknown) == 1
                assert state.status == "awaiting_human"
                request = state.open_request
                assert isinstance(request, HumanRequest)
                assert request.origin == "ledger"
                outcome = f"outcome_unknown -> asks a human; ran x{ran}"
            else:
                assert not unknown
                assert state.status == "done"
                outcome = f"done; ran x{kit.payments.calls[key]}"
        assert stack.execution_status(stack.execution_arn(final.id)) in ("SUCCEEDED", "RUNNING")
        RESULTS.append((point, "idempotent" if idempotent else "non-idempotent", outcome))
    finally:
        _remove_aws_faults(rt.clients["dynamodb"], rt.clients["s3"])
        rt.threads, rt.agents = original_threads, original_agents
        rt.use_provider_config(original_config)


def test_print_fault_table(capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest) -> None:
    """Prints the matrix that the runs of test_fault_matrix before it filled in: all of them in file order."""
    items = request.session.items
    ran = sum(1 for item in items[: items.index(request.node)] if item.name.startswith("test_fault_matrix["))
    if not RESULTS:
        pytest.skip("run together with test_fault_matrix")
    assert len(RESULTS) == ran, "every cell that ran recorded its outcome once"
    width = max(len(p) for p, _, _ in RESULTS)
    lines = [f"{'fault point':<{width}}  {'tool':<14}  outcome", "-" * (width + 50)]
    lines += [f"{p:<{width}}  {k:<14}  {o}" for p, k, o in RESULTS]
    with capsys.disabled():
        print("\n" + "\n".join(lines))
