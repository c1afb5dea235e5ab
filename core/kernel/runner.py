"""Load -> step -> save, safe to retry: what the step Lambda does, without the Lambda (Factor 12).

The store is injected, so the same code runs against DynamoDB in AWS, moto locally and memory in
unit tests. See "One step" in ARCHITECTURE.md for why each branch exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from core.kernel.agent import Agent, Route, StepContext, StepOutcome, route_of, step
from core.kernel.budget import SpendLedger, day_of
from core.kernel.events import Done, Event, Failed, LLMCall
from core.kernel.model import LLM
from core.kernel.store import ThreadStore, VersionConflictError, load_for_step
from core.kernel.thread import Thread, ThreadState, fold

if TYPE_CHECKING:
    from core.kernel.mcp import ToolResolver

RESULT_COMMIT_ATTEMPTS = 5
_log = logging.getLogger("stepfold.runner")


class StaleStepError(RuntimeError):
    """The caller asked to advance a seq the thread has not reached: a bug in the caller, not a retry."""


@dataclass(frozen=True)
class StepResult:
    """What the step Lambda returns to Step Functions."""

    thread_id: str
    agent: str
    seq: int
    route: Route
    llm_calls: int = 0
    tool_runs: int = 0
    replayed: bool = False
    events: tuple[Event, ...] = ()
    output: dict[str, object] | None = None
    """What the execution ends with when the route ends it (done, failed, paused): :func:`execution_output`."""

    def payload(self) -> dict[str, object]:
        return {"thread_id": self.thread_id, "seq": self.seq, "route": self.route, "output": self.output}


ENDING_ROUTES: frozenset[Route] = frozenset({"done", "failed", "paused"})
"""The routes on which the agent loop's execution ends; the step then returns its :func:`execution_output`."""


def timeline_path(thread_id: str) -> str:
    """The thread's timeline page, relative to the API's URL."""
    return f"/threads/{thread_id}/view"


def execution_output(thread_id: str, state: ThreadState, public_url: str = "") -> dict[str, object]:
    """What an execution of the agent loop ends with (ARCHITECTURE.md "An agent as a step"): the output of a
    succeeded execution (the agent answered), or the JSON ``Cause`` of one that failed with ``AgentFailed``,
    ``Cancelled`` or ``Paused``. ``status`` is the thread's (``cancelled`` for a failure a person caused); ``answer``
    the text and ``data`` the typed answer (when the agent declares one); ``reason`` why it failed; ``timeline`` the
    path of the thread's page and ``timeline_url`` the whole URL when the deployment knows its own
    (``STEPFOLD_PUBLIC_URL``)."""
    path = timeline_path(thread_id)
    return {
        "thread_id": thread_id,
        "status": "cancelled" if state.cancelled else state.status,
        "answer": state.answer,
        "data": state.data,
        "reason": state.failure,
        "timeline": path,
        "timeline_url": f"{public_url.rstrip('/')}{path}" if public_url else None,
    }


def _ending(state: ThreadState, outcome: StepOutcome, route: Route, commit: Commit) -> ThreadState:
    """The thread's state once the step ended its execution, without folding it again where the step's own events
    say it: nothing written (the state it started from), or its own ``done``/``failed`` as the last word. Only when
    others wrote mid-step is the thread folded again (a step that finishes still folds once, "One step")."""
    if not outcome.events:
        return state
    last = outcome.events[-1]
    if isinstance(last, Done) and route == "done" and commit.thread.version == last.seq + 1:
        return replace(state, status="done", answer=last.answer, data=last.data, failure=None, cancelled=False)
    if isinstance(last, Failed) and route == "failed" and commit.thread.version == last.seq + 1:
        return replace(state, status="failed", answer=None, data=None, failure=last.reason, cancelled=last.cancelled)
    return fold(commit.thread)


