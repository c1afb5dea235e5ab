"""Replay and fork: a thread is a complete record, so reproducing it and branching it are just reloading
events (Factor 5).

**Replay** re-runs a thread's steps with today's code and compares what they produce with what was
recorded. Nothing outside the process is touched:

- the model is a :class:`ReplayLLM` that answers the n-th model call with the n-th recorded
  ``llm_call`` output (and its recorded token counts), so a replay costs nothing;
- tools do NOT run again. A replay runs the agent with each tool's function swapped for one that
  returns the recorded ``tool_result`` for that call id (or re-raises the recorded failure), so a
  replayed deploy deploys nothing. Policies, argument validation and the effect ledger are today's
  code, which is what a replay tests. When the code wants to run a tool the recording never saw a
  result for, the replay treats it like the original step dying after its checkpoint (what the
  recording shows when a Lambda did die: an ``outcome_unknown`` error next) or reports a difference;
- events the step does not make (user input, human responses, pause, resume, a cancel) are
  re-applied from the recording where they happened;
- the clock and the id factory hand out the recorded timestamps and ids, and each step records the
  model string the original call recorded, so an unchanged step produces identical events.

``latency_ms`` is a measurement of the original call, not a decision: it is the one field not compared.
A prompt file edited since the thread ran shows up as a different ``prompt_hash`` on the first model call.

**Fork** copies the first ``at`` events of a thread into a new thread that then lives on its own
(optionally with another prompt version): a question left open at the cut is asked again in the fork
under a new approval id, so answering one thread never answers the other.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from core.kernel.agent import Agent, StepContext, step
from core.kernel.agent import new_id as fresh_id
from core.kernel.errors import MAX_ERROR_CHARS
from core.kernel.events import (
    JSON,
    Error,
    Event,
    Failed,
    HumanRequest,
    HumanResponse,
    LLMCall,
    Paused,
    Resumed,
    Retried,
    ToolCall,
    ToolResult,
    UserInput,
    dump_event,
    utcnow,
)
from core.kernel.mcp import with_pinned_tools
from core.kernel.model import LLMRequest, LLMRequestError, LLMResponse, Usage
from core.kernel.prompts import PromptError, PromptLibrary
from core.kernel.store import ThreadStore
from core.kernel.thread import Thread, fold
from core.kernel.tools import Tool, ToolContext
from core.services.control import ControlError, Executions

FORKED_FROM = "forked_from"
FORKED_AT = "forked_at"
"""Labels of a fork: the thread it came from and how many of its events it copied."""
NOT_FORKED_LABELS = frozenset({"idempotency_key", "reply_to", "reply_format"})
"""Labels a fork does not copy: it is not the launch the key named, and it must not answer the original caller
(a trigger's reply address); an operator follows a fork through the API."""

_CLIPPED = re.compile(r"\A(?P<head>.*)\.\.\. \[(?P<more>\d+) more chars\]\Z", re.DOTALL)


# --- the recorded model and tools ---------------------------------------------------------------------------


class ReplayExhaustedError(RuntimeError):
    """The code asked for more model calls than the recording has."""


def _unclip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """A text that :func:`core.kernel.errors.clip` shortens to exactly ``text`` (the original is not recorded)."""
    match = _CLIPPED.match(text)
    if match is None or len(match["head"]) != limit:
        return text
    return match["head"] + "." * int(match["more"])


class ReplayLLM:
    """Answers the n-th model call of a thread with the n-th recorded one: no provider, no cost."""

    name = "replay"

    def __init__(self, recorded: Sequence[LLMCall]) -> None:
        self.recorded = tuple(recorded)

    def complete(self, request: LLMRequest) -> LLMResponse:
        n = sum(isinstance(e, LLMCall) for e in request.events)
        if n >= len(self.recorded):
            raise ReplayExhaustedError(
                f"the code asked for model call #{n + 1}; the recording has {len(self.recorded)}"
            )
        call = self.recorded[n]
        usage = Usage(call.input_tokens, call.output_tokens)
        output = call.output
        if isinstance(output.get("name"), str):
            arguments = output.get("arguments", {})
            raw: str | dict[str, Any] = arguments if isinstance(arguments, str | dict) else json.dumps(arguments)
            return LLMResponse(tool=output["name"], arguments=raw, usage=usage, model=call.model)
        if "error" in output:
            provider, _, message = _unclip(str(output["error"])).partition(": ")
            raise LLMRequestError(provider, message)
        return LLMResponse(tool=None, text=_unclip(str(output.get("text", ""))), usage=usage, model=call.model)


class _NotRecorded(BaseException):
    """The code ran a tool whose outcome the recording does not have. A BaseException: it must get past the
    registry's ``except Exception``, which would turn it into a tool error event."""

    def __init__(self, tool: str, call_id: str) -> None:
        super().__init__(tool, call_id)
        self.tool = tool
        self.call_id = call_id


def _recorded_failure(message: str) -> Exception:
    """An exception that the registry compacts to exactly ``message`` (``TypeName: text``)."""
    full = _unclip(message)
    type_name, _, text = full.partition(": ")
    kind: type[Exception] = type(type_name or "Exception", (Exception,), {})
    return kind(text) if text else kind()


def replay_tools(agent: Agent, recorded: Sequence[Event]) -> Agent:
    """``agent`` with every tool function replaced by the recorded outcome of the same call id (its MCP tools those
    the recorded thread pinned, ARCHITECTURE.md "MCP tools")."""
    if agent.mcp:
        pinned = Thread.model_construct(id="replay", agent=agent.name, events=tuple(recorded), labels={}, base=None)
        agent = with_pinned_tools(agent, pinned)
    results = {e.call_id: e.result for e in recorded if isinstance(e, ToolResult)}
    failures = {
        e.call_id: e.message for e in recorded if isinstance(e, Error) and e.kind == "tool_failed" and e.call_id
    }

    def recorded_outcome(tool: str) -> Callable[[Any, ToolContext], JSON]:
        def run(_: Any, ctx: ToolContext) -> JSON:
            if ctx.call_id in results:
                return results[ctx.call_id]
            if ctx.call_id in failures:
                raise _recorded_failure(failures[ctx.call_id])
            raise _NotRecorded(tool, ctx.call_id)

        return run

    tools: tuple[Tool[Any], ...] = tuple(
        t if t.fn is None else replace(t, fn=recorded_outcome(t.name)) for t in agent.tools
    )
    return replace(agent, tools=tools)


class _RecordedIds:
    """Hands out the recorded ids in order, per prefix (``call``, ``pre``, ``apr``)."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.queues: dict[str, deque[str]] = defaultdict(deque)
        for event in events:
            if isinstance(event, ToolCall):
                self.queues["pre" if event.prefetch else "call"].append(event.call_id)
            elif isinstance(event, HumanRequest):
                self.queues["apr"].append(event.approval_id)
        self.extra = 0

    def __call__(self, prefix: str) -> str:
        queue = self.queues[prefix]
        if queue:
            return queue.popleft()
        self.extra += 1
        return f"{prefix}_replay{self.extra}"


class _RecordedClock:
    """The timestamps of the recorded events a step is expected to produce, in order."""

    def __init__(self, events: Sequence[Event]) -> None:
        self.events = events
        self.position = 0

    def __call__(self) -> datetime:
        while self.position < len(self.events) and _external(self.events[self.position]):
            self.position += 1
        index = min(self.position, len(self.events) - 1)
        self.position += 1
        return self.events[index].ts if index >= 0 else utcnow()


def _external(event: Event) -> bool:
    """Events a step never makes: they come from people and front doors, and a replay re-applies them."""
    if isinstance(event, Failed):
        return event.cancelled or event.error is not None
    return isinstance(event, UserInput | HumanResponse | Paused | Resumed | Retried)


# --- replay --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """The first place where the replay and the recording disagree. An event is None where one has none."""

    seq: int
    recorded: Event | None
    replayed: Event | None
    note: str = ""


@dataclass(frozen=True)
class ReplayResult:
    thread_id: str
    agent: str
    recorded_events: int
    steps: int
    replayed_from: int
    difference: Difference | None = None

    @property
    def ok(self) -> bool:
        return self.difference is None

    def render(self) -> str:
        head = f"replay of {self.thread_id} ({self.agent}, {self.recorded_events} events"
        head += f", copied up to seq {self.replayed_from - 1})" if self.replayed_from else ")"
        if self.difference is None:
            return f"{head}: identical, {self.steps} steps re-run from the recorded model calls; no tool ran again"
        d = self.difference
        lines = [f"{head}: DIFFERS at seq {d.seq} (after {self.steps} steps)"]
        lines.append(f"  recorded: {_event_json(d.recorded)}")
        lines.append(f"  replayed: {_event_json(d.replayed)}")
        if d.note:
            lines.append(f"  {d.note}")
        return "\n".join(lines)


def _event_json(event: Event | None) -> str:
    return "(none)" if event is None else json.dumps(dump_event(event), sort_keys=True)


def _same(replayed: Event, recorded: Event) -> bool:
    """Equal but for the seq (a write that landed mid-step may have moved it) and the measured latency."""
    update: dict[str, Any] = {"seq": recorded.seq}
    if isinstance(replayed, LLMCall) and isinstance(recorded, LLMCall):
        update["latency_ms"] = recorded.latency_ms
    return replayed.model_copy(update=update) == recorded


def replay(thread: Thread, agent: Agent, *, prompts: PromptLibrary | None = None) -> ReplayResult:
    """Re-run ``thread``'s steps with ``agent`` (today's code) and compare them with the recording.

    A fork's copied events (its ``forked_at`` label) were not made by its own steps: they are taken
    as given, and the replay starts after them.
    """
    prompts = prompts or PromptLibrary()
    recorded = thread.events
    copied = thread.labels.get(FORKED_AT, "")
    start = min(int(copied), len(recorded)) if copied.isdigit() else 0
    stand_in = replay_tools(agent, recorded)
    llm = ReplayLLM([e for e in recorded if isinstance(e, LLMCall)])
    ids = _RecordedIds(recorded[start:])
    clock = _RecordedClock(recorded)
    steps = 0

    def result(difference: Difference | None = None) -> ReplayResult:
        return ReplayResult(thread.id, thread.agent, len(recorded), steps, start, difference)

    i = start
    while True:
        while i < len(recorded) and _external(recorded[i]):
            i += 1
        if i >= len(recorded):
            return result()
        current = thread.model_copy(update={"events": recorded[:i]})
        committed: list[Event] = []
        clock.position = i
        # The model the original step recorded is the override (as STEPFOLD_MODEL was then): the step resolves it
        # against the agent's own with Agent.model_for, the same rule the wiring uses, so the llm_call matches.
        model = next((e.model for e in recorded[i:] if isinstance(e, LLMCall)), None)
        ctx = StepContext(prompts=prompts, clock=clock, ids=ids, checkpoint=committed.extend, model=model)
        steps += 1
        interrupted: _NotRecorded | None = None
        try:
            produced: Sequence[Event] = step(current, stand_in, llm, ctx).events
        except _NotRecorded as stop:
            produced, interrupted = committed, stop
        except ReplayExhaustedError as exc:
            return result(Difference(recorded[i].seq, recorded[i], None, str(exc)))
        if not produced:
            note = (
                _ran_unrecorded(interrupted)
                if interrupted is not None
                else f"the step made no events (the thread is {fold(current).status}); the recording continues"
            )
            return result(Difference(recorded[i].seq, recorded[i], None, note))
        for event in produced:
            while i < len(recorded) and _external(recorded[i]):
                i += 1  # written by someone else while the original step ran
            if i >= len(recorded):
                return result(Difference(event.seq, None, event, "the replay made more events than were recorded"))
            if not _same(event, recorded[i]):
                return result(Difference(recorded[i].seq, recorded[i], event))
            i += 1
        if interrupted is not None and not _crashed_here(recorded, i, interrupted.call_id):
            nxt = next(e for e in recorded[i:] if not _external(e))
            return result(Difference(nxt.seq, nxt, None, _ran_unrecorded(interrupted)))


def _ran_unrecorded(stop: _NotRecorded) -> str:
    return (
        f"the code ran {stop.tool} (call {stop.call_id}) here, which the recording has no outcome for; "
        "a replay never runs real tools"
    )


def _crashed_here(recorded: Sequence[Event], i: int, call_id: str) -> bool:
    """Whether the recording shows the original step dying here: it ends, or the ledger settles the call next."""
    rest = [e for e in recorded[i:] if not _external(e)]
    if not rest:
        return True
    nxt = rest[0]
    return isinstance(nxt, Error) and nxt.kind == "outcome_unknown" and nxt.call_id == call_id


# --- fork ----------------------------------------------------------------------------------------------------


class ForkError(ControlError):
    """A fork that cannot be made as asked (status 400)."""


def check_cut(thread: Thread, at: int) -> None:
    """Refuse a cut that would leave the fork mid-step; :class:`ForkError` says where to cut instead."""
    if not 1 <= at <= thread.version:
        raise ForkError(f"--at must be between 1 and {thread.version} (the number of events to copy), got {at}")
    cut = thread.model_copy(update={"events": thread.events[:at]})
    last = cut.events[-1]
    if isinstance(last, LLMCall):
        raise ForkError(
            f"seq {last.seq} is a model call whose decision is recorded at seq {at}: fork at {last.seq} to decide "
            f"again, or after the decision"
        )
    pending = fold(cut).pending
    if pending is not None and pending.state != "awaiting_approval":
        call = pending.call
        raise ForkError(
            f"the first {at} events leave {call.tool} (call {call.call_id}, seq {call.seq}) decided but without a "
            f"result, and the fork would have to run it again: fork at {call.seq} to decide again, or after its result"
        )


def fork(
    store: ThreadStore,
    thread_id: str,
    at: int,
    *,
    new_id: str,
    prompt_version: int | None = None,
    executions: Executions | None = None,
    agents: Mapping[str, Agent] | None = None,
    prompts: PromptLibrary | None = None,
    ids: Callable[[str], str] = fresh_id,
) -> Thread:
    """Create thread ``new_id`` from the first ``at`` events of ``thread_id`` and start it.

    Labels are copied (but for :data:`NOT_FORKED_LABELS`), plus ``forked_from`` / ``forked_at``;
    ``prompt_version`` re-pins the prompt the fork's next model calls use (checked against ``prompts``
    when ``agents`` and ``prompts`` are given). A human request open at the cut is copied under a new
    approval id, so the fork waits for its own answer. With ``executions``, a fork that can go on (running,
    or waiting for a human, whose wait the execution opens) gets its execution ``<new_id>-<at>``.
    """
    original = store.load(thread_id)
    check_cut(original, at)
    labels = {k: v for k, v in original.labels.items() if k not in NOT_FORKED_LABELS}
    labels |= {FORKED_FROM: thread_id, FORKED_AT: str(at)}
    if prompt_version is not None:
        if prompt_version < 1:
            raise ForkError(f"a prompt version is a positive number, got {prompt_version}")
        if agents is not None and prompts is not None and original.agent in agents:
            try:
                prompts.load(agents[original.agent].prompt_id, prompt_version)
            except PromptError as exc:
                raise ForkError(str(exc)) from None
        labels["prompt_version"] = str(prompt_version)
    events = list(original.events[:at])
    cut = original.model_copy(update={"events": tuple(events)})
    open_request = fold(cut).open_request
    if open_request is not None:
        renamed = open_request.model_copy(update={"approval_id": ids("apr")})
        events[open_request.seq] = renamed
    forked = store.create(Thread(id=new_id, agent=original.agent, events=tuple(events), labels=labels))
    if executions is not None and fold(forked).status in ("running", "awaiting_human"):
        executions.start(new_id, forked.version)
    return forked
