"""A thread as a page a person can read (Factor 3, 5): every step, what it cost, and what the model saw.

:func:`render_timeline` turns a thread's events into a server-rendered timeline: the user's input, each model
decision with its prompt version, tokens, cost and latency, tool calls with their arguments and results (large
ones collapsed), errors, requests for a person and who answered them, and the status the events fold to.
:func:`model_view` rebuilds what the model saw at one model call, with the same ``core.kernel.context.render`` and
agent options the step used; :func:`render_context` shows it. Nothing here touches the store or the network:
``functions/api.py`` loads the thread and serves the HTML. This module decides what each page shows; the templates
(``templates/timeline.html``, ``timeline_event.html``, ``model_view.html``) lay it out and escape every value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, assert_never

from core.kernel.agent import Agent, system_prompt
from core.kernel.context import render
from core.kernel.events import (
    Done,
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
    ToolsListed,
    ToolStarted,
    UserInput,
)
from core.kernel.mcp import with_pinned_tools
from core.kernel.prompts import PromptError, PromptLibrary
from core.kernel.thread import Thread, fold
from functions._html import pretty
from functions._html import render as render_page

SHOWN_CHARS = 2_000
"""Longer texts (tool results, arguments, inputs) are collapsed in a ``<details>`` showing this many characters."""
MAX_EVENTS = 1_000
"""A longer thread shows its first :data:`HEAD_EVENTS` and its latest events, so the page stays well under 6 MB."""
HEAD_EVENTS = 100

_STATUS_WORDS = {
    "running": "running",
    "awaiting_human": "awaiting human",
    "paused": "paused",
    "done": "done",
    "failed": "failed",
}
_ORIGINS = {
    "model": "the model asked",
    "policy": "the tool's policy requires a person",
    "errors": "too many errors in a row",
    "limit": "a limit was reached",
    "ledger": "a tool's outcome is unknown",
}


# --- what the model saw --------------------------------------------------------------------------


class ViewError(Exception):
    """A request for a view the thread cannot give; ``status`` and ``code`` are the API's."""

    status = 400
    code = "bad_request"


class SeqOutOfRangeError(ViewError):
    """The seq is past the thread's last event."""

    code = "seq_out_of_range"


class NoModelCallError(ViewError):
    """No model call at or after the seq."""

    status = 404
    code = "no_model_call"


@dataclass(frozen=True)
class ModelView:
    """What the model saw at one model call: the system prompt and the rendered thread, and what it cost."""

    thread_id: str
    call: LLMCall
    step: int
    prompt_id: str
    prompt_version: int | None
    prompt_current: bool
    """The prompt file's hash today is the one recorded on the call (so ``system`` is the text it was sent)."""
    system: str | None
    """The rendered system prompt; None when the prompt file is gone."""
    context: str
    tokens: int
    max_tokens: int
    tools: tuple[str, ...]
    previous: int | None
    """The seq of the model call before this one."""
    next: int | None

    @property
    def seq(self) -> int:
        return self.call.seq


def model_view(thread: Thread, agent: Agent, prompts: PromptLibrary, seq: int | None = None) -> ModelView:
    """What the model saw at the first model call at or after ``seq`` (the latest call when None).

    The context is ``core.kernel.context.render`` of the events before that call with the agent's context options, as
    the step rendered it; the system prompt is the version recorded on the call, rendered as the step does.
    """
    calls = [event for event in thread.events if isinstance(event, LLMCall)]
    if seq is not None and seq >= thread.version:
        raise SeqOutOfRangeError(
            f"thread {thread.id} has {thread.version} events (seq 0 to {thread.version - 1}); seq {seq} is past its end"
        )
    found = [c for c in calls if seq is None or c.seq >= seq]
    if not found:
        if seq is None:
            raise NoModelCallError(f"thread {thread.id} has made no model call yet")
        seqs = ", ".join(str(c.seq) for c in calls)
        raise NoModelCallError(
            f"thread {thread.id} has no model call at or after seq {seq}; "
            + (f"its model calls are at seq {seqs}" if calls else "it has made none so far")
        )
    call = found[0] if seq is not None else found[-1]
    step = calls.index(call)
    before = thread.model_copy(update={"events": thread.events[: call.seq]})
    agent = with_pinned_tools(agent, before)  # the MCP tools it had then (ARCHITECTURE.md "MCP tools")
    context = render(before, agent.context)
    prompt_id, _, version_text = call.prompt_id.rpartition("/v")
    version = int(version_text) if prompt_id and version_text.isdigit() else None
    system: str | None = None
    current = False
    if version is not None:
        try:
            prompt = prompts.load(prompt_id, version)
        except PromptError:
            pass
        else:
            system = system_prompt(agent, prompt)
            current = prompt.hash == call.prompt_hash
    return ModelView(
        thread_id=thread.id,
        call=call,
        step=step + 1,
        prompt_id=prompt_id or call.prompt_id,
        prompt_version=version,
        prompt_current=current,
        system=system,
        context=context,
        tokens=agent.context.count_tokens(context),
        max_tokens=agent.context.max_tokens,
        tools=tuple(agent.registry.names),
        previous=calls[step - 1].seq if step > 0 else None,
        next=calls[step + 1].seq if step + 1 < len(calls) else None,
    )


