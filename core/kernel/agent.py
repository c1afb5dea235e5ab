"""The agent and its step: a stateless reducer ``thread -> new events + a routing word`` (Factors 8, 9, 12).

One step makes at most one model call. Deterministic code, not the model, decides what happens to
the tool call it returns: approval policies, limits, error escalation and the effect ledger all
live here. The step does no I/O of its own beyond the injected model and the tools; the runtime
loads and saves the thread around it and may pass a ``checkpoint`` to persist the intent before a
tool runs (see "One step" in ARCHITECTURE.md).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from core.kernel.compaction import WholeEvents, render_context, uncompacted
from core.kernel.context import ContextOptions
from core.kernel.errors import clip
from core.kernel.events import (
    JSON,
    Done,
    Error,
    Event,
    Failed,
    HumanRequest,
    LLMCall,
    ToolCall,
    ToolResult,
    ToolStarted,
    utcnow,
)
from core.kernel.model import LLM, LLMRequest, LLMRequestError, LLMResponse
from core.kernel.observe import NullObserver, Observer
from core.kernel.pricing import cost_usd, price_for
from core.kernel.prompts import Prompt, PromptLibrary
from core.kernel.thread import (
    ASK_TOOL,
    DONE_TOOL,
    PendingCall,
    Status,
    Thread,
    ThreadState,
    call_signature,
    fold,
    stale_results,
)
from core.kernel.tools import (
    InvalidCall,
    RequestHumanInput,
    Tool,
    ToolContext,
    ToolRegistry,
    ValidCall,
    done_tool,
    typed_answer,
)
from core.kernel.trigger_types import Trigger

if TYPE_CHECKING:
    from core.kernel.mcp import McpServer

Route = Literal["continue", "await_human", "paused", "done", "failed"]
Checkpoint = Callable[[Sequence[Event]], None]


class UnknownAgentError(KeyError):
    """No agent of that name is registered."""

    def __init__(self, name: str, known: Sequence[str] = ()) -> None:
        super().__init__(name)
        self.name = name
        self.known = tuple(known)

    def __str__(self) -> str:
        return f"unknown agent {self.name!r}; available: {', '.join(self.known) or 'none'}"


@dataclass(frozen=True)
class Limits:
    """Bounds that stop an agent from looping forever (Factor 8). Each ends in a clear event."""

    max_steps: int = 25
    max_consecutive_errors: int = 3
    max_cost_usd: float | None = None
    max_repeats: int = 3
    """The same tool call with the same args this many times escalates to a human."""
    max_tokens: int | None = None
    """Input + output tokens over all model calls since the last human review."""
    max_stale_results: int = 4
    """This many tool results in a row that repeat results already in the thread (no new information)."""
    max_daily_cost_usd: float | None = None
    """What all of this agent's threads may spend per UTC day; over it, a thread asks a human before its next
    model call, and a person's answer today lets it go on (see core/kernel/budget.py)."""
    max_result_bytes: int = 5_000_000
    """A tool result larger than this (as JSON) is refused with an error instead of stored."""
    on_limit: Literal["ask_human", "fail"] = "ask_human"


@dataclass(frozen=True)
class Prefetch:
    """A deterministic context fetch run before the first model call (the methodology's "factor 13").

    ``args`` is a dict or a function of the thread; the call and its result appear in the thread as
    ordinary tool_call + tool_result events marked ``prefetch``.
    """

    tool: str
    args: Mapping[str, JSON] | Callable[[Thread], Mapping[str, JSON]] = field(default_factory=dict)

    def args_for(self, thread: Thread) -> dict[str, JSON]:
        return dict(self.args(thread) if callable(self.args) else self.args)


