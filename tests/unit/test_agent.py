"""The step's deterministic control flow (Factors 8, 9, 12), with explicit scripts on small test agents.

Every test agent's tools append to a :class:`Recorder`, so a test can say exactly which tool ran, how
often, with what arguments, and what had been checkpointed at the moment it ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.agent import Agent, Limits, Prefetch, StepContext, StepOutcome, step
from core.kernel.context import render
from core.kernel.events import (
    Done,
    Error,
    Event,
    Failed,
    HumanRequest,
    LLMCall,
    Paused,
    ToolCall,
    ToolResult,
    ToolStarted,
    UserInput,
)
from core.kernel.model import LLMRequest, LLMRequestError, LLMResponse, RetryableLLMError
from core.kernel.pricing import cost_usd
from core.kernel.prompts import PromptLibrary
from core.kernel.thread import Thread, fold, stale_results, start_thread
from core.kernel.tools import Policy, Tool, ToolContext
from tests.unit.conftest import FIXED_NOW, Driver, MakeCtx, respond

PROMPT = """---
id: tester
version: {version}
description: A test agent's prompt.
---
You are ${{agent}} (prompt v{version}). Tools: ${{tools}}.
"""


class N(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 0


class Env(BaseModel):
    model_config = ConfigDict(extra="forbid")

    env: str


class Crash(BaseException):
    """Not an Exception: like a timeout, it ends the step without the tool registry catching it."""


@dataclass
class Recorder:
    """What the test agent's tools did, and what the checkpoint had committed when they did it."""

    runs: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)
    checkpoints: list[tuple[Event, ...]] = field(default_factory=list)
    committed_when_run: list[list[str]] = field(default_factory=list)
    crash_on: set[str] = field(default_factory=set)

    def checkpoint(self, events: Sequence[Event]) -> None:
        self.checkpoints.append(tuple(events))

    def count(self, tool: str) -> int:
        return sum(1 for name, _, _ in self.runs if name == tool)

    def tool(self, name: str) -> Callable[[BaseModel, ToolContext], Any]:
        def run(args: BaseModel, ctx: ToolContext) -> Any:
            self.runs.append((name, args.model_dump(), ctx.call_id))
            self.committed_when_run.append([e.type for batch in self.checkpoints for e in batch])
            if name in self.crash_on:
                raise Crash(name)
            if name == "fragile":
                raise RuntimeError("the backend said no")
            if name == "weird":
                return {1: "one", "b": (2, 3)}
            return {"ran": name, **args.model_dump()}

        return run


def _deploy_policy(args: Env) -> Policy:
    return "deny" if args.env == "moon" else "needs_approval"


def make_agent(
    rec: Recorder,
    *,
    limits: Limits | None = None,
    prefetch: tuple[Prefetch, ...] = (),
    prompt_version: int = 1,
) -> Agent:
    tools: tuple[Tool[Any], ...] = (
        Tool("ping", "auto and idempotent", N, rec.tool("ping"), idempotent=True),
        Tool("send", "auto, not idempotent", N, rec.tool("send")),
        Tool("deploy", "needs approval, not idempotent", Env, rec.tool("deploy"), policy=_deploy_policy),
        Tool("nuke", "always denied", N, rec.tool("nuke"), policy="deny"),
        Tool("fragile", "always raises", N, rec.tool("fragile")),
        Tool("weird", "returns odd Python", N, rec.tool("weird")),
        Tool("fetch", "a read for prefetch", N, rec.tool("fetch"), idempotent=True),
    )
    return Agent(
        name="tester",
        description="A test agent.",
        prompt_id="tester",
        prompt_version=prompt_version,
        tools=tools,
        model="scripted:tester",
        limits=limits or Limits(),
        prefetch=prefetch,
    )


@pytest.fixture
def prompts(tmp_path: Path) -> PromptLibrary:
    for version in (1, 2):
        path = tmp_path / "tester" / f"v{version}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PROMPT.format(version=version), encoding="utf-8")
    return PromptLibrary(tmp_path)


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def ctx(make_ctx: MakeCtx, prompts: PromptLibrary, rec: Recorder) -> StepContext:
    return make_ctx(prompts=prompts, checkpoint=rec.checkpoint)


def _new(text: str = "go", **labels: str) -> Thread:
    return start_thread("t_1", "tester", text, now=FIXED_NOW, **labels)


def _types(events: Sequence[Event]) -> list[str]:
    return [e.type for e in events]


def _step(thread: Thread, agent: Agent, llm: Any, ctx: StepContext) -> tuple[StepOutcome, Thread]:
    outcome = step(thread, agent, llm, ctx)
    return outcome, thread.extend(outcome.events)


def _one(events: Sequence[Event], kind: type[Any]) -> Any:
    found = [e for e in events if isinstance(e, kind)]
    assert len(found) == 1, f"expected one {kind.__name__} in {_types(events)}"
    return found[0]


# --- one model step --------------------------------------------------------------------------------


def test_an_auto_tool_runs_in_the_same_step(rec: Recorder, ctx: StepContext) -> None:
    llm = ScriptedLLM([Say("ping", {"n": 1})])

    outcome, thread = _step(_new(), make_agent(rec), llm, ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "tool_result"]
    assert outcome.route == "continue"
    assert (outcome.llm_calls, outcome.tool_runs) == (1, 1)
    assert rec.runs == [("ping", {"n": 1}, "call_1")]
    result = _one(outcome.events, ToolResult)
    assert (result.call_id, result.tool, result.result) == ("call_1", "ping", {"ran": "ping", "n": 1})
    assert [e.seq for e in outcome.events] == [1, 2, 3]
    assert all(e.ts == FIXED_NOW for e in outcome.events)
    assert fold(thread).status == "running"
    assert fold(thread).pending is None


