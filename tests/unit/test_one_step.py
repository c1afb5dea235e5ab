"""One step, read as one path: one fold, one commit object, one routing rule, one repeat signature, one model rule.

See "One step" in ARCHITECTURE.md. These pin the shape the runner and the step share, so that a second fold,
a second route decision or a second spelling of the repeat signature does not creep back in unnoticed.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel, ConfigDict

import core.kernel.agent
import core.kernel.runner
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.agent import ROUTE_OF_STATUS, Agent, Route, StepContext, route_of, step
from core.kernel.events import Error, LLMCall, ToolCall
from core.kernel.model import LLMRequest
from core.kernel.runner import StepResult, advance
from core.kernel.store import VersionConflictError
from core.kernel.thread import Status, Thread, ThreadState, call_signature, fold, start_thread
from core.kernel.tools import Tool, ToolContext
from core.services.control import pause
from tests.unit.conftest import FIXED_NOW, Ids, ThreadBuilder, fixed_clock

ROOT = Path(__file__).resolve().parents[2]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n: int = 0


def _work_then_done(request: LLMRequest) -> Say:
    if any(isinstance(e, ToolCall) and e.tool == "work" for e in request.events):
        return Say("done_for_now", {"answer": "done"})
    return Say("work", {"n": 1})


@dataclass
class _Kit:
    """A one-tool agent through the real runner; ``during_tool`` lets another writer act while the tool runs."""

    store: MemoryThreadStore = field(default_factory=MemoryThreadStore)
    during_tool: Callable[[ToolContext], None] | None = None
    during_model: Callable[[str], None] | None = None
    runs: int = 0

    def agent(self) -> Agent:
        return Agent("worker", "works", "calculator", 1, (Tool("work", "Do the work.", _Args, self._work),), "m:own")

    def _work(self, _: _Args, ctx: ToolContext) -> str:
        self.runs += 1
        if self.during_tool is not None:
            self.during_tool(ctx)
        return "worked"

    def start(self) -> Thread:
        return self.store.create(start_thread("t_1", "worker", "go", now=FIXED_NOW))

    def advance(self, ids: Ids) -> StepResult:
        def model(request: LLMRequest) -> Say:
            if self.during_model is not None:
                self.during_model("t_1")
            return _work_then_done(request)

        llm = ScriptedLLM(model)
        ctx = StepContext(clock=fixed_clock, ids=ids)
        seq = self.store.load("t_1").version
        return advance(self.store, "t_1", seq, agents={"worker": self.agent()}, llm_for=lambda _: llm, ctx=ctx)


def _pause(store: MemoryThreadStore, thread_id: str) -> None:
    pause(store, thread_id, by="bob", reason="lunch", clock=fixed_clock)


@pytest.fixture
def folds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the runner and the step fold a thread, together."""
    counted: list[int] = []

    def counting(thread: Thread) -> ThreadState:
        counted.append(thread.version)
        return fold(thread)

    monkeypatch.setattr(core.kernel.runner, "fold", counting)
    monkeypatch.setattr(core.kernel.agent, "fold", counting)
    return counted


# --- one fold ----------------------------------------------------------------------------------------------------


def test_a_step_that_runs_a_tool_folds_the_thread_once(ids: Ids, folds: list[int]) -> None:
    kit = _Kit()
    kit.start()

    result = kit.advance(ids)

    assert (result.route, kit.runs) == ("continue", 1)
    assert folds == [1]  # the thread as loaded; the step and the route reuse that fold


def test_a_step_that_finishes_folds_once_too(ids: Ids, folds: list[int]) -> None:
    kit = _Kit()
    kit.start()
    kit.advance(ids)
    folds.clear()

    assert kit.advance(ids).route == "done"
    assert len(folds) == 1


def test_step_without_a_state_folds_for_itself_and_with_one_uses_it(ids: Ids, folds: list[int]) -> None:
    kit = _Kit()
    thread = start_thread("t_1", "worker", "go", now=FIXED_NOW)
    ctx = StepContext(clock=fixed_clock, ids=ids)

    alone = step(thread, kit.agent(), ScriptedLLM(_work_then_done), ctx)
    assert len(folds) == 1
    given = step(
        thread, kit.agent(), ScriptedLLM(_work_then_done), StepContext(clock=fixed_clock, ids=Ids()), state=fold(thread)
    )
    assert len(folds) == 1  # the test's own fold is core.kernel.thread's, not counted

    assert [e.type for e in given.events] == [e.type for e in alone.events]


# --- one commit object -------------------------------------------------------------------------------------------