@dataclass(frozen=True)
class Agent:
    """A small, focused agent (Factor 10): a prompt version, a handful of tools and limits."""

    name: str
    description: str
    prompt_id: str
    prompt_version: int
    tools: tuple[Tool[Any], ...]
    model: str
    limits: Limits = field(default_factory=Limits)
    prefetch: tuple[Prefetch, ...] = ()
    context: ContextOptions = field(default_factory=ContextOptions)
    triggers: tuple[Trigger, ...] = ()
    """Where its threads come from besides the API (Factor 11): webhooks, schedules, event rules."""
    mcp: tuple[McpServer, ...] = ()
    """MCP servers whose tools it uses next to its own (ARCHITECTURE.md "MCP tools"): resolved per thread by the
    runtime, which pins each server's list in the thread (``core/kernel/mcp.py``)."""
    answer: type[BaseModel] | None = None
    """The schema of its final answer: ``done_for_now`` takes this model's fields besides the answer in plain words,
    validated like any tool call, and the ``done`` event records them (``data``), so a parent workflow branches on a
    field, not on free text (ARCHITECTURE.md "An agent as a step")."""

    def __post_init__(self) -> None:
        done_tool(self.answer)  # an answer model done_for_now cannot take fails here, when the agent is declared
        limits = self.limits
        if (limits.max_cost_usd is not None or limits.max_daily_cost_usd is not None) and price_for(self.model) is None:
            raise ValueError(
                f"agent {self.name}: a cost limit (max_cost_usd={limits.max_cost_usd}, max_daily_cost_usd="
                f"{limits.max_daily_cost_usd}) cannot hold, because core/kernel/pricing.py has no price for its model "
                f"{self.model!r} (every call would count as $0); add a price row or remove the limit"
            )

    @cached_property
    def registry(self) -> ToolRegistry:
        registry = ToolRegistry(self.tools, done=done_tool(self.answer))
        for fetch in self.prefetch:
            if fetch.tool not in registry or registry[fetch.tool].fn is None:
                raise ValueError(f"agent {self.name}: prefetch names {fetch.tool!r}, which is not one of its tools")
        return registry

    def prompt_version_for(self, thread: Thread) -> int:
        """The prompt version a thread runs with: the one pinned when it started, else the agent's."""
        pinned = thread.labels.get("prompt_version", "")
        return int(pinned) if pinned.isdigit() else self.prompt_version

    def model_for(self, override: str | None = None) -> str:
        """The model string this agent's calls are made with, recorded on and priced by: ``override`` (the
        deployment's ``STEPFOLD_MODEL``, an eval's ``--model``, the model a replayed step recorded) when set, else
        the agent's own. The one place this is decided, so the model the wiring builds and the model the
        ``llm_call`` event records cannot disagree."""
        return override or self.model


@dataclass(frozen=True)
class StepOutcome:
    """What a step produced. ``events[:checkpointed]`` were already committed through the checkpoint."""

    events: tuple[Event, ...]
    route: Route
    checkpointed: int = 0
    llm_calls: int = 0
    tool_runs: int = 0

    @property
    def uncommitted(self) -> tuple[Event, ...]:
        return self.events[self.checkpointed :]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


@dataclass
class _Builder:
    """Accumulates a step's events with contiguous seqs and commits at checkpoints."""

    thread: Thread
    clock: Callable[[], datetime]
    checkpoint: Checkpoint | None
    observer: Observer
    events: list[Event] = field(default_factory=list)
    checkpointed: int = 0
    llm_calls: int = 0
    tool_runs: int = 0

    @property
    def next_seq(self) -> int:
        return self.thread.next_seq + len(self.events)

    def add(self, cls: type[Event], **fields: Any) -> Event:
        event: Event = cls(seq=self.next_seq, ts=self.clock(), **fields)
        self.events.append(event)
        return event

    def commit(self) -> None:
        """Persist what is not yet persisted, before a side effect runs."""
        if self.checkpoint is not None and len(self.events) > self.checkpointed:
            self.checkpoint(tuple(self.events[self.checkpointed :]))
            self.checkpointed = len(self.events)

    def outcome(self, route: Route) -> StepOutcome:
        return StepOutcome(tuple(self.events), route, self.checkpointed, self.llm_calls, self.tool_runs)


@dataclass(frozen=True)
class StepContext:
    """The step's injected collaborators: prompts, clock, id factory and an optional checkpoint."""

    prompts: PromptLibrary = field(default_factory=PromptLibrary)
    clock: Callable[[], datetime] = utcnow
    ids: Callable[[str], str] = new_id
    checkpoint: Checkpoint | None = None
    observer: Observer = field(default_factory=NullObserver)
    spent_today: float | None = None
    """What this agent spent today across its threads (set by the runner when the agent has a daily budget)."""
    model: str | None = None
    """Overrides the agent's model string for recording and pricing (``STEPFOLD_MODEL``)."""
    preamble: tuple[Event, ...] = ()
    """Events the runtime records at the start of this step, numbered from the thread's next seq (an MCP server's
    pinned tool list): committed with the step's first commit."""
    history: Callable[[], Thread] | None = None
    """Reads the whole thread (the runner passes the store's ``load``): what a step on a compacted thread (one read
    from a snapshot) uses for what the snapshot cannot answer, e.g. a scripted model reading every event."""