def test_the_llm_call_records_model_prompt_tokens_and_cost(rec: Recorder, ctx: StepContext) -> None:
    llm = ScriptedLLM([Say("ping", {"n": 1})])

    outcome, _ = _step(_new(), make_agent(rec), llm, ctx)

    call = _one(outcome.events, LLMCall)
    request = llm.calls[0]
    assert call.model == request.model == "scripted:tester"
    assert (call.prompt_id, call.prompt_hash) == ("tester/v1", request.prompt_hash)
    assert call.input_tokens > 0
    assert call.output_tokens > 0
    assert call.cost_usd == cost_usd("scripted:tester", call.input_tokens, call.output_tokens) > 0
    assert call.output == {"name": "ping", "arguments": {"n": 1}}


def test_the_model_gets_the_rendered_prompt_context_and_offered_tools(rec: Recorder, ctx: StepContext) -> None:
    llm = ScriptedLLM([Say("ping", {})])
    thread = _new("hello <there>")

    step(thread, make_agent(rec), llm, ctx)

    request = llm.calls[0]
    assert request.system == (
        "You are tester (prompt v1). Tools: ping, send, deploy, nuke, fragile, weird, fetch, "
        "request_human_input, done_for_now.\n"
    )
    assert request.context == render(thread) == "<user_input>hello &lt;there&gt;</user_input>"
    assert [t.name for t in request.tools] == [
        "ping",
        "send",
        "deploy",
        "fragile",
        "weird",
        "fetch",
        "request_human_input",
        "done_for_now",
    ]
    assert tuple(request.events) == thread.events


def test_a_model_override_is_recorded_and_priced(rec: Recorder, make_ctx: MakeCtx, prompts: PromptLibrary) -> None:
    llm = ScriptedLLM([Say("ping", {})])

    outcome = step(_new(), make_agent(rec), llm, make_ctx(prompts=prompts, model="openai:gpt-4o-mini"))

    call = _one(outcome.events, LLMCall)
    assert call.model == llm.calls[0].model == "openai:gpt-4o-mini"
    assert call.cost_usd == cost_usd("openai:gpt-4o-mini", call.input_tokens, call.output_tokens)


def test_done_for_now_finishes_with_the_answer(rec: Recorder, ctx: StepContext) -> None:
    outcome, thread = _step(_new(), make_agent(rec), ScriptedLLM([Say("done_for_now", {"answer": "42"})]), ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "done"]
    assert outcome.route == "done"
    assert (fold(thread).status, fold(thread).answer) == ("done", "42")
    assert rec.runs == []


def test_a_question_from_the_model_waits_for_a_human(rec: Recorder, ctx: StepContext) -> None:
    ask = Say(
        "request_human_input",
        {"question": "Which env?", "urgency": "high", "format": "multiple_choice", "choices": ["a", "b"]},
    )

    outcome, thread = _step(_new(), make_agent(rec), ScriptedLLM([ask]), ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "human_request"]
    assert outcome.route == "await_human"
    request = _one(outcome.events, HumanRequest)
    assert (request.kind, request.origin, request.call_id) == ("question", "model", "call_1")
    assert (request.question, request.urgency, request.format, request.choices) == (
        "Which env?",
        "high",
        "multiple_choice",
        ["a", "b"],
    )
    assert fold(thread).status == "awaiting_human"


# --- approvals -------------------------------------------------------------------------------------


def _awaiting_deploy(rec: Recorder, ctx: StepContext, *later: Say) -> tuple[Agent, ScriptedLLM, Thread]:
    agent = make_agent(rec)
    llm = ScriptedLLM([Say("deploy", {"env": "prod"}), *later])
    outcome, thread = _step(_new(), agent, llm, ctx)
    assert outcome.route == "await_human"
    return agent, llm, thread


def test_a_tool_needing_approval_waits_and_does_not_run(rec: Recorder, ctx: StepContext) -> None:
    _, _, thread = _awaiting_deploy(rec, ctx)

    assert _types(thread.events) == ["user_input", "llm_call", "tool_call", "human_request"]
    request = _one(thread.events, HumanRequest)
    assert (request.kind, request.origin, request.call_id, request.format) == ("approval", "policy", "call_1", "yes_no")
    assert request.question == "Approve deploy with env='prod'?"
    assert request.context == "needs approval, not idempotent"
    assert rec.runs == []
    assert rec.checkpoints == []
    state = fold(thread)
    assert state.status == "awaiting_human"
    assert state.pending is not None
    assert state.pending.state == "awaiting_approval"


def test_stepping_while_approval_is_pending_changes_nothing(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx)

    outcome = step(thread, agent, llm, ctx)

    assert (outcome.events, outcome.route, outcome.llm_calls) == ((), "await_human", 0)
    assert len(llm.calls) == 1
    assert rec.runs == []


def test_an_approved_tool_runs_once_in_the_next_step_without_a_model_call(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx, Say("done_for_now", {"answer": "deployed"}))
    thread = respond(thread, decision="approve")

    outcome, thread = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["tool_started", "tool_result"]
    assert outcome.route == "continue"
    assert (outcome.llm_calls, outcome.tool_runs) == (0, 1)
    assert len(llm.calls) == 1
    assert rec.runs == [("deploy", {"env": "prod"}, "call_1")]
    assert rec.checkpoints == [(outcome.events[0],)]
    assert rec.committed_when_run == [["tool_started"]]
    assert outcome.checkpointed == 1
    assert outcome.uncommitted == (outcome.events[1],)

    final, thread = _step(thread, agent, llm, ctx)

    assert final.route == "done"
    assert rec.count("deploy") == 1


def test_a_rejected_call_is_shown_to_the_model_and_never_runs(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx, Say("done_for_now", {"answer": "not deployed"}))
    thread = respond(thread, decision="reject", comment="too risky today")

    outcome, thread = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "done"]
    assert rec.runs == []
    assert llm.calls[-1].context.endswith("\n← NOT RUN - rejected by alice: too risky today")


def test_an_expired_approval_never_runs(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx, Say("done_for_now", {"answer": "expired"}))
    thread = respond(thread, decision="expired", by="system")

    outcome, _ = _step(thread, agent, llm, ctx)

    assert outcome.route == "done"
    assert rec.runs == []
    assert "\n← NOT RUN - approval expired" in llm.calls[-1].context