def advance(
    store: ThreadStore,
    thread_id: str,
    seq: int,
    *,
    agents: Mapping[str, Agent],
    llm_for: Callable[[Agent], LLM],
    ctx: StepContext,
    spend: SpendLedger | None = None,
    tools: ToolResolver | None = None,
    public_url: str = "",
) -> StepResult:
    """Advance ``thread_id`` by one step from version ``seq``.

    Retry-safe: if the thread is already past ``seq`` the step committed before, so the recorded
    route is returned without a model call, unless it left an intent without a result, which the
    step settles by the effect-ledger rules.

    The thread is folded once: that fold decides whether this is a retry and is the state the step
    starts from; the route after the commit needs no second fold unless other writers' events were
    committed in between (:class:`Commit`). The thread is read as a step needs it (``load_for_step``: from
    the store's snapshot when it has one, compacted); the step may read the whole log through
    ``StepContext.history`` when that cannot answer (see :mod:`core.kernel.compaction`).

    ``public_url`` is the API's URL, for the timeline link of :func:`execution_output` when the execution ends.

    ``tools`` resolves the MCP tools of an agent that declares servers, for a thread that is running: the agent
    with the thread's pinned tools, and the events to record first (ARCHITECTURE.md "MCP tools").
    """
    thread = load_for_step(store, thread_id)
    if thread.version < seq:
        raise StaleStepError(f"thread {thread_id} is at version {thread.version}, the caller asked for {seq}")
    agent = agents[thread.agent]
    state = fold(thread)
    if thread.version > seq and not (state.pending is not None and state.pending.state == "dispatched"):
        route = route_of(state)
        output = execution_output(thread_id, state, public_url) if route in ENDING_ROUTES else None
        return StepResult(thread_id, agent.name, thread.version, route, replayed=True, output=output)

    daily = spend is not None and agent.limits.max_daily_cost_usd is not None
    spent_today = spend.spent(agent.name, day_of(ctx.clock())) if spend is not None and daily else None
    preamble: tuple[Event, ...] = ()
    if tools is not None and agent.mcp and state.status == "running":
        agent, preamble = tools(agent, thread, ctx.clock)
    commit = Commit(store, thread)
    step_ctx = replace(
        ctx,
        checkpoint=commit.append,
        spent_today=spent_today,
        history=lambda: store.load(thread_id),
        preamble=preamble,
    )
    outcome = step(thread, agent, llm_for(agent), step_ctx, state=state)
    route = commit.rest(outcome)
    cost = sum(e.cost_usd for e in outcome.events if isinstance(e, LLMCall))
    if spend is not None and cost > 0:
        # The day's total is advisory (the thread's llm_call events are the record): a failure to add to it
        # must not fail a step whose events are already committed, but it must not go unseen either.
        try:
            spend.add(agent.name, day_of(ctx.clock()), cost)
        except Exception as exc:  # noqa: BLE001 - logged with what it would take to correct the day's total
            _log.warning(
                "could not add a step's cost to the daily spend ledger; the day's total is low by this amount",
                extra={"thread_id": thread_id, "agent": agent.name, "cost_usd": cost, "error": repr(exc)[:300]},
            )
    ending = _ending(state, outcome, route, commit) if route in ENDING_ROUTES else None
    output = execution_output(thread_id, ending, public_url) if ending is not None else None
    return StepResult(
        thread_id,
        agent.name,
        commit.thread.version,
        route,
        outcome.llm_calls,
        outcome.tool_runs,
        events=outcome.events,
        output=output,
    )


class Commit:
    """One step's writes to its thread, each an optimistic append on the version the last one left.

    :meth:`append` is the step's checkpoint (the intent before a tool runs) and :meth:`rest` commits what
    the step produced after it. ``thread`` is always the newest version this step has seen or written.
    """

    def __init__(self, store: ThreadStore, thread: Thread) -> None:
        self.store = store
        self.thread = thread

    def append(self, events: Sequence[Event]) -> None:
        """The step's checkpoint: a conflict raises before the tool runs (nothing ran; the retry reads again)."""
        self.thread = self.store.append(self.thread.id, self.thread.version, events)

    def rest(self, outcome: StepOutcome) -> Route:
        """Commit what the step produced after its checkpoint, and return the step's route.

        Before any checkpoint a conflict is raised (nothing ran; Step Functions retries and the retry
        sees the other writer's events). After a checkpoint a tool has run, so its result must not be
        lost: the events are re-numbered onto the newer thread, if what arrived meanwhile (a pause, a
        message) did not settle the same call. Only then does the route need the thread's new state
        (:func:`core.kernel.agent.route_of`): without other writers' events the step's own route is the route.
        """
        events = outcome.uncommitted
        if not events:
            return outcome.route
        if outcome.checkpointed == 0:
            self.append(events)
            return outcome.route
        merged = False
        for _ in range(RESULT_COMMIT_ATTEMPTS):
            try:
                self.append(events)
            except VersionConflictError:
                self.thread = load_for_step(self.store, self.thread.id)
                pending = fold(self.thread).pending
                call_ids = {getattr(e, "call_id", None) for e in events} - {None}
                if pending is None or pending.call.call_id not in call_ids:
                    raise
                events = tuple(e.model_copy(update={"seq": self.thread.next_seq + i}) for i, e in enumerate(events))
                merged = True
                continue
            # Others wrote between the checkpoint and this commit: what they wrote (a pause) takes effect now.
            return route_of(fold(self.thread), outcome.route) if merged else outcome.route
        raise VersionConflictError(self.thread.id, self.thread.version)