def step(
    thread: Thread, agent: Agent, llm: LLM, ctx: StepContext | None = None, *, state: ThreadState | None = None
) -> StepOutcome:
    """Advance a thread by one step. Raises only system errors (retryable model errors, store conflicts).

    ``state`` is ``fold(thread)`` when the caller already has it: the runner folds once per step and passes the
    fold down instead of each layer folding the same events again ("One step" in ARCHITECTURE.md).
    """
    ctx = ctx or StepContext()
    if thread.agent != agent.name:
        raise ValueError(f"thread {thread.id} belongs to agent {thread.agent!r}, not {agent.name!r}")
    if state is None:
        state = fold(thread)
    b = _Builder(thread, ctx.clock, ctx.checkpoint, ctx.observer)
    b.events.extend(ctx.preamble)
    if state.status != "running":
        return b.outcome(route_of(state))
    if state.pending is not None:
        return _finish_pending(b, agent, state.pending, ctx)
    if (limit := _limit_reached(agent.limits, state, thread) or _over_daily_budget(agent, state, ctx)) is not None:
        b.add(Error, kind="limit", message=limit)
        return _escalate(b, agent, ctx, "limit", limit)
    if not state.steps and not state.prefetched:
        _prefetch(b, agent, ctx)
    return _decide(b, agent, llm, ctx, state)


ROUTE_OF_STATUS: dict[Status, Route] = {
    "running": "continue",
    "awaiting_human": "await_human",
    "paused": "paused",
    "done": "done",
    "failed": "failed",
}
"""The routing word for a thread whose step has nothing (more) to do in its current status."""


def route_of(state: ThreadState, decided: Route = "continue") -> Route:
    """The routing word for a thread in ``state`` whose step decided ``decided``: the one routing rule.

    A step that ends, waits or fails says so, and that stands. A step with nothing to stop for says ``continue``,
    and then the thread's status decides: a thread that is not running (a retried step that finds it paused or
    ended, or a pause, cancel or question that another writer committed while the step ran) routes by its status,
    so a pause that arrived mid-step takes effect at once instead of after one more model call.
    """
    return ROUTE_OF_STATUS[state.status] if decided == "continue" else decided


def _limit_reached(limits: Limits, state: ThreadState, thread: Thread) -> str | None:
    if state.steps_since_review >= limits.max_steps:
        return f"reached the limit of {limits.max_steps} model calls"
    if limits.max_cost_usd is not None and state.cost_since_review >= limits.max_cost_usd:
        return f"spent ${state.cost_since_review:.4f}, the budget is ${limits.max_cost_usd:.4f}"
    if limits.max_tokens is not None and state.tokens_since_review >= limits.max_tokens:
        return f"used {state.tokens_since_review} tokens, the budget is {limits.max_tokens}"
    if (stale := stale_results(thread)) >= limits.max_stale_results:
        return f"its last {stale} tool results brought no new information"
    return None


def _over_daily_budget(agent: Agent, state: ThreadState, ctx: StepContext) -> str | None:
    budget, spent = agent.limits.max_daily_cost_usd, ctx.spent_today
    if budget is None or spent is None or spent < budget:
        return None
    today = ctx.clock().date()
    if state.last_review_at is not None and state.last_review_at.date() == today:
        return None  # a person already said to go on today
    return f"the {agent.name} agent spent ${spent:.4f} today, its daily budget is ${budget:.4f}"


def _escalate(b: _Builder, agent: Agent, ctx: StepContext, origin: Literal["errors", "limit"], why: str) -> StepOutcome:
    """A limit or repeated errors: ask a human (default) or fail, per the agent's limits."""
    if agent.limits.on_limit == "fail":
        b.add(Failed, reason=why)
        return b.outcome("failed")
    b.add(
        HumanRequest,
        kind="question",
        approval_id=ctx.ids("apr"),
        question=f"The {agent.name} agent stopped: {why}. How should it continue?",
        context="Answer with guidance for the agent, or tell it to stop.",
        urgency="high",
        origin=origin,
    )
    return b.outcome("await_human")


def _prefetch(b: _Builder, agent: Agent, ctx: StepContext) -> None:
    if not agent.prefetch:
        return
    source = b.thread if b.thread.base is None or ctx.history is None else uncompacted(b.thread, ctx.history())
    for fetch in agent.prefetch:
        tool = agent.registry[fetch.tool]
        call_id = ctx.ids("pre")
        raw_args = fetch.args_for(source)
        checked = agent.registry.validate(tool.name, raw_args)
        if isinstance(checked, InvalidCall):
            raise ValueError(f"agent {agent.name}: prefetch {fetch.tool} has invalid args: {checked.message}")
        b.add(ToolCall, call_id=call_id, tool=tool.name, args=checked.args_json, prefetch=True)
        _run(b, agent, checked, call_id)
    b.commit()  # a retried model call must not fetch again