def test_an_edited_call_runs_with_the_edited_args(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx)
    thread = respond(thread, decision="edit", args={"env": "staging"})

    outcome, _ = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["tool_started", "tool_result"]
    assert rec.runs == [("deploy", {"env": "staging"}, "call_1")]
    assert _one(outcome.events, ToolResult).result == {"ran": "deploy", "env": "staging"}


def test_an_edit_with_invalid_args_is_an_error_and_does_not_run(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx)
    thread = respond(thread, decision="edit", args={"env": 3, "extra": True})

    outcome, thread = _step(thread, agent, llm, ctx)

    error = _one(outcome.events, Error)
    assert (error.kind, error.call_id, error.tool) == ("invalid_args", "call_1", "deploy")
    assert "env: Input should be a valid string" in error.message
    assert "extra: Extra inputs are not permitted" in error.message
    assert outcome.route == "continue"
    assert rec.runs == []
    assert fold(thread).pending is None


def test_an_edit_into_denied_args_does_not_run(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx)
    thread = respond(thread, decision="edit", args={"env": "moon"})

    outcome, _ = _step(thread, agent, llm, ctx)

    assert rec.runs == []
    assert _one(outcome.events, Error).kind == "denied"


# --- policy deny, errors and escalation -------------------------------------------------------------


@pytest.mark.parametrize(("say", "tool"), [(Say("nuke", {}), "nuke"), (Say("deploy", {"env": "moon"}), "deploy")])
def test_a_denied_call_is_an_error_and_never_runs(rec: Recorder, ctx: StepContext, say: Say, tool: str) -> None:
    outcome, thread = _step(_new(), make_agent(rec), ScriptedLLM([say]), ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "error"]
    error = _one(outcome.events, Error)
    assert (error.kind, error.tool, error.call_id) == ("denied", tool, "call_1")
    assert error.message == f"{tool} is not allowed with these arguments"
    assert outcome.route == "continue"
    assert rec.runs == []
    assert outcome.tool_runs == 0
    assert fold(thread).pending is None


def test_a_failing_tool_becomes_an_error_event(rec: Recorder, ctx: StepContext) -> None:
    outcome, thread = _step(_new(), make_agent(rec), ScriptedLLM([Say("fragile", {})]), ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "error"]
    error = _one(outcome.events, Error)
    assert (error.kind, error.message, error.call_id) == ("tool_failed", "RuntimeError: the backend said no", "call_1")
    assert outcome.route == "continue"
    assert fold(thread).consecutive_errors == 1


def test_three_bad_outputs_in_a_row_escalate_to_a_human(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_consecutive_errors=3))
    llm = ScriptedLLM([Say.text("I would rather chat."), Say("teleport", {}), Say("ping", '{"n": "many"')])
    thread = _new()
    routes, kinds = [], []
    for _ in range(3):
        outcome, thread = _step(thread, agent, llm, ctx)
        routes.append(outcome.route)
        kinds.append(next(e.kind for e in outcome.events if isinstance(e, Error)))

    assert routes == ["continue", "continue", "await_human"]
    assert kinds == ["no_tool_call", "unknown_tool", "invalid_json"]
    assert _types(outcome.events) == ["llm_call", "error", "human_request"]
    request = _one(outcome.events, HumanRequest)
    assert (request.kind, request.origin, request.urgency) == ("question", "errors", "high")
    assert request.question.startswith("The tester agent stopped: 3 errors in a row, the last: arguments are not valid")
    assert fold(thread).status == "awaiting_human"
    assert rec.runs == []


def test_an_answer_to_the_escalation_resets_the_count(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_consecutive_errors=2))
    llm = ScriptedLLM(
        [Say.text("a"), Say.text("b"), Say.text("c"), Say("ping", {}), Say("done_for_now", {"answer": "ok"})]
    )

    run = Driver(ctx)(agent, "go", [{"decision": "answer", "answer": "use a tool"}], llm=llm)

    assert run.routes == ["continue", "await_human", "continue", "continue", "done"]
    events = run.thread.events
    counts = [
        fold(Thread(id="t_1", agent="tester", events=events[: e.seq + 1])).consecutive_errors
        for e in events
        if isinstance(e, Error)
    ]
    assert counts == [1, 2, 1]
    assert rec.count("ping") == 1


def test_repeated_errors_with_on_limit_fail_fail_the_thread(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_consecutive_errors=2, on_limit="fail"))
    llm = ScriptedLLM([Say("fragile", {}), Say("fragile", {"n": 1})])
    _, thread = _step(_new(), agent, llm, ctx)

    outcome, thread = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "error", "failed"]
    assert outcome.route == "failed"
    assert fold(thread).failure == "2 errors in a row, the last: RuntimeError: the backend said no"
    assert rec.count("fragile") == 2


def test_text_is_recorded_as_the_model_output(rec: Recorder, ctx: StepContext) -> None:
    outcome = step(_new(), make_agent(rec), ScriptedLLM([Say.text("just text")]), ctx)

    assert _one(outcome.events, LLMCall).output == {"text": "just text"}
    error = _one(outcome.events, Error)
    assert (error.kind, error.message) == ("no_tool_call", "you must answer with exactly one tool call")


# --- limits ----------------------------------------------------------------------------------------


def test_max_steps_asks_a_human_without_calling_the_model(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_steps=2))
    llm = ScriptedLLM([Say("ping", {"n": 1}), Say("ping", {"n": 2}), Say("done_for_now", {"answer": "ok"})])
    thread = _new()
    for _ in range(2):
        _, thread = _step(thread, agent, llm, ctx)

    outcome, thread = _step(thread, agent, llm, ctx)

    assert len(llm.calls) == 2
    assert _types(outcome.events) == ["error", "human_request"]
    error = _one(outcome.events, Error)
    assert (error.kind, error.message) == ("limit", "reached the limit of 2 model calls")
    request = _one(outcome.events, HumanRequest)
    assert (request.origin, request.kind) == ("limit", "question")
    assert outcome.route == "await_human"

    thread = respond(thread, decision="answer", answer="carry on")
    outcome, thread = _step(thread, agent, llm, ctx)

    assert outcome.route == "done"
    assert len(llm.calls) == 3
    assert fold(thread).steps == 3