def test_a_write_before_the_checkpoint_is_a_conflict_and_the_tool_does_not_run(ids: Ids) -> None:
    kit = _Kit(during_model=lambda thread_id: _pause(kit.store, thread_id))
    kit.start()

    with pytest.raises(VersionConflictError):
        kit.advance(ids)

    assert kit.runs == 0
    assert [e.type for e in kit.store.load("t_1").events] == ["user_input", "paused"]


def test_a_pause_during_the_tool_keeps_the_result_and_routes_the_step_paused(ids: Ids) -> None:
    kit = _Kit(during_tool=lambda ctx: _pause(kit.store, ctx.thread_id))
    kit.start()

    result = kit.advance(ids)

    thread = kit.store.load("t_1")
    assert [e.type for e in thread.events] == [
        "user_input",
        "llm_call",
        "tool_call",
        "paused",
        "tool_result",
    ]
    assert (result.route, result.seq, kit.runs) == ("paused", thread.version, 1)
    assert fold(thread).status == "paused"


def test_a_result_that_arrived_meanwhile_for_the_same_call_is_not_written_twice(ids: Ids) -> None:
    def settle(ctx: ToolContext) -> None:
        thread = kit.store.load(ctx.thread_id)
        other = Error(seq=thread.next_seq, ts=FIXED_NOW, kind="outcome_unknown", message="x", call_id=ctx.call_id)
        kit.store.append(ctx.thread_id, thread.version, [other])

    kit = _Kit(during_tool=settle)
    kit.start()

    with pytest.raises(VersionConflictError):
        kit.advance(ids)

    assert [e.type for e in kit.store.load("t_1").events][-1] == "error"
    assert kit.runs == 1


# --- one routing rule --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", get_args(Status))
def test_a_step_that_would_continue_routes_by_the_threads_status(status: Status) -> None:
    state = _state(status)

    assert route_of(state) == ROUTE_OF_STATUS[status]
    assert route_of(state, "continue") == ROUTE_OF_STATUS[status]


@pytest.mark.parametrize("decided", [r for r in get_args(Route) if r != "continue"])
@pytest.mark.parametrize("status", get_args(Status))
def test_a_step_that_ended_or_waits_keeps_its_route(status: Status, decided: Route) -> None:
    assert route_of(_state(status), decided) == decided


def _state(status: Status) -> ThreadState:
    return ThreadState(status, 0, 0, 0, 0.0, 0, None, None, None, None)


# --- one repeat signature ----------------------------------------------------------------------------------------


def test_fold_counts_calls_by_the_signature_the_step_looks_up() -> None:
    b = ThreadBuilder()
    b.add(ToolCall, call_id="c1", tool="add", args={"a": 1, "b": 2})
    b.add(ToolCall, call_id="c2", tool="add", args={"b": 2, "a": 1})
    b.add(ToolCall, call_id="c3", tool="add", args={"a": 1, "b": 3})

    counts = fold(b.thread()).calls_by_signature

    assert counts[call_signature("add", {"b": 2, "a": 1})] == 2
    assert counts[call_signature("add", {"a": 1, "b": 3})] == 1
    assert call_signature("add", {"a": 1}) != call_signature("sub", {"a": 1})


# --- one model rule ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("override", "expected"), [(None, "m:own"), ("", "m:own"), ("m:other", "m:other")])
def test_the_override_wins_over_the_agents_model(override: str | None, expected: str) -> None:
    assert _Kit().agent().model_for(override) == expected


def test_the_llm_call_records_the_model_the_rule_picks(ids: Ids) -> None:
    agent = _Kit().agent()
    thread = start_thread("t_1", "worker", "go", now=FIXED_NOW)
    requests: list[Any] = []

    def model(request: LLMRequest) -> Say:
        requests.append(request.model)
        return Say("done_for_now", {"answer": "ok"})

    for override in (None, "m:other"):
        outcome = step(thread, agent, ScriptedLLM(model), StepContext(clock=fixed_clock, ids=ids, model=override))
        recorded = next(e for e in outcome.events if isinstance(e, LLMCall))
        assert recorded.model == requests[-1] == agent.model_for(override)


# --- no cycle between the agent and the triggers -----------------------------------------------------------------


def _core_imports(module: str) -> set[str]:
    tree = ast.parse((ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "core":
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "core")
    return found


def test_the_trigger_declarations_import_no_other_core_module() -> None:
    assert _core_imports("core.kernel.trigger_types") == set()


def test_the_agent_does_not_import_the_triggers_module() -> None:
    assert "core.services.triggers" not in _core_imports("core.kernel.agent")
    assert "core.kernel.trigger_types" in _core_imports("core.kernel.agent")
