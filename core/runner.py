"""Load -> step -> save, safe to retry: what the step Lambda does, without the Lambda (Factor 12).

The store is injected, so the same code runs against DynamoDB in AWS, moto locally and memory in
unit tests. See "One step" in DESIGN.md for why each branch exists.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from core.agent import ROUTE_OF_STATUS, Agent, Route, StepContext, StepOutcome, step
from core.budget import SpendLedger, day_of
from core.events import Event, LLMCall
from core.llm.base import LLM
from core.store.base import ThreadStore, VersionConflictError
from core.thread import Thread, fold

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

    def payload(self) -> dict[str, object]:
        return {"thread_id": self.thread_id, "seq": self.seq, "route": self.route}


def advance(
    store: ThreadStore,
    thread_id: str,
    seq: int,
    *,
    agents: Mapping[str, Agent],
    llm_for: Callable[[Agent], LLM],
    ctx: StepContext,
    spend: SpendLedger | None = None,
) -> StepResult:
    """Advance ``thread_id`` by one step from version ``seq``.

    Retry-safe: if the thread is already past ``seq`` the step committed before, so the recorded
    route is returned without a model call, unless it left an intent without a result, which the
    step settles by the effect-ledger rules.
    """
    thread = store.load(thread_id)
    if thread.version < seq:
        raise StaleStepError(f"thread {thread_id} is at version {thread.version}, the caller asked for {seq}")
    agent = agents[thread.agent]
    state = fold(thread)
    if thread.version > seq and not (state.pending is not None and state.pending.state == "dispatched"):
        return StepResult(thread_id, agent.name, thread.version, ROUTE_OF_STATUS[state.status], replayed=True)

    current = [thread]

    def checkpoint(events: Sequence[Event]) -> None:
        current[0] = store.append(thread_id, current[0].version, events)

    daily = spend is not None and agent.limits.max_daily_cost_usd is not None
    spent_today = spend.spent(agent.name, day_of(ctx.clock())) if spend is not None and daily else None
    outcome = step(thread, agent, llm_for(agent), replace(ctx, checkpoint=checkpoint, spent_today=spent_today))
    final = _commit_rest(store, current[0], outcome)
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
    route = outcome.route
    if route == "continue":
        route = ROUTE_OF_STATUS[fold(final).status]  # a pause that arrived mid-step takes effect now
    return StepResult(
        thread_id, agent.name, final.version, route, outcome.llm_calls, outcome.tool_runs, events=outcome.events
    )


def _commit_rest(store: ThreadStore, thread: Thread, outcome: StepOutcome) -> Thread:
    """Commit what the step produced after its checkpoint.

    Before any checkpoint a conflict is raised (nothing ran; Step Functions retries and the retry
    sees the other writer's events). After a checkpoint a tool has run, so its result must not be
    lost: the events are re-numbered onto the newer thread, if what arrived meanwhile (a pause, a
    message) did not settle the same call.
    """
    events = outcome.uncommitted
    if not events:
        return thread
    if outcome.checkpointed == 0:
        return store.append(thread.id, thread.version, events)
    for _ in range(RESULT_COMMIT_ATTEMPTS):
        try:
            return store.append(thread.id, thread.version, events)
        except VersionConflictError:
            thread = store.load(thread.id)
            pending = fold(thread).pending
            call_ids = {getattr(e, "call_id", None) for e in events} - {None}
            if pending is None or pending.call.call_id not in call_ids:
                raise
            events = tuple(e.model_copy(update={"seq": thread.next_seq + i}) for i, e in enumerate(events))
    raise VersionConflictError(thread.id, thread.version)