def test_max_steps_with_on_limit_fail_fails_the_thread(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_steps=1, on_limit="fail"))
    llm = ScriptedLLM([Say("ping", {}), Say("ping", {"n": 1})])
    _, thread = _step(_new(), agent, llm, ctx)

    outcome, thread = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["error", "failed"]
    assert outcome.route == "failed"
    assert _one(outcome.events, Failed).reason == "reached the limit of 1 model calls"
    assert (fold(thread).status, fold(thread).failure) == ("failed", "reached the limit of 1 model calls")
    assert step(thread, agent, llm, ctx).route == "failed"
    assert len(llm.calls) == 1


def test_the_cost_budget_stops_the_next_step(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_cost_usd=0.0001))
    llm = ScriptedLLM([Say("ping", {"n": i}) for i in range(20)])
    thread = _new()
    outcomes = []
    for _ in range(20):
        outcome, thread = _step(thread, agent, llm, ctx)
        outcomes.append(outcome)
        if outcome.route != "continue":
            break

    spent = fold(thread).cost_usd
    assert outcomes[-1].route == "await_human"
    assert _types(outcomes[-1].events) == ["error", "human_request"]
    error = _one(outcomes[-1].events, Error)
    assert error.message == f"spent ${spent:.4f}, the budget is $0.0001"
    assert spent >= 0.0001
    assert sum(c.cost_usd for c in thread.events if isinstance(c, LLMCall)) == pytest.approx(spent)
    assert len(llm.calls) == len(outcomes) - 1 >= 1


def test_the_same_call_repeated_escalates_instead_of_running(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_repeats=3))
    llm = ScriptedLLM([Say("send", {"n": 7})] * 3)
    thread = _new()
    routes = []
    for _ in range(3):
        outcome, thread = _step(thread, agent, llm, ctx)
        routes.append(outcome.route)

    assert routes == ["continue", "continue", "await_human"]
    assert rec.count("send") == 2
    assert _types(outcome.events) == ["llm_call", "tool_call", "error", "human_request"]
    error = _one(outcome.events, Error)
    assert (error.kind, error.call_id) == ("limit", "call_3")
    assert error.message == "send was called 3 times with the same arguments; not run"
    assert _one(outcome.events, HumanRequest).origin == "limit"  # a human answer resets the repeat count
    assert fold(thread).pending is None


def test_a_human_answer_to_a_repeat_escalation_lets_the_agent_try_again(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_repeats=2))
    llm = ScriptedLLM([Say("send", {"n": 7})] * 3)
    thread = _new()
    for _ in range(2):
        outcome, thread = _step(thread, agent, llm, ctx)
    assert outcome.route == "await_human"
    thread = respond(thread, decision="answer", answer="try once more")
    outcome, thread = _step(thread, agent, llm, ctx)
    assert outcome.route == "continue"
    assert rec.count("send") == 2


def test_the_same_tool_with_other_args_is_not_a_repeat(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_repeats=2))
    llm = ScriptedLLM([Say("send", {"n": i}) for i in range(4)])
    thread = _new()
    for _ in range(4):
        outcome, thread = _step(thread, agent, llm, ctx)
        assert outcome.route == "continue"

    assert rec.count("send") == 4


# --- checkpoint and the effect ledger -------------------------------------------------------------------


def test_the_intent_is_checkpointed_before_the_tool_runs(rec: Recorder, ctx: StepContext) -> None:
    outcome = step(_new(), make_agent(rec), ScriptedLLM([Say("send", {"n": 1})]), ctx)

    assert len(rec.checkpoints) == 1
    assert _types(rec.checkpoints[0]) == ["llm_call", "tool_call"]
    assert rec.checkpoints[0] == outcome.events[:2]
    assert rec.committed_when_run == [["llm_call", "tool_call"]]
    assert outcome.checkpointed == 2
    assert _types(outcome.uncommitted) == ["tool_result"]


def test_without_a_checkpoint_nothing_is_marked_committed(
    rec: Recorder, make_ctx: MakeCtx, prompts: PromptLibrary
) -> None:
    outcome = step(_new(), make_agent(rec), ScriptedLLM([Say("send", {})]), make_ctx(prompts=prompts))

    assert outcome.checkpointed == 0
    assert outcome.uncommitted == outcome.events


def test_a_step_that_only_decides_does_not_checkpoint(rec: Recorder, ctx: StepContext) -> None:
    outcome = step(_new(), make_agent(rec), ScriptedLLM([Say("done_for_now", {"answer": "x"})]), ctx)

    assert rec.checkpoints == []
    assert outcome.uncommitted == outcome.events


def _crashed_mid_tool(rec: Recorder, ctx: StepContext, tool: str) -> tuple[Agent, ScriptedLLM, Thread]:
    """Run a step whose tool is killed mid-run, and return the thread as the store had it (the checkpoint)."""
    store = MemoryThreadStore()
    thread = store.create(_new())
    agent = make_agent(rec)
    llm = ScriptedLLM([Say(tool, {"n": 1}), Say("done_for_now", {"answer": "finished"})])
    rec.crash_on.add(tool)

    def save(events: Sequence[Event]) -> None:
        store.append("t_1", store.load("t_1").version, events)

    saving = StepContext(prompts=ctx.prompts, clock=ctx.clock, ids=ctx.ids, checkpoint=save)
    with pytest.raises(Crash):
        step(thread, agent, llm, saving)
    rec.crash_on.clear()
    return agent, llm, store.load("t_1")