# --- the pages: what each shows is decided here; templates/timeline*.html and model_view.html lay it out ----


@dataclass(frozen=True)
class _Index:
    """What one event's rendering needs to know about the others."""

    steps: dict[int, int]
    tools: dict[str, str]
    requests: dict[str, HumanRequest]
    called: set[int]
    """Model calls whose tool call was recorded (the next event): its arguments are shown there."""

    @classmethod
    def of(cls, events: tuple[Event, ...]) -> _Index:
        calls = [ev.seq for ev in events if isinstance(ev, LLMCall)]
        return cls(
            steps={seq: n for n, seq in enumerate(calls, start=1)},
            tools={ev.call_id: ev.tool for ev in events if isinstance(ev, ToolCall)},
            requests={ev.approval_id: ev for ev in events if isinstance(ev, HumanRequest)},
            called={seq for seq in calls if seq + 1 < len(events) and isinstance(events[seq + 1], ToolCall)},
        )


@dataclass(frozen=True)
class _Item:
    """One timeline item (``templates/timeline_event.html``): the event, its colour, and what the others tell."""

    event: Event
    kind: str
    """The item's class, which colours it: input, llm, tool, result, err, human, end or failed."""
    step: int = 0
    """A model call's step number."""
    chose: str | None = None
    """The tool a model call chose."""
    unrun: str | None = None
    """The arguments of a model call whose tool call was never recorded (shown here, since nowhere else)."""
    said: str | None = None
    """The text a model call answered with, instead of a tool."""
    error: str = ""
    """The provider's error, when a model call failed."""
    tool: str = ""
    """The tool a call id belongs to (a started tool; a decision on an approval of that tool)."""
    why: str = ""
    """Why a person was asked, in words."""


def _llm_call(event: LLMCall, index: _Index) -> _Item:
    output: dict[str, Any] = event.output
    name, arguments = output.get("name"), output.get("arguments")
    step = index.steps[event.seq]
    if isinstance(name, str):
        unrun = None if event.seq in index.called or arguments is None else pretty(arguments)
        return _Item(event, "llm", step=step, chose=name, unrun=unrun)
    if "text" in output:
        return _Item(event, "llm", step=step, said=str(output["text"]))
    return _Item(event, "llm", step=step, error=str(output.get("error", "")))


def _response(event: HumanResponse, index: _Index) -> _Item:
    request = index.requests.get(event.approval_id)
    tool = index.tools.get(request.call_id) if request is not None and request.call_id else None
    approved = tool if tool and request is not None and request.kind == "approval" else ""
    return _Item(event, "human", tool=approved)


def timeline_item(event: Event, index: _Index) -> _Item:
    """One event as a timeline item: its colour and what it needs from the rest of the thread."""
    match event:
        case UserInput():
            return _Item(event, "input")
        case LLMCall():
            return _llm_call(event, index)
        case ToolCall():
            return _Item(event, "tool")
        case ToolStarted():
            return _Item(event, "tool", tool=index.tools.get(event.call_id, "?"))
        case ToolResult():
            return _Item(event, "result")
        case Error():
            return _Item(event, "err")
        case HumanRequest():
            return _Item(event, "human", why=_ORIGINS[event.origin])
        case HumanResponse():
            return _response(event, index)
        case Paused() | Resumed() | Retried():
            return _Item(event, "human")
        case Done():
            return _Item(event, "end")
        case Failed():
            return _Item(event, "failed")
        case ToolsListed():
            return _Item(event, "tool")
        case _:
            assert_never(event)


def render_timeline(thread: Thread, *, model_links: bool = True) -> str:
    """The whole page for ``GET /threads/{id}/view``; without ``model_links`` (the read-only view an approval link
    opens, ``GET /approvals/{id}/thread``) it leaves out the links to each call's context, which need an API key."""
    index = _Index.of(thread.events)
    events = thread.events
    gap = None
    if len(events) > MAX_EVENTS:
        left_out = len(events) - MAX_EVENTS
        gap = {"count": left_out, "first": HEAD_EVENTS, "last": HEAD_EVENTS + left_out - 1}
        head, tail = events[:HEAD_EVENTS], events[-(MAX_EVENTS - HEAD_EVENTS) :]
    else:
        head, tail = events, ()
    state = fold(thread)
    return render_page(
        "timeline.html",
        thread=thread,
        state=state,
        status=_STATUS_WORDS[state.status],
        head=[timeline_item(ev, index) for ev in head],
        gap=gap,
        tail=[timeline_item(ev, index) for ev in tail],
        shown_chars=SHOWN_CHARS,
        model_links=model_links,
    )


def render_context(view: ModelView) -> str:
    """The page for ``GET /threads/{id}/context.html?seq=N``: the system prompt and context of one model call."""
    return render_page("model_view.html", view=view)
