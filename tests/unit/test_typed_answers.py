"""Typed answers and what an execution of the agent loop ends with (ARCHITECTURE.md "An agent as a step").

An agent may declare the schema of its final answer: ``done_for_now`` then takes that model's fields besides the
answer in plain words, validated like any tool call, and the ``done`` event records them. The step returns, when the
execution ends, the output a parent workflow reads.
"""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from agents import AGENTS
from agents.triage import TriageAnswer
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store.memory import MemoryThreadStore
from core.kernel.agent import Agent, StepContext
from core.kernel.events import SCHEMA_VERSION, Done, Error, Failed, Paused, parse_event
from core.kernel.model import LLMRequest
from core.kernel.runner import advance, execution_output
from core.kernel.thread import fold, start_thread, summary
from core.kernel.tools import DONE_FOR_NOW, done_tool
from core.services.control import cancel
from tests.unit.conftest import FIXED_NOW, Ids, fixed_clock


class Verdict(BaseModel):
    """Whether the request is allowed."""

    model_config = ConfigDict(extra="forbid")
    allowed: bool
    risk: Literal["low", "high"]
    score: int = Field(ge=0, le=10)


def _agent() -> Agent:
    return Agent("judge", "judges", "calculator", 1, (), "m:own", answer=Verdict)


def _run(answers: list[dict[str, object]], ids: Ids) -> tuple[MemoryThreadStore, ScriptedLLM, list[str]]:
    """Advance a judge thread through the real runner, one scripted done_for_now call per step, until it ends."""
    store = MemoryThreadStore()
    store.create(start_thread("t_1", "judge", "may I?", now=FIXED_NOW))
    script = iter(answers)

    def brain(_: LLMRequest) -> Say:
        return Say("done_for_now", next(script))

    llm = ScriptedLLM(brain)
    routes: list[str] = []
    for _ in answers:
        result = advance(
            store,
            "t_1",
            store.load("t_1").version,
            agents={"judge": _agent()},
            llm_for=lambda _: llm,
            ctx=StepContext(clock=fixed_clock, ids=ids),
            public_url="https://api.example.com/",
        )
        routes.append(result.route)
        if result.output is not None:
            routes.append(f"output:{result.output['status']}")
    return store, llm, routes


def test_done_for_now_takes_the_answer_models_fields_besides_the_text() -> None:
    spec = _agent().registry["done_for_now"].spec().parameters
    assert set(spec["properties"]) == {"allowed", "risk", "score", "answer"}
    assert set(spec["required"]) == {"allowed", "risk", "score", "answer"}
    assert spec["properties"]["risk"]["enum"] == ["low", "high"]
    assert Agent("plain", "p", "calculator", 1, (), "m:own").registry["done_for_now"] is DONE_FOR_NOW


def test_a_typed_answer_is_recorded_on_the_done_event_and_the_text_kept(ids: Ids) -> None:
    store, _, routes = _run([{"answer": "Yes, low risk.", "allowed": True, "risk": "low", "score": 2}], ids)

    thread = store.load("t_1")
    done = thread.events[-1]
    assert isinstance(done, Done)
    assert (done.answer, done.data) == ("Yes, low risk.", {"allowed": True, "risk": "low", "score": 2})
    assert routes == ["done", "output:done"]
    assert (fold(thread).answer, fold(thread).data) == ("Yes, low risk.", done.data)
    assert summary(thread)["data"] == done.data


def test_a_bad_typed_answer_is_an_invalid_args_error_the_model_sees_and_fixes(ids: Ids) -> None:
    store, llm, routes = _run(
        [
            {"answer": "Yes.", "allowed": "perhaps", "risk": "medium", "score": 11},
            {"answer": "Yes.", "allowed": True, "risk": "high", "score": 7},
        ],
        ids,
    )

    thread = store.load("t_1")
    error = next(e for e in thread.events if isinstance(e, Error))
    assert (error.kind, error.tool) == ("invalid_args", "done_for_now")
    for field in ("allowed", "risk", "score"):
        assert field in error.message
    assert routes == ["continue", "done", "output:done"]
    assert "invalid_args" in llm.calls[1].context  # the second call's context shows the first one's error
    assert fold(thread).data == {"allowed": True, "risk": "high", "score": 7}


def test_an_answer_model_done_for_now_cannot_take_is_refused_when_the_agent_is_declared() -> None:
    class Texty(BaseModel):
        model_config = ConfigDict(extra="forbid")
        answer: int

    class Loose(BaseModel):
        ok: bool

    with pytest.raises(ValueError, match="has a field 'answer'"):
        Agent("a", "a", "calculator", 1, (), "m:own", answer=Texty)
    with pytest.raises(ValueError, match="must forbid extra fields"):
        done_tool(Loose)


def test_a_done_event_of_schema_version_1_reads_without_a_typed_answer() -> None:
    stored = {"seq": 3, "ts": "2025-01-02T03:04:05Z", "v": 1, "type": "done", "answer": "42"}

    event = parse_event(stored, thread_id="t_old")

    assert isinstance(event, Done)
    assert (event.answer, event.data, event.v) == ("42", None, SCHEMA_VERSION)


def test_the_output_of_an_execution_that_ends(ids: Ids) -> None:
    store, _, _ = _run([{"answer": "No.", "allowed": False, "risk": "high", "score": 9}], ids)
    output = execution_output("t_1", fold(store.load("t_1")), "https://api.example.com/")

    assert output == {
        "thread_id": "t_1",
        "status": "done",
        "answer": "No.",
        "data": {"allowed": False, "risk": "high", "score": 9},
        "reason": None,
        "timeline": "/threads/t_1/view",
        "timeline_url": "https://api.example.com/threads/t_1/view",
    }


@pytest.mark.parametrize(
    ("ending", "status"),
    [("cancel", "cancelled"), ("failed", "failed"), ("pause", "paused")],
)
def test_the_output_says_how_a_thread_ended_without_an_answer(ending: str, status: str) -> None:
    store = MemoryThreadStore()
    thread = store.create(start_thread("t_1", "judge", "may I?", now=FIXED_NOW))
    if ending == "cancel":
        thread = cancel(store, None, "t_1", by="alice", reason="wrong ticket", clock=fixed_clock)
    elif ending == "failed":
        thread = store.append("t_1", 1, [Failed(seq=1, ts=FIXED_NOW, reason="reached the limit of 3 model calls")])
    else:
        thread = store.append("t_1", 1, [Paused(seq=1, ts=FIXED_NOW, by="alice")])

    output = execution_output("t_1", fold(thread))

    assert (output["status"], output["answer"], output["data"], output["timeline_url"]) == (status, None, None, None)
    assert output["timeline"] == "/threads/t_1/view"
    if ending == "cancel":
        assert output["reason"] == "cancelled by alice: wrong ticket"


def test_a_step_that_does_not_end_the_execution_returns_no_output(ids: Ids) -> None:
    store, _, routes = _run([{"answer": "x", "allowed": "maybe", "risk": "low", "score": 1}], ids)
    assert routes == ["continue"]
    assert fold(store.load("t_1")).status == "running"


def test_triage_declares_its_answer_for_parents_to_branch_on() -> None:
    agent = AGENTS["triage"]
    assert agent.answer is TriageAnswer
    spec = agent.registry["done_for_now"].spec().parameters
    assert {"issue", "label", "team", "paged", "answer"} <= set(spec["properties"])