def test_an_idempotent_intent_without_result_is_run_again_once(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _crashed_mid_tool(rec, ctx, "ping")
    assert _types(thread.events) == ["user_input", "llm_call", "tool_call"]
    pending = fold(thread).pending
    assert pending is not None
    assert pending.state == "dispatched"

    outcome, thread = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["tool_result"]
    assert outcome.route == "continue"
    assert outcome.llm_calls == 0
    assert rec.runs == [("ping", {"n": 1}, "call_1"), ("ping", {"n": 1}, "call_1")]
    assert _one(outcome.events, ToolResult).call_id == "call_1"

    final, _ = _step(thread, agent, llm, ctx)
    assert final.route == "done"
    assert rec.count("ping") == 2


def test_a_non_idempotent_intent_without_result_asks_a_human(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _crashed_mid_tool(rec, ctx, "send")

    outcome, thread = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["error", "human_request"]
    error = _one(outcome.events, Error)
    assert (error.kind, error.call_id, error.tool) == ("outcome_unknown", "call_1", "send")
    request = _one(outcome.events, HumanRequest)
    assert (request.origin, request.urgency, request.call_id) == ("ledger", "high", None)
    assert request.question.startswith("Did send with {'n': 1} take effect?")
    assert outcome.route == "await_human"
    assert rec.count("send") == 1
    assert len(llm.calls) == 1
    assert fold(thread).pending is None
    assert "outcome_unknown" in render(thread)


def test_an_approved_non_idempotent_tool_that_started_is_not_run_again(rec: Recorder, ctx: StepContext) -> None:
    agent, llm, thread = _awaiting_deploy(rec, ctx)
    thread = respond(thread, decision="approve")
    thread = thread.extend([ToolStarted(seq=thread.next_seq, ts=FIXED_NOW, call_id="call_1")])

    outcome, _ = _step(thread, agent, llm, ctx)

    assert _types(outcome.events) == ["error", "human_request"]
    assert _one(outcome.events, Error).kind == "outcome_unknown"
    assert rec.runs == []


def test_an_intent_for_a_tool_the_agent_no_longer_has_is_closed_with_an_error(rec: Recorder, ctx: StepContext) -> None:
    thread = _new().extend([ToolCall(seq=1, ts=FIXED_NOW, call_id="c_old", tool="retired", args={})])

    outcome, thread = _step(thread, make_agent(rec), ScriptedLLM([]), ctx)

    error = _one(outcome.events, Error)
    assert (error.kind, error.call_id, error.message) == (
        "unknown_tool",
        "c_old",
        "tool 'retired' is no longer available",
    )
    assert fold(thread).pending is None


# --- statuses that do not step ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last", "route"),
    [
        (Done(seq=1, ts=FIXED_NOW, answer="x"), "done"),
        (Failed(seq=1, ts=FIXED_NOW, reason="x"), "failed"),
        (Paused(seq=1, ts=FIXED_NOW), "paused"),
        (HumanRequest(seq=1, ts=FIXED_NOW, kind="question", approval_id="a", question="?"), "await_human"),
    ],
)
def test_a_thread_that_is_not_running_makes_no_model_call(
    rec: Recorder, ctx: StepContext, last: Event, route: str
) -> None:
    llm = ScriptedLLM([Say("ping", {})])

    outcome = step(_new().extend([last]), make_agent(rec), llm, ctx)

    assert (outcome.events, outcome.route, outcome.llm_calls) == ((), route, 0)
    assert llm.calls == []
    assert rec.runs == []


def test_a_new_input_after_done_runs_again(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec)
    llm = ScriptedLLM([Say("done_for_now", {"answer": "one"}), Say("done_for_now", {"answer": "two"})])
    _, thread = _step(_new(), agent, llm, ctx)
    thread = thread.extend([UserInput(seq=thread.next_seq, ts=FIXED_NOW, text="again")])

    outcome, thread = _step(thread, agent, llm, ctx)

    assert outcome.route == "done"
    assert fold(thread).answer == "two"


# --- model errors ----------------------------------------------------------------------------------


@dataclass
class Raising:
    error: Exception
    calls: int = 0

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        raise self.error


def test_a_refused_request_becomes_an_llm_error_event(rec: Recorder, ctx: StepContext) -> None:
    llm = Raising(LLMRequestError("openai", "context length exceeded", status=400))

    outcome, thread = _step(_new(), make_agent(rec), llm, ctx)

    assert _types(outcome.events) == ["llm_call", "error"]
    call = _one(outcome.events, LLMCall)
    assert (call.input_tokens, call.output_tokens, call.cost_usd) == (0, 0, 0.0)
    assert call.output == {"error": "openai: context length exceeded (HTTP 400)"}
    error = _one(outcome.events, Error)
    assert (error.kind, error.message) == ("llm_error", "openai: context length exceeded (HTTP 400)")
    assert outcome.route == "continue"
    assert fold(thread).consecutive_errors == 1


def test_an_exhausted_script_is_a_refused_request(rec: Recorder, ctx: StepContext) -> None:
    outcome = step(_new(), make_agent(rec), ScriptedLLM([]), ctx)

    assert _one(outcome.events, Error).message == "scripted: script has 0 answers; call 1 asked"


def test_a_retryable_model_error_is_raised_for_the_runtime_to_retry(rec: Recorder, ctx: StepContext) -> None:
    llm = Raising(RetryableLLMError("anthropic", "overloaded", status=529))

    with pytest.raises(RetryableLLMError, match="overloaded"):
        step(_new(), make_agent(rec), llm, ctx)

    assert llm.calls == 1
    assert rec.checkpoints == []


# --- prefetch --------------------------------------------------------------------------------------


def test_prefetch_runs_before_the_first_model_call_and_only_once(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, prefetch=(Prefetch("fetch", {"n": 7}),))
    llm = ScriptedLLM([Say("ping", {}), Say("done_for_now", {"answer": "ok"})])

    first, thread = _step(_new(), agent, llm, ctx)
    second, thread = _step(thread, agent, llm, ctx)

    assert _types(first.events) == ["tool_call", "tool_result", "llm_call", "tool_call", "tool_result"]
    pre = first.events[0]
    assert isinstance(pre, ToolCall)
    assert (pre.tool, pre.args, pre.prefetch, pre.call_id) == ("fetch", {"n": 7}, True, "pre_1")
    assert not any(isinstance(e, ToolCall) and e.prefetch for e in second.events)
    assert rec.count("fetch") == 1
    assert "\n→ fetch(n=7) [run by code]\n← n=7 ran=fetch" in llm.calls[0].context
    assert len(llm.calls[0].events) == 3
    assert fold(thread).calls_by_signature == {"ping:[('n', 0)]": 1, "done_for_now:[('answer', 'ok')]": 1}


def test_prefetch_args_can_be_a_function_of_the_thread(rec: Recorder, ctx: StepContext) -> None:
    def by_input_length(thread: Thread) -> dict[str, Any]:
        first = thread.events[0]
        assert isinstance(first, UserInput)
        return {"n": len(first.text)}

    agent = make_agent(rec, prefetch=(Prefetch("fetch", by_input_length),))

    step(_new("four"), agent, ScriptedLLM([Say("done_for_now", {"answer": "x"})]), ctx)

    assert rec.runs[0] == ("fetch", {"n": 4}, "pre_1")


def test_prefetch_with_invalid_args_is_a_programming_error(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, prefetch=(Prefetch("fetch", {"n": "lots"}),))

    with pytest.raises(ValueError, match="agent tester: prefetch fetch has invalid args: n: Input should be"):
        step(_new(), agent, ScriptedLLM([]), ctx)


@pytest.mark.parametrize("tool", ["nothing", "done_for_now"])
def test_prefetch_must_name_a_runnable_tool_of_the_agent(rec: Recorder, tool: str) -> None:
    agent = make_agent(rec, prefetch=(Prefetch(tool),))

    with pytest.raises(ValueError, match=f"agent tester: prefetch names '{tool}', which is not one of its tools"):
        _ = agent.registry


# --- threads, agents and prompts ---------------------------------------------------------------------


def test_a_thread_of_another_agent_is_refused(rec: Recorder, ctx: StepContext) -> None:
    thread = start_thread("t_9", "calculator", "hi", now=FIXED_NOW)

    with pytest.raises(ValueError, match="thread t_9 belongs to agent 'calculator', not 'tester'"):
        step(thread, make_agent(rec), ScriptedLLM([]), ctx)


def test_the_prompt_version_pinned_at_start_is_used(rec: Recorder, ctx: StepContext, prompts: PromptLibrary) -> None:
    agent = make_agent(rec, prompt_version=2)
    pinned = ScriptedLLM([Say("ping", {})])
    current = ScriptedLLM([Say("ping", {})])

    pinned_call = _one(step(_new(prompt_version="1"), agent, pinned, ctx).events, LLMCall)
    current_call = _one(step(_new(), agent, current, ctx).events, LLMCall)

    assert (pinned_call.prompt_id, pinned_call.prompt_hash) == ("tester/v1", prompts.load("tester", 1).hash)
    assert (current_call.prompt_id, current_call.prompt_hash) == ("tester/v2", prompts.load("tester", 2).hash)
    assert "(prompt v1)" in pinned.calls[0].system
    assert "(prompt v2)" in current.calls[0].system


def test_odd_tool_results_are_stored_as_the_json_a_store_reads_back(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec)
    llm = ScriptedLLM([Say("weird", {}), Say("done_for_now", {"answer": "ok"})])
    _, thread = _step(_new(), agent, llm, ctx)

    outcome, thread = _step(thread, agent, llm, ctx)

    assert outcome.route == "done"
    assert _one(thread.events, ToolResult).result == {"1": "one", "b": [2, 3]}
    assert Thread.from_json(thread.to_json()) == thread
    assert '\n→ weird(n=0)\n← "1"=one b=[2,3]' in llm.calls[1].context


# --- token budget, stale results, result size (Factor 8 limits) -----------------------------------


def test_token_budget_escalates_before_the_next_model_call(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_tokens=40))
    llm = ScriptedLLM([Say("ping", {"n": i}) for i in range(10)])
    thread = _new()
    outcome, thread = _step(thread, agent, llm, ctx)
    used = fold(thread).total_tokens
    assert used >= 40, "one scripted call already spends the tiny budget"
    outcome, thread = _step(thread, agent, llm, ctx)
    assert outcome.route == "await_human"
    assert _one(outcome.events, Error).message == f"used {used} tokens, the budget is 40"
    assert _one(outcome.events, HumanRequest).origin == "limit"
    assert len(llm.calls) == 1