def _run(b: _Builder, agent: Agent, call: ValidCall, call_id: str) -> None:
    with b.observer.span("tool", call.tool.name):
        ok, value = agent.registry.run(call, ToolContext(b.thread.id, call_id, agent.name))
    b.tool_runs += 1
    if ok and (size := len(json.dumps(value, ensure_ascii=False).encode())) > agent.limits.max_result_bytes:
        ok, value = False, f"the result is {size} bytes; the limit is {agent.limits.max_result_bytes} (not stored)"
    if ok:
        b.add(ToolResult, call_id=call_id, tool=call.tool.name, result=value)
    else:
        b.add(Error, kind="tool_failed", message=str(value), call_id=call_id, tool=call.tool.name)


def _finish_pending(b: _Builder, agent: Agent, pending: PendingCall, ctx: StepContext) -> StepOutcome:
    """Run an approved call, or settle an intent that has no result (the effect ledger)."""
    call = pending.call
    if pending.state == "awaiting_approval":
        return b.outcome("await_human")
    if call.tool not in agent.registry or agent.registry[call.tool].fn is None:
        b.add(
            Error,
            kind="unknown_tool",
            message=f"tool {call.tool!r} is no longer available",
            call_id=call.call_id,
            tool=call.tool,
        )
        return b.outcome("continue")
    checked = agent.registry.validate(call.tool, pending.args)
    if isinstance(checked, InvalidCall):
        b.add(Error, kind=checked.kind, message=checked.message, call_id=call.call_id, tool=call.tool)
        return b.outcome("continue")
    if checked.tool.policy_for(checked.args) == "deny":  # an edit may not turn a call into a forbidden one
        b.add(
            Error,
            kind="denied",
            message=f"{call.tool} is not allowed with the edited arguments",
            call_id=call.call_id,
            tool=call.tool,
        )
        return b.outcome("continue")
    if pending.state == "ready":
        b.add(ToolStarted, call_id=call.call_id)
        b.commit()
        _run(b, agent, checked, call.call_id)
        return b.outcome("continue")
    # "dispatched": the intent was committed earlier and may or may not have run.
    if checked.tool.idempotent:
        _run(b, agent, checked, call.call_id)
        return b.outcome("continue")
    b.add(
        Error,
        kind="outcome_unknown",
        message=f"{call.tool} may or may not have run (the step stopped before recording its result); "
        "it was not run again",
        call_id=call.call_id,
        tool=call.tool,
    )
    b.add(
        HumanRequest,
        kind="question",
        approval_id=ctx.ids("apr"),
        question=f"Did {call.tool} with {clip(str(pending.args), 300)} take effect? The agent will not retry it "
        "on its own.",
        context="A step stopped between starting this tool and recording its result.",
        urgency="high",
        origin="ledger",
    )
    return b.outcome("await_human")


def system_prompt(agent: Agent, prompt: Prompt) -> str:
    """The system prompt an agent's model calls get: its prompt file with the agent and tool names filled in."""
    return prompt.render(agent=agent.name, tools=", ".join(agent.registry.names))


def model_request(
    thread: Thread, agent: Agent, prompt: Prompt, model: str, whole: Callable[[], Thread] | None = None
) -> LLMRequest:
    """The one model request a step makes for ``thread`` (evals and the timeline rebuild it the same way).

    For a compacted thread the context is rendered from what it keeps (exactly the whole thread's render, or read
    from ``whole()``), and ``events`` reads the whole log only if something looks at them (a scripted model)."""
    events = thread.events if thread.base is None else WholeEvents(thread, whole)
    return LLMRequest(
        model,
        system_prompt(agent, prompt),
        render_context(thread, agent.context, whole),
        agent.registry.specs(),
        events,
        prompt.hash,
    )


def _call_model(b: _Builder, agent: Agent, llm: LLM, ctx: StepContext) -> tuple[LLMResponse | None, Prompt]:
    thread = b.thread.extend(b.events) if b.events else b.thread
    prompt = ctx.prompts.load(agent.prompt_id, agent.prompt_version_for(thread))
    model = agent.model_for(ctx.model)
    request = model_request(thread, agent, prompt, model, ctx.history)
    started = time.perf_counter()
    b.llm_calls += 1
    try:
        with ctx.observer.span("llm", model):
            response = llm.complete(request)
    except LLMRequestError as exc:
        b.add(
            LLMCall,
            model=model,
            prompt_id=prompt.ref,
            prompt_hash=prompt.hash,
            input_tokens=0,
            output_tokens=0,
            cost_usd=0.0,
            latency_ms=_ms(started),
            output={"error": clip(str(exc))},
        )
        b.add(Error, kind=exc.kind, message=clip(str(exc)))
        return None, prompt
    output: dict[str, JSON] = (
        {"name": response.tool, "arguments": response.arguments} if response.tool else {"text": clip(response.text)}
    )
    usage = response.usage
    b.add(
        LLMCall,
        model=model,
        prompt_id=prompt.ref,
        prompt_hash=prompt.hash,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=cost_usd(model, usage.input_tokens, usage.output_tokens),
        latency_ms=_ms(started),
        output=output,
    )
    return response, prompt


