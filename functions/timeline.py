"""A thread as a page a person can read (Factor 3, 5): every step, what it cost, and what the model saw.

:func:`render_timeline` turns a thread's events into a server-rendered timeline: the user's input, each model
decision with its prompt version, tokens, cost and latency, tool calls with their arguments and results (large
ones collapsed), errors, requests for a person and who answered them, and the status the events fold to.
:func:`model_view` rebuilds what the model saw at one model call, with the same ``core.context.render`` and
agent options the step used; :func:`render_context` shows it. Nothing here touches the store or the network:
``functions/api.py`` loads the thread and serves the HTML. Every value on a page is escaped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, assert_never

from core.agent import Agent, system_prompt
from core.context import render
from core.events import (
    JSON,
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
    ToolStarted,
    UserInput,
)
from core.prompts import PromptError, PromptLibrary
from core.thread import Thread, fold
from functions._html import document, e, usd, utc

SHOWN_CHARS = 2_000
"""Longer texts (tool results, arguments, inputs) are collapsed in a ``<details>`` showing this many characters."""
MAX_EVENTS = 1_000
"""A longer thread shows its first :data:`HEAD_EVENTS` and its latest events, so the page stays well under 6 MB."""
HEAD_EVENTS = 100

CSS = """
ol.timeline{list-style:none;padding:0;margin:0}
.ev{border-left:4px solid GrayText;padding:.1rem 0 .1rem .75rem;margin:0 0 1.1rem}
.ev.llm{border-left-color:#0969da}
.ev.tool{border-left-color:#8250df}
.ev.result{border-left-color:#1a7f37}
.ev.err{border-left-color:#cf222e}
.ev.human{border-left-color:#bf8700}
.ev.end{border-left-color:#1a7f37}
.ev.failed{border-left-color:#cf222e}
.meta,.facts{font-size:.85rem;margin:0 0 .25rem;overflow-wrap:anywhere}
.meta{opacity:.8}
.facts span{white-space:nowrap}
.text{white-space:pre-wrap;overflow-wrap:anywhere}
details{margin:.25rem 0}
summary{cursor:pointer;font-size:.9rem}
nav p{margin:.25rem 0}
"""

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

    The context is ``core.context.render`` of the events before that call with the agent's context options, as
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


# --- pieces --------------------------------------------------------------------------------------


def _size(text: str) -> str:
    size = len(text.encode())
    shown = f"{size:,} bytes" if size < 10_000 else f"{size / 1000:,.1f} kB"
    return f"{len(text):,} characters, {shown}"


def _block(text: str, what: str, *, code: bool = True) -> str:
    """``text`` in a ``<pre>`` (or a paragraph); longer than :data:`SHOWN_CHARS`, collapsed with its size."""
    if len(text) <= SHOWN_CHARS:
        return f"<pre>{e(text)}</pre>" if code else f'<p class="text">{e(text)}</p>'
    head = e(text[:SHOWN_CHARS])
    body = f"<pre>{head}\n…</pre>" if code else f'<p class="text">{head} …</p>'
    summary = f"{e(what)}: {_size(text)}; the first {SHOWN_CHARS:,} characters"
    return f"<details><summary>{summary}</summary>\n{body}\n</details>"


def _pretty(value: JSON) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _code(text: str) -> str:
    return f"<code>{e(text)}</code>"


def _facts(*parts: str) -> str:
    return '<p class="facts">' + " · ".join(f"<span>{p}</span>" for p in parts if p) + "</p>"


def _item(event: Event, kind: str, heading: str, body: str, *, extra: str = "") -> str:
    meta = f'<p class="meta">#{event.seq} · {utc(event.ts, seconds=True)}{extra}</p>'
    return f'<li id="seq-{event.seq}" class="ev {kind}">\n{meta}\n<h3>{heading}</h3>\n{body}\n</li>'


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


def _llm_call(event: LLMCall, index: _Index) -> str:
    output: dict[str, Any] = event.output
    name = output.get("name")
    if isinstance(name, str):
        heading = f"Step {index.steps[event.seq]} · the model chose {_code(name)}"
        arguments = output.get("arguments")
        said = (
            ""
            if event.seq in index.called or arguments is None
            else "<p>With these arguments, which were not run:</p>\n" + _block(_pretty(arguments), "The arguments")
        )
    elif "text" in output:
        heading = f"Step {index.steps[event.seq]} · the model answered in text, not with a tool"
        said = _block(str(output["text"]), "What it said", code=False)
    else:
        heading = f"Step {index.steps[event.seq]} · the model call failed"
        said = _block(str(output.get("error", "")), "The provider's error", code=False)
    facts = _facts(
        f"model {_code(event.model)}",
        f"prompt {_code(event.prompt_id)} {_code(event.prompt_hash[:12])}",
        f"{event.input_tokens:,} tokens in",
        f"{event.output_tokens:,} out",
        usd(event.cost_usd),
        f"{event.latency_ms:,} ms",
    )
    link = f'<p><a href="context.html?seq={event.seq}">What the model saw</a></p>'
    return _item(event, "llm", heading, "\n".join(p for p in (facts, said, link) if p))


def _request(event: HumanRequest) -> str:
    heading = "Approval requested" if event.kind == "approval" else "Question for a person"
    parts = [f'<p class="text">{e(event.question)}</p>']
    if event.context:
        parts.append(f'<p class="hint text">{e(event.context)}</p>')
    choices = ", ".join(_code(c) for c in event.choices)
    parts.append(
        _facts(
            f"why: {e(_ORIGINS[event.origin])}",
            f"urgency {e(event.urgency)}",
            f"choices {choices}" if choices else "",
            f"request {_code(event.approval_id)}",
        )
    )
    return _item(event, "human", heading, "\n".join(parts))


def _response(event: HumanResponse, index: _Index) -> str:
    request = index.requests.get(event.approval_id)
    tool = index.tools.get(request.call_id) if request is not None and request.call_id else None
    what = f" {_code(tool)}" if tool and request is not None and request.kind == "approval" else ""
    by = e(event.by)
    match event.decision:
        case "approve":
            heading = f"Approved{what} by {by}"
        case "reject":
            heading = f"Rejected{what} by {by}"
        case "edit":
            heading = f"Approved{what} with changes by {by}"
        case "answer":
            heading = f"Answered by {by}"
        case "expired":
            heading = "Expired: nobody answered in time"
        case _:
            assert_never(event.decision)
    facts = [f"decided {utc(event.ts, seconds=True)}", f"via {e(event.channel)}"]
    if event.note:
        facts.append(f"note from {by}: {e(event.note)}")
    parts = [_facts(*facts)]
    if event.answer is not None:
        parts.append(_block(event.answer, "The answer", code=False))
    if event.args is not None:
        parts.append("<p>With these arguments:</p>\n" + _block(_pretty(event.args), "The arguments"))
    if event.comment:
        parts.append(_block(event.comment, "The comment", code=False))
    return _item(event, "human", heading, "\n".join(parts))


def render_event(event: Event, index: _Index) -> str:
    """One event as a timeline item."""
    match event:
        case UserInput():
            source = "" if event.source == "api" else f" from {e(event.source)}"
            return _item(event, "input", f"User input{source}", _block(event.text, "The input", code=False))
        case LLMCall():
            return _llm_call(event, index)
        case ToolCall():
            by = " (run by code before the first model call)" if event.prefetch else ""
            body = _block(_pretty(event.args), "The arguments")
            return _item(event, "tool", f"Tool call {_code(event.tool)}{by}", body, extra=f" · {e(event.call_id)}")
        case ToolStarted():
            tool = index.tools.get(event.call_id, "?")
            body = '<p class="hint">Recorded just before the tool ran, so a retry knows it may have run.</p>'
            return _item(event, "tool", f"{_code(tool)} started", body, extra=f" · {e(event.call_id)}")
        case ToolResult():
            body = _block(_pretty(event.result), "The result")
            return _item(event, "result", f"Result of {_code(event.tool)}", body, extra=f" · {e(event.call_id)}")
        case Error():
            tool = f" in {_code(event.tool)}" if event.tool else ""
            return _item(event, "err", f"Error {_code(event.kind)}{tool}", _block(event.message, "The error"))
        case HumanRequest():
            return _request(event)
        case HumanResponse():
            return _response(event, index)
        case Paused():
            reason = _block(event.reason, "The reason", code=False) if event.reason else ""
            return _item(event, "human", f"Paused by {e(event.by)}", reason)
        case Resumed():
            return _item(event, "human", f"Resumed by {e(event.by)}", "")
        case Done():
            return _item(event, "end", "Done", _block(event.answer, "The answer", code=False))
        case Failed():
            title = f"Failed: {_code(event.error)}" if event.error else "Failed"
            return _item(event, "failed", title, _block(event.reason, "The reason", code=False))
        case Retried():
            return _item(event, "human", f"Retried by {e(event.by)}", "")
        case _:
            assert_never(event)


def _header(thread: Thread) -> str:
    state = fold(thread)
    labels = " ".join(_code(f"{k}={v}") for k, v in sorted(thread.labels.items())) or "none"
    return (
        "<dl>\n"
        f"<dt>Agent</dt><dd>{e(thread.agent)}</dd>\n"
        f"<dt>Thread</dt><dd>{_code(thread.id)}</dd>\n"
        f"<dt>Status</dt><dd>{_STATUS_WORDS[state.status]}</dd>\n"
        f"<dt>Steps</dt><dd>{state.steps} model calls, {thread.version} events</dd>\n"
        f"<dt>Tokens</dt><dd>{state.input_tokens:,} in · {state.output_tokens:,} out</dd>\n"
        f"<dt>Total cost</dt><dd>{usd(state.cost_usd)}</dd>\n"
        f"<dt>Labels</dt><dd>{labels}</dd>\n"
        "</dl>"
    )


def _status(thread: Thread) -> str:
    state = fold(thread)
    word = _STATUS_WORDS[state.status]
    parts = [f'<p>The thread is <strong id="current-status">{word}</strong>.</p>']
    match state.status:
        case "done" if state.answer is not None:
            parts.append(_block(state.answer, "The answer", code=False))
        case "failed" if state.failure is not None:
            parts.append(_block(state.failure, "Why", code=False))
        case "awaiting_human" if state.open_request is not None:
            request = state.open_request
            kind = "an approval" if request.kind == "approval" else "an answer"
            parts.append(f"<p>It waits for {kind} (request {_code(request.approval_id)}):</p>")
            parts.append(f'<p class="text">{e(request.question)}</p>')
        case "paused":
            parts.append("<p>Resume it to continue (<code>stepfold resume</code> or POST …/resume).</p>")
        case "running":
            parts.append("<p>Its next step is under way; reload to see it.</p>")
        case _:
            pass
    return '<section id="status">\n<h2>Status</h2>\n' + "\n".join(parts) + "\n</section>"


def render_timeline(thread: Thread) -> str:
    """The whole page for ``GET /threads/{id}/view``."""
    index = _Index.of(thread.events)
    events = thread.events
    items: list[str] = []
    if len(events) > MAX_EVENTS:
        tail = MAX_EVENTS - HEAD_EVENTS
        left_out = len(events) - MAX_EVENTS
        items.extend(render_event(ev, index) for ev in events[:HEAD_EVENTS])
        items.append(
            f'<li class="ev"><p>{left_out:,} events (seq {HEAD_EVENTS} to {HEAD_EVENTS + left_out - 1}) are not '
            f"shown; <code>stepfold events {e(thread.id)}</code> lists them all.</p></li>"
        )
        items.extend(render_event(ev, index) for ev in events[-tail:])
    else:
        items.extend(render_event(ev, index) for ev in events)
    main = (
        f"{_header(thread)}\n<h2>Timeline</h2>\n"
        + ('<ol class="timeline">\n' + "\n".join(items) + "\n</ol>" if items else "<p>No events yet.</p>")
        + f"\n{_status(thread)}"
    )
    heading = f"{e(thread.agent)} · {_code(thread.id)}"
    return document(f"{thread.agent} thread {thread.id}", main, css=CSS, heading=heading)


def render_context(view: ModelView) -> str:
    """The page for ``GET /threads/{id}/context.html?seq=N``: the system prompt and context of one model call."""
    call = view.call
    if view.system is None:
        prompt_note = '<p class="error">The prompt file for this version is gone; its text cannot be shown.</p>'
    elif not view.prompt_current:
        prompt_note = (
            '<p class="error">The prompt file has changed since this call (its hash differs): this is '
            "today's text of that version, not exactly what the model was sent.</p>"
        )
    else:
        prompt_note = ""
    links = [f'<a href="view#seq-{call.seq}">Back to the timeline</a>']
    if view.previous is not None:
        links.append(f'<a href="context.html?seq={view.previous}">Previous step</a>')
    if view.next is not None:
        links.append(f'<a href="context.html?seq={view.next}">Next step</a>')
    facts = (
        "<dl>\n"
        f"<dt>Thread</dt><dd>{_code(view.thread_id)}</dd>\n"
        f"<dt>Model call</dt><dd>step {view.step}, seq {call.seq}, {utc(call.ts, seconds=True)}</dd>\n"
        f"<dt>Model</dt><dd>{_code(call.model)}</dd>\n"
        f"<dt>Prompt</dt><dd>{_code(call.prompt_id)} {_code(call.prompt_hash[:12])}</dd>\n"
        f"<dt>Context</dt><dd>about {view.tokens:,} tokens of the {view.max_tokens:,} allowed</dd>\n"
        f"<dt>Recorded</dt><dd>{call.input_tokens:,} tokens in · {call.output_tokens:,} out · "
        f"{usd(call.cost_usd)}</dd>\n"
        f"<dt>Tools</dt><dd>{' '.join(_code(t) for t in view.tools)}</dd>\n"
        "</dl>"
    )
    system = f"<pre>{e(view.system)}</pre>" if view.system is not None else ""
    main = (
        f"<nav>\n{'<p>' + ' · '.join(links) + '</p>'}\n</nav>\n{facts}\n"
        f"<h2>System prompt</h2>\n{prompt_note}{system}\n"
        f'<h2>Context</h2>\n<p class="hint">The thread as the model read it (<code>core.context.render</code> '
        f"with the agent's options).</p>\n<pre>{e(view.context)}</pre>"
    )
    title = f"What the model saw at step {view.step}"
    return document(title, main, css=CSS)