def test_results_that_bring_no_new_information_escalate(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_stale_results=2, max_repeats=99))
    llm = ScriptedLLM([Say("ping", {"n": 1})] * 5)
    thread = _new()
    routes = []
    for _ in range(4):
        outcome, thread = _step(thread, agent, llm, ctx)
        routes.append(outcome.route)
    assert routes == ["continue", "continue", "continue", "await_human"]
    assert stale_results(thread) == 2
    assert _one(outcome.events, Error).message == "its last 2 tool results brought no new information"
    thread = respond(thread, decision="answer", answer="keep going")
    assert stale_results(thread) == 0


def test_a_new_result_resets_the_stale_count(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_stale_results=2, max_repeats=99))
    llm = ScriptedLLM([Say("ping", {"n": 1}), Say("ping", {"n": 1}), Say("ping", {"n": 2}), Say("ping", {"n": 1})])
    thread = _new()
    for _ in range(4):
        outcome, thread = _step(thread, agent, llm, ctx)
        assert outcome.route == "continue"
    assert stale_results(thread) == 1


def test_an_oversized_tool_result_is_refused_not_stored(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_result_bytes=10))
    llm = ScriptedLLM([Say("ping", {"n": 123456})])
    outcome, _ = _step(_new(), agent, llm, ctx)
    error = _one(outcome.events, Error)
    assert error.kind == "tool_failed"
    assert error.message.startswith("the result is ")
    assert error.message.endswith("bytes; the limit is 10 (not stored)")
    assert not [e for e in outcome.events if isinstance(e, ToolResult)]


# --- the per-agent daily budget ---------------------------------------------------------------------------------