def _ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)


def interpret(agent: Agent, response: LLMResponse) -> ValidCall | InvalidCall:
    """The tool call the model made, or why it is not one the step may run.

    The provider's stop reason is read first: a call cut off at the output limit is reported as truncated (not
    as the invalid JSON it leaves), and a cut-off call whose fragment happens to validate must not run with half
    its arguments. Refusals, guardrails, malformed calls and a full context window likewise get their own error
    kinds, so the model (and a person reading the thread) sees what actually happened.
    """
    problem = response.problem
    if problem is not None:
        message = response.stop_message or f"the model stopped without a usable tool call ({problem})"
        return InvalidCall(problem, clip(message), response.tool)
    return agent.registry.validate(response.tool, response.arguments)


def _decide(b: _Builder, agent: Agent, llm: LLM, ctx: StepContext, state: ThreadState) -> StepOutcome:
    response, _ = _call_model(b, agent, llm, ctx)
    if response is None:
        return _after_error(b, agent, ctx, state)
    checked = interpret(agent, response)
    if isinstance(checked, InvalidCall):
        b.add(Error, kind=checked.kind, message=checked.message, tool=checked.tool)
        return _after_error(b, agent, ctx, state)
    tool, args = checked.tool, checked.args_json
    repeats = state.calls_by_signature.get(call_signature(tool.name, args), 0) + 1
    call_id = ctx.ids("call")
    b.add(ToolCall, call_id=call_id, tool=tool.name, args=args)
    if tool.name == DONE_TOOL:
        b.add(Done, answer=str(args["answer"]), data=typed_answer(checked.args))
        return b.outcome("done")
    if tool.name == ASK_TOOL:
        ask = checked.args
        assert isinstance(ask, RequestHumanInput)
        b.add(
            HumanRequest,
            kind="question",
            approval_id=ctx.ids("apr"),
            call_id=call_id,
            question=ask.question,
            context=ask.context,
            urgency=ask.urgency,
            format=ask.format,
            choices=ask.choices,
            origin="model",
        )
        return b.outcome("await_human")
    if repeats >= agent.limits.max_repeats:
        b.add(
            Error,
            kind="limit",
            message=f"{tool.name} was called {repeats} times with the same arguments; not run",
            call_id=call_id,
            tool=tool.name,
        )
        return _escalate(b, agent, ctx, "limit", f"it repeated the same {tool.name} call {repeats} times")
    policy, why = tool.policy_decision(checked.args)
    why = why or tool.policy_reason
    if policy == "deny":
        b.add(
            Error,
            kind="denied",
            message=f"{tool.name} is not allowed with these arguments",
            call_id=call_id,
            tool=tool.name,
        )
        return _after_error(b, agent, ctx, state)
    if policy == "needs_approval":
        b.add(
            HumanRequest,
            kind="approval",
            approval_id=ctx.ids("apr"),
            call_id=call_id,
            question=f"Approve {tool.name} with {clip(_args_text(args), 500)}?",
            context=f"{tool.description}\n\nAsked because {why}" if why else tool.description,
            format="yes_no",
            origin="policy",
        )
        return b.outcome("await_human")
    b.commit()
    _run(b, agent, checked, call_id)
    if isinstance(b.events[-1], Error):
        return _after_error(b, agent, ctx, state)
    return b.outcome("continue")


def _after_error(b: _Builder, agent: Agent, ctx: StepContext, state: ThreadState) -> StepOutcome:
    """Count this step's error with the ones before it; at the limit, escalate (Factor 9)."""
    errors = state.consecutive_errors + sum(isinstance(e, Error) for e in b.events)
    if errors >= agent.limits.max_consecutive_errors:
        last = next(e for e in reversed(b.events) if isinstance(e, Error))
        return _escalate(b, agent, ctx, "errors", f"{errors} errors in a row, the last: {clip(last.message, 200)}")
    return b.outcome("continue")


def _args_text(args: Mapping[str, JSON]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items()) or "no arguments"
