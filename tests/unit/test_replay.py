"""Replay and fork (Factor 5): a thread's events are enough to re-run it without a model or a side effect,
and to branch it into a new thread that lives on its own."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from agents import AGENTS, deploybot, triage
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.adapters.store import MemoryThreadStore
from core.kernel.agent import Agent, StepContext
from core.kernel.events import (
    Error,
    Event,
    HumanRequest,
    HumanResponse,
    LLMCall,
    ToolCall,
    ToolResult,
)
from core.kernel.model import LLMRequest
from core.kernel.prompts import PromptLibrary
from core.kernel.runner import advance
from core.kernel.thread import Thread, fold, start_thread
from core.kernel.tools import Tool, ToolContext
from core.services.control import pause, resume
from core.services.replay import FORKED_AT, FORKED_FROM, ForkError, ReplayExhaustedError, ReplayLLM, fork, replay
from infra import cli_evals
from tests.unit.conftest import Driver, Ids, Run, fixed_clock, respond

DEPLOYBOT = AGENTS["deploybot"]
CALCULATOR = AGENTS["calculator"]
PRODUCTION = "deploy the latest backend to production"


# --- replay --------------------------------------------------------------------------------------------------


def _scenarios(drive: Driver) -> list[Run]:
    return [
        drive(
            DEPLOYBOT,
            PRODUCTION,
            [{"decision": "reject", "comment": "deploy to staging first"}, {"decision": "approve"}],
        ),
        drive(DEPLOYBOT, PRODUCTION, [{"decision": "expired", "by": "system"}]),
        drive(DEPLOYBOT, "deploy something", [{"decision": "answer", "answer": "the backend to staging"}]),
        drive(CALCULATOR, "multiply 3 and xyz", [{"decision": "answer", "answer": "5"}]),
        drive(CALCULATOR, "divide 10 by 0"),
        drive(
            AGENTS["triage"],
            triage.issue_input({"issue": {"number": 43, "title": "XSS vulnerability", "body": "script runs"}}),
            [{"decision": "approve"}],
        ),
    ]


def test_replay_of_recorded_threads_produces_identical_events_and_runs_no_tool(drive: Driver) -> None:
    runs = _scenarios(drive)
    deployments, tracker_runs = list(deploybot.SERVICE.deployments), dict(triage.TRACKER.runs)
    assert deployments, "the scenarios did deploy"

    for run in runs:
        agent = AGENTS[run.thread.agent]
        stored = Thread.from_json(run.thread.to_json())  # what a store hands back

        result = replay(stored, agent)

        assert result.ok, result.render()
        assert result.steps == len(run.outcomes)
        assert "identical" in result.render()
    assert deploybot.SERVICE.deployments == deployments
    assert dict(triage.TRACKER.runs) == tracker_runs


def test_replay_shows_the_first_event_new_code_changes(drive: Driver) -> None:
    run = drive(DEPLOYBOT, PRODUCTION, [{"decision": "approve"}])
    auto = tuple(replace(t, policy="auto") if t.name.startswith("deploy_") else t for t in DEPLOYBOT.tools)
    careless = replace(DEPLOYBOT, tools=auto)  # a bug: production no longer needs a human

    result = replay(run.thread, careless)

    assert not result.ok
    difference = result.difference
    assert difference is not None
    request = next(e for e in run.thread.events if isinstance(e, HumanRequest))
    assert difference.seq == request.seq
    assert difference.recorded == request
    assert isinstance(difference.replayed, ToolResult), "the new code deployed without asking"
    assert difference.replayed.tool == "deploy_backend"
    assert f"DIFFERS at seq {request.seq}" in result.render()
    assert len(deploybot.SERVICE.deployments) == 1, "the replayed deploy was the recorded result, not a new one"


def test_replay_never_runs_a_tool_the_recording_did_not(drive: Driver) -> None:
    run = drive(DEPLOYBOT, PRODUCTION, [{"decision": "reject"}])
    auto = tuple(replace(t, policy="auto") if t.name.startswith("deploy_") else t for t in DEPLOYBOT.tools)

    result = replay(run.thread, replace(DEPLOYBOT, tools=auto))

    request = next(e for e in run.thread.events if isinstance(e, HumanRequest))
    assert result.difference is not None
    assert (result.difference.seq, result.difference.recorded, result.difference.replayed) == (
        request.seq,
        request,
        None,
    )
    assert "the code ran deploy_backend (call call_2) here, which the recording has no outcome for" in result.render()
    assert deploybot.SERVICE.deployments == []


def test_replay_notices_an_edited_prompt(tmp_path: Path, drive: Driver) -> None:
    run = drive(CALCULATOR, "add 1 and 2")
    edited = tmp_path / "calculator" / "v1.md"
    edited.parent.mkdir()
    original = (PromptLibrary().root / "calculator" / "v1.md").read_text()
    edited.write_text(original.replace("careful calculator", "very careful calculator"))

    result = replay(run.thread, CALCULATOR, prompts=PromptLibrary(tmp_path))

    first = next(e for e in run.thread.events if isinstance(e, LLMCall))
    assert result.difference is not None
    assert result.difference.seq == first.seq
    assert isinstance(result.difference.replayed, LLMCall)
    assert result.difference.replayed.prompt_hash != first.prompt_hash


def test_replay_reproduces_model_errors_and_long_prose_exactly(drive: Driver) -> None:
    errors = drive(CALCULATOR, "add 1 and 2", llm=ScriptedLLM([]))
    assert [e.kind for e in errors.of(Error)] == ["llm_error"] * 3
    prose = drive(CALCULATOR, "add 1 and 2", llm=ScriptedLLM([Say.text("no. " * 300), Say("add", {"a": 1, "b": 2})]))
    assert prose.of(LLMCall)[0].output["text"].endswith("... [700 more chars]")

    for run in (errors, prose):
        result = replay(run.thread, CALCULATOR)
        assert result.ok, result.render()


@dataclass
class _PauseKit:
    """A one-tool agent driven through the real runner, whose tool lets a person pause the thread mid-step."""

    store: MemoryThreadStore = field(default_factory=MemoryThreadStore)
    idempotent: bool = False
    pause_during_tool: bool = False
    crash_on_result: bool = False
    runs: int = 0

    def agent(self) -> Agent:
        tool = Tool("work", "Do the work.", _NoArgs, self._work, idempotent=self.idempotent)
        return Agent("worker", "works", "calculator", 1, (tool,), "scripted:worker")

    def _work(self, _: _NoArgs, ctx: ToolContext) -> str:
        self.runs += 1
        if self.pause_during_tool:
            pause(self.store, ctx.thread_id, by="bob", reason="lunch", clock=fixed_clock)
        return "worked"

    def advance(self, thread_id: str, ids: Ids) -> str:
        llm = ScriptedLLM(_work_then_done)
        store = _CrashOnResult(self.store) if self.crash_on_result else self.store
        ctx = StepContext(clock=fixed_clock, ids=ids)
        seq = self.store.load(thread_id).version
        return advance(store, thread_id, seq, agents={"worker": self.agent()}, llm_for=lambda _: llm, ctx=ctx).route


class _NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _work_then_done(request: LLMRequest) -> Say:
    if any(isinstance(e, ToolResult | HumanResponse) for e in request.events):
        return Say("done_for_now", {"answer": "done"})
    return Say("work", {})


class _CrashOnResult:
    def __init__(self, inner: MemoryThreadStore) -> None:
        self.inner = inner

    def create(self, thread: Thread) -> Thread:
        return self.inner.create(thread)

    def load(self, thread_id: str) -> Thread:
        return self.inner.load(thread_id)

    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        if any(isinstance(e, ToolResult) for e in events):
            raise RuntimeError("the Lambda died after the tool ran")
        return self.inner.append(thread_id, expected_version, events)


def test_replay_re_applies_a_pause_that_landed_mid_step(ids: Ids) -> None:
    kit = _PauseKit(pause_during_tool=True)
    kit.store.create(start_thread("t_p", "worker", "work please", now=fixed_clock()))
    assert kit.advance("t_p", ids) == "paused"
    kit.pause_during_tool = False
    resume(kit.store, _NoExecutions(), "t_p", by="bob", clock=fixed_clock)
    assert kit.advance("t_p", ids) == "done"
    thread = kit.store.load("t_p")
    assert [e.type for e in thread.events] == [
        "user_input", "llm_call", "tool_call", "paused", "tool_result", "resumed", "llm_call", "tool_call", "done",
    ]  # fmt: skip

    result = replay(thread, kit.agent())

    assert result.ok, result.render()
    assert kit.runs == 1


@pytest.mark.parametrize("idempotent", [False, True])
def test_replay_of_a_step_that_died_after_its_tool(idempotent: bool, ids: Ids) -> None:
    kit = _PauseKit(idempotent=idempotent, crash_on_result=True)
    kit.store.create(start_thread("t_c", "worker", "work please", now=fixed_clock()))
    with pytest.raises(RuntimeError, match="the Lambda died"):
        kit.advance("t_c", ids)
    kit.crash_on_result = False
    kit.advance("t_c", ids)  # the retry settles the intent by the effect ledger
    thread = kit.store.load("t_c")
    if idempotent:
        assert [e.type for e in thread.events][-1] == "tool_result"
        kit.advance("t_c", ids)
    else:
        assert [e.kind for e in thread.events if isinstance(e, Error)] == ["outcome_unknown"]
        kit.store.append("t_c", thread.version, [respond(thread, decision="answer", answer="it ran").events[-1]])
        kit.advance("t_c", ids)
    thread = kit.store.load("t_c")
    assert fold(thread).status == "done"
    runs = kit.runs

    result = replay(thread, kit.agent())

    assert result.ok, result.render()
    assert kit.runs == runs


def test_the_replay_model_answers_from_the_recording_only(drive: Driver) -> None:
    run = drive(CALCULATOR, "add 1 and 2")
    llm = ReplayLLM(run.of(LLMCall))
    request = LLMRequest("m", "", "", (), run.thread.events)

    with pytest.raises(ReplayExhaustedError, match="the code asked for model call #3; the recording has 2"):
        llm.complete(request)


# --- fork ----------------------------------------------------------------------------------------------------


@dataclass
class _NoExecutions:
    started: list[tuple[str, int]] = field(default_factory=list)

    def start(self, thread_id: str, seq: int) -> None:
        self.started.append((thread_id, seq))


def _stored(run: Run, **labels: str) -> MemoryThreadStore:
    store = MemoryThreadStore()
    store.create(run.thread.model_copy(update={"labels": {"prompt_version": "1", **labels}}))
    return store


def test_a_fork_at_an_approval_continues_independently_of_the_original(drive: Driver) -> None:
    waiting = drive(DEPLOYBOT, PRODUCTION)
    store = _stored(waiting, idempotency_key="k1", reply_to="https://hooks.example.com/r", trigger="webhook:github")
    executions = _NoExecutions()
    request = fold(waiting.thread).open_request
    assert request is not None

    forked = fork(store, "t_1", waiting.thread.version, new_id="t_fork", executions=executions)

    assert store.load("t_fork") == forked
    assert executions.started == [("t_fork", waiting.thread.version)]
    assert forked.labels == {
        "prompt_version": "1",
        "trigger": "webhook:github",
        FORKED_FROM: "t_1",
        FORKED_AT: str(waiting.thread.version),
    }
    fork_request = fold(forked).open_request
    assert fork_request is not None
    assert fork_request.approval_id != request.approval_id, "answering one thread must not answer the other"
    assert fork_request.model_copy(update={"approval_id": request.approval_id}) == request
    assert forked.events[:-1] == waiting.thread.events[:-1]

    fork_done = drive(DEPLOYBOT, thread=forked, responses=[{"decision": "approve"}])
    original_done = drive(DEPLOYBOT, thread=store.load("t_1"), responses=[{"decision": "reject"}])

    assert fork_done.state.answer == "Deployed backend v1.5.0 to production."
    assert original_done.state.answer == (
        "Deployed nothing. Did not deploy v1.5.0 to production: alice rejected it: no reason given."
    )
    assert [(d["environment"], d["key"].split(":")[0]) for d in deploybot.SERVICE.deployments] == [
        ("production", "t_fork")
    ]
    assert replay(fork_done.thread, DEPLOYBOT).ok


def test_a_fork_with_another_prompt_version_decides_with_it(drive: Driver) -> None:
    staged = drive(DEPLOYBOT, "deploy the frontend to staging")
    store = _stored(staged)
    first_call = staged.of(LLMCall)[0]

    forked = fork(store, "t_1", first_call.seq, new_id="t_v2", prompt_version=2, agents=AGENTS, prompts=PromptLibrary())
    assert forked.labels["prompt_version"] == "2"
    run = drive(DEPLOYBOT, thread=forked)

    v2 = PromptLibrary().load("deploybot", 2)
    assert {c.prompt_hash for c in run.of(LLMCall)} == {v2.hash}
    assert run.state.status == "awaiting_human", "the broken v2 sends the staging request to production"
    assert [e.args["environment"] for e in run.of(ToolCall) if not e.prefetch] == ["production"]
    assert {c.prompt_hash for c in staged.of(LLMCall)} == {PromptLibrary().load("deploybot", 1).hash}
    assert replay(run.thread, DEPLOYBOT).ok, "a fork replays from its cut"


def test_a_fork_of_a_finished_thread_starts_no_execution(drive: Driver) -> None:
    done = drive(CALCULATOR, "add 1 and 2")
    executions = _NoExecutions()

    forked = fork(_stored(done), "t_1", done.thread.version, new_id="t_f", executions=executions)

    assert fold(forked).status == "done"
    assert executions.started == []


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda t: 0, "--at must be between 1 and"),
        (lambda t: t.version + 1, "--at must be between 1 and"),
        (lambda t: _seq_of(t, LLMCall) + 1, "is a model call whose decision is recorded at seq"),
        (lambda t: _seq_of(t, ToolCall, prefetch=False) + 1, "decided but without a result"),
        (lambda t: 2, r"list_git_tags \(call pre_1, seq 1\) decided but without a result.*fork at 1 to decide again"),
    ],
)
def test_a_cut_in_the_middle_of_a_step_is_refused(drive: Driver, cut: Callable[[Thread], int], message: str) -> None:
    run = drive(DEPLOYBOT, "deploy the frontend to staging")

    with pytest.raises(ForkError, match=message):
        fork(_stored(run), "t_1", cut(run.thread), new_id="t_f")


def test_a_fork_to_a_prompt_version_that_does_not_exist_is_refused(drive: Driver) -> None:
    run = drive(CALCULATOR, "add 1 and 2")
    store = _stored(run)

    with pytest.raises(ForkError, match="no prompt calculator/v7"):
        fork(store, "t_1", 1, new_id="t_f", prompt_version=7, agents=AGENTS, prompts=PromptLibrary())
    with pytest.raises(ForkError, match="a prompt version is a positive number"):
        fork(store, "t_1", 1, new_id="t_f", prompt_version=0)


def _seq_of(thread: Thread, kind: type[Event], *, prefetch: bool | None = None) -> int:
    return next(
        e.seq
        for e in thread.events
        if isinstance(e, kind) and (prefetch is None or getattr(e, "prefetch", None) is prefetch)
    )


# --- the CLI, offline ----------------------------------------------------------------------------------------


def test_cli_replay_and_fork_work_offline_from_a_thread_file(tmp_path: Path, drive: Driver) -> None:
    run = drive(DEPLOYBOT, PRODUCTION)
    path = tmp_path / "thread.json"
    path.write_text(run.thread.to_json(), encoding="utf-8")
    out = io.StringIO()

    assert cli_evals.run(["replay", "--from-file", str(path)], stdout=out) == 0
    assert "identical, 1 steps re-run" in out.getvalue()

    fork_path = tmp_path / "fork.json"
    at = str(run.thread.version)
    assert cli_evals.run(["fork", "--from-file", str(path), "--at", at, "--prompt", "v2", "-o", str(fork_path)]) == 0
    forked = Thread.from_json(fork_path.read_text())
    assert forked.labels == {FORKED_FROM: "t_1", FORKED_AT: at, "prompt_version": "2"}
    assert forked.id.startswith("th_")

    tampered = run.thread.model_copy(update={"events": (*run.thread.events[:-1],)})
    path.write_text(tampered.to_json(), encoding="utf-8")
    out = io.StringIO()
    assert cli_evals.run(["replay", "--from-file", str(path), "--json"], stdout=out) == 1
    assert '"ok": false' in out.getvalue()