def test_daily_budget_asks_a_human_before_the_model_call_and_an_answer_today_lets_it_go_on(
    rec: Recorder, ctx: StepContext
) -> None:

    agent = make_agent(rec, limits=Limits(max_daily_cost_usd=0.5))
    llm = ScriptedLLM([Say("ping", {"n": 1}), Say("ping", {"n": 2})])
    over = replace(ctx, spent_today=0.75)
    outcome, thread = _step(_new(), agent, llm, over)
    assert outcome.route == "await_human"
    assert not llm.calls
    assert _one(outcome.events, Error).message == "the tester agent spent $0.7500 today, its daily budget is $0.5000"
    assert _one(outcome.events, HumanRequest).origin == "limit"
    thread = respond(thread, decision="answer", answer="fine, go on today")
    outcome, thread = _step(thread, agent, llm, over)
    assert outcome.route == "continue"
    assert len(llm.calls) == 1


def test_the_runner_books_each_steps_cost_against_the_agents_day(rec: Recorder, ctx: StepContext) -> None:
    from core.kernel.budget import MemorySpendLedger, day_of  # noqa: PLC0415
    from core.kernel.runner import advance  # noqa: PLC0415

    agent = make_agent(rec, limits=Limits(max_daily_cost_usd=1.0))
    llm = ScriptedLLM([Say("ping", {"n": i}) for i in range(3)])
    store = MemoryThreadStore()
    thread = store.create(_new())
    ledger = MemorySpendLedger()
    seq = thread.version
    for _ in range(3):
        seq = advance(
            store, thread.id, seq, agents={agent.name: agent}, llm_for=lambda _: llm, ctx=ctx, spend=ledger
        ).seq
    spent = ledger.spent(agent.name, day_of(ctx.clock()))
    assert spent == pytest.approx(fold(store.load(thread.id)).cost_usd)
    assert spent > 0


# --- stop reasons: the provider says the answer is unusable -----------------------------------------------------


@dataclass
class Answering:
    """A model that gives one fixed response, stop reason and all, as an adapter would have parsed it."""

    response: LLMResponse
    calls: int = 0

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.calls += 1
        return self.response


TRUNCATED = (
    "the model's output was cut off at the 1024-token output limit (max_output_tokens; openai finish_reason "
    "'length') before the tool call was complete; make the tool call again with shorter arguments"
)


def test_a_call_cut_off_at_the_output_limit_is_output_truncated_not_invalid_json(
    rec: Recorder, ctx: StepContext
) -> None:
    cut = LLMResponse(tool="ping", arguments='{"n": 4', stop_reason="output_truncated", stop_message=TRUNCATED)

    outcome, thread = _step(_new(), make_agent(rec), Answering(cut), ctx)

    assert _types(outcome.events) == ["llm_call", "error"]
    error = _one(outcome.events, Error)
    assert (error.kind, error.message, error.tool) == ("output_truncated", TRUNCATED, "ping")
    assert _one(outcome.events, LLMCall).output == {"name": "ping", "arguments": '{"n": 4'}
    assert outcome.route == "continue"
    assert fold(thread).consecutive_errors == 1
    assert rec.runs == []


def test_a_cut_off_call_whose_fragment_validates_still_does_not_run(rec: Recorder, ctx: StepContext) -> None:
    cut = LLMResponse(tool="send", arguments={}, stop_reason="output_truncated", stop_message=TRUNCATED)

    outcome = step(_new(), make_agent(rec), Answering(cut), ctx)

    assert _one(outcome.events, Error).kind == "output_truncated"
    assert not any(isinstance(e, ToolCall) for e in outcome.events)
    assert rec.runs == []


@pytest.mark.parametrize("problem", ["refused", "guardrail", "malformed_tool_use", "context_window_exceeded"])
def test_each_problem_stop_becomes_an_error_of_its_kind(rec: Recorder, ctx: StepContext, problem: Any) -> None:
    said = f"the provider stopped: {problem}"
    response = LLMResponse(tool=None, text="I won't.", stop_reason=problem, stop_message=said)

    outcome, thread = _step(_new(), make_agent(rec), Answering(response), ctx)

    error = _one(outcome.events, Error)
    assert (error.kind, error.message) == (problem, said)
    assert outcome.route == "continue"
    assert fold(thread).consecutive_errors == 1


def test_a_problem_stop_without_a_message_still_says_what_happened(rec: Recorder, ctx: StepContext) -> None:
    response = LLMResponse(tool="ping", arguments={"n": 1}, stop_reason="malformed_tool_use")

    outcome = step(_new(), make_agent(rec), Answering(response), ctx)

    error = _one(outcome.events, Error)
    assert (error.kind, error.message) == (
        "malformed_tool_use",
        "the model stopped without a usable tool call (malformed_tool_use)",
    )
    assert rec.runs == []


@pytest.mark.parametrize("reason", ["tool_use", "end_turn", "other", None])
def test_ordinary_stop_reasons_leave_the_call_to_validation(rec: Recorder, ctx: StepContext, reason: Any) -> None:
    response = LLMResponse(tool="ping", arguments={"n": 1}, stop_reason=reason)

    outcome = step(_new(), make_agent(rec), Answering(response), ctx)

    assert _types(outcome.events) == ["llm_call", "tool_call", "tool_result"]
    assert rec.runs == [("ping", {"n": 1}, "call_1")]


def test_problem_stops_count_towards_escalation(rec: Recorder, ctx: StepContext) -> None:
    agent = make_agent(rec, limits=Limits(max_consecutive_errors=2))
    cut = LLMResponse(tool="ping", arguments='{"n', stop_reason="output_truncated", stop_message=TRUNCATED)
    _, thread = _step(_new(), agent, Answering(cut), ctx)

    outcome, thread = _step(thread, agent, Answering(cut), ctx)

    assert outcome.route == "await_human"
    assert _one(outcome.events, HumanRequest).question.startswith(
        "The tester agent stopped: 2 errors in a row, the last: the model's output was cut off"
    )


def test_a_prompt_over_the_context_window_is_recorded_as_its_own_kind(rec: Recorder, ctx: StepContext) -> None:
    from core.kernel.model import ContextWindowExceededError  # noqa: PLC0415

    llm = Raising(ContextWindowExceededError("anthropic", "prompt is too long: 208310 tokens > 200000", status=400))

    outcome, thread = _step(_new(), make_agent(rec), llm, ctx)

    assert _types(outcome.events) == ["llm_call", "error"]
    error = _one(outcome.events, Error)
    assert (error.kind, error.message) == (
        "context_window_exceeded",
        "anthropic: prompt is too long: 208310 tokens > 200000 (HTTP 400)",
    )
    assert outcome.route == "continue"
    assert fold(thread).consecutive_errors == 1


def test_a_served_truncation_reaches_the_thread_as_output_truncated(rec: Recorder, ctx: StepContext) -> None:
    from core.adapters.llm import ProviderConfig, make_llm  # noqa: PLC0415
    from core.adapters.llm.openai import OpenAIChat  # noqa: PLC0415
    from tests.provider_server import ProviderServer, truncated  # noqa: PLC0415

    with ProviderServer() as srv:
        srv.openai.push(truncated("ping", {"n": 12345}))
        llm = make_llm("openai:gpt-4o-mini", ProviderConfig(openai_base_url=srv.openai.base_url))
        assert isinstance(llm, OpenAIChat)
        try:
            outcome = step(_new(), make_agent(rec), llm, ctx)
        finally:
            llm.close()

    error = _one(outcome.events, Error)
    assert error.kind == "output_truncated"
    assert error.message.startswith(
        "the model's output was cut off at the 1024-token output limit (max_output_tokens; openai finish_reason "
        "'length') before the tool call was complete"
    )
    assert rec.runs == []


def test_a_served_refusal_reaches_the_thread_as_refused(rec: Recorder, ctx: StepContext) -> None:
    from core.adapters.llm import ProviderConfig, make_llm  # noqa: PLC0415
    from core.adapters.llm.anthropic import AnthropicMessages  # noqa: PLC0415
    from tests.provider_server import ProviderServer, refusal  # noqa: PLC0415

    with ProviderServer() as srv:
        srv.anthropic.push(refusal("I can't help with that."))
        llm = make_llm("anthropic:claude-sonnet-4-5", ProviderConfig(anthropic_base_url=srv.anthropic.base_url))
        assert isinstance(llm, AnthropicMessages)
        try:
            outcome = step(_new(), make_agent(rec), llm, ctx)
        finally:
            llm.close()

    error = _one(outcome.events, Error)
    assert error.kind == "refused"
    assert error.message.endswith(': "I can\'t help with that."')


# --- nothing silent: prices and the spend ledger ------------------------------------------------------------------


def test_a_cost_limit_on_a_model_with_no_price_is_refused_at_construction(rec: Recorder) -> None:
    priced = make_agent(rec, limits=Limits(max_cost_usd=1.0))
    with pytest.raises(ValueError, match=r"no price for its model 'openai:my-finetune'.*add a price row") as caught:
        replace(priced, model="openai:my-finetune")
    assert "max_cost_usd=1.0" in str(caught.value)
    with pytest.raises(ValueError, match=r"max_daily_cost_usd=2\.0"):
        replace(priced, model="openai:my-finetune", limits=Limits(max_daily_cost_usd=2.0))
    assert replace(priced, model="openai:my-finetune", limits=Limits()).model == "openai:my-finetune"


def test_a_model_with_no_price_is_warned_about_once(caplog: pytest.LogCaptureFixture) -> None:
    from core.kernel.pricing import cost_usd  # noqa: PLC0415

    with caplog.at_level("WARNING", logger="stepfold.pricing"):
        assert cost_usd("openai:never-priced-xyz", 1000, 10) == 0.0
        assert cost_usd("openai:never-priced-xyz", 1000, 10) == 0.0
    warnings = [r for r in caplog.records if "never-priced-xyz" in r.getMessage()]
    assert len(warnings) == 1
    assert "core/kernel/pricing.py" in warnings[0].getMessage()


def test_a_failed_spend_ledger_write_is_logged_with_the_thread_and_the_step_stands(
    rec: Recorder, ctx: StepContext, caplog: pytest.LogCaptureFixture
) -> None:
    from botocore.exceptions import ClientError  # noqa: PLC0415

    from core.kernel.budget import MemorySpendLedger  # noqa: PLC0415
    from core.kernel.runner import advance  # noqa: PLC0415

    class ThrottledLedger(MemorySpendLedger):
        def add(self, agent: str, day: str, usd: float) -> float:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "UpdateItem")

    agent = make_agent(rec, limits=Limits(max_daily_cost_usd=1.0))
    store = MemoryThreadStore()
    thread = store.create(_new())
    with caplog.at_level("WARNING", logger="stepfold.runner"):
        result = advance(
            store,
            thread.id,
            thread.version,
            agents={agent.name: agent},
            llm_for=lambda _: ScriptedLLM([Say("ping", {"n": 1})]),
            ctx=ctx,
            spend=ThrottledLedger(),
        )
    assert result.route == "continue"
    (record,) = [r for r in caplog.records if "spend ledger" in r.getMessage()]
    assert record.thread_id == thread.id  # type: ignore[attr-defined]
    assert "ThrottlingException" in record.error  # type: ignore[attr-defined]


def test_a_policy_function_with_an_unknown_answer_asks_a_person_and_says_why(rec: Recorder, ctx: StepContext) -> None:
    typo = Tool("deploy", "deploys", Env, rec.tool("deploy"), policy=lambda args: "needs-approval")  # type: ignore[arg-type,return-value]
    agent = replace(make_agent(rec), tools=(typo,))
    outcome, _ = _step(_new(), agent, ScriptedLLM([Say("deploy", {"env": "prod"})]), ctx)
    assert outcome.route == "await_human"
    assert rec.count("deploy") == 0
    request = _one(outcome.events, HumanRequest)
    assert "returned 'needs-approval'" in request.context
    assert "fail closed" in request.context
