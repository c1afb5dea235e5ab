"""Own your context window (Factor 3): the thread rendered as compact XML-ish blocks.

What the model sees is decided here, by code you can read and test: which events appear, how big
results are cut, which errors are already resolved and left out, and what is dropped to stay
within a token budget. Output is stable for a given thread (snapshot-tested).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

from core.kernel.events import (
    JSON,
    Error,
    Event,
    HumanRequest,
    HumanResponse,
    ToolCall,
    ToolResult,
    UserInput,
)
from core.kernel.thread import Thread

TokenCounter = Callable[[str], int]

_KEEP_ERRORS = ("outcome_unknown", "limit")
"""Error kinds that stay in context even after a later success: a human must still know of them."""


def approx_tokens(text: str) -> int:
    """About four characters a token: close enough for budgeting, with no vocabulary to load."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class ContextOptions:
    """How a thread is rendered. ``count_tokens`` is pluggable (e.g. a real tokenizer)."""

    max_tokens: int = 12_000
    max_result_chars: int = 2_000
    drop_resolved_errors: bool = True
    count_tokens: TokenCounter = approx_tokens


def _attrs(**attrs: str | None) -> str:
    return "".join(f' {k}="{escape(v)}"' for k, v in attrs.items() if v)


def _json(value: JSON) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n...[truncated: {len(text) - limit} more chars]"


def _block(tag: str, body: str, **attrs: str | None) -> str:
    return f"<{tag}{_attrs(**attrs)}>{escape(body, quote=False)}</{tag}>"


def _resolved_errors(events: tuple[Event, ...]) -> set[int]:
    """Seqs of errors (and the failed calls behind them) that a later successful tool result resolved."""
    resolved: set[int] = set()
    pending: list[Error] = []
    call_seq: dict[str, int] = {}
    for event in events:
        if isinstance(event, ToolCall):
            call_seq[event.call_id] = event.seq
        elif isinstance(event, Error) and event.kind not in _KEEP_ERRORS:
            pending.append(event)
        elif isinstance(event, ToolResult) and pending:
            for err in pending:
                resolved.add(err.seq)
                if err.call_id is not None and err.call_id in call_seq:
                    resolved.add(call_seq[err.call_id])
            pending.clear()
    return resolved


@dataclass(frozen=True)
class _Index:
    requests: dict[str, HumanRequest]
    calls: dict[str, ToolCall]

    @classmethod
    def of(cls, events: tuple[Event, ...]) -> _Index:
        return cls(
            {e.approval_id: e for e in events if isinstance(e, HumanRequest)},
            {e.call_id: e for e in events if isinstance(e, ToolCall)},
        )


def render_event(event: Event, index: _Index, options: ContextOptions) -> str | None:
    """One event as a block, or None for events the model does not need (llm_call, markers, control)."""
    match event:
        case UserInput():
            return _block("user_input", event.text, source=None if event.source == "api" else event.source)
        case ToolCall():
            return _block(
                "tool_call", _json(event.args), name=event.tool, id=event.call_id, by="code" if event.prefetch else None
            )
        case ToolResult():
            body = _clip(_json(event.result), options.max_result_chars)
            return _block("tool_result", body, name=event.tool, id=event.call_id)
        case Error():
            return _block("error", event.message, kind=event.kind, tool=event.tool, id=event.call_id)
        case HumanRequest():
            text = event.question + (f"\n{event.context}" if event.context else "")
            return _block("human_request", text, kind=event.kind, id=event.approval_id)
        case HumanResponse():
            return _render_response(event, index, options)
        case _:
            return None


def _render_response(event: HumanResponse, index: _Index, options: ContextOptions) -> str:
    request = index.requests.get(event.approval_id)
    call = index.calls.get(request.call_id) if request is not None and request.call_id else None
    if call is not None and event.decision in ("reject", "expired") and request and request.kind == "approval":
        why = (
            f"rejected by {event.by}" + (f": {event.comment}" if event.comment else " (no reason given)")
            if event.decision == "reject"
            else "approval expired before anyone answered; the call was not run"
        )
        status = "rejected" if event.decision == "reject" else "expired"
        return _block("tool_result", f"NOT RUN - {why}", name=call.tool, id=call.call_id, status=status)
    if event.decision == "answer":
        return _block("human_response", event.answer or "", by=event.by)
    if event.decision == "edit":
        return _block("human_response", _json(event.args or {}), decision="edit", by=event.by)
    if event.decision == "expired":
        return _block("human_response", "no answer before the request expired", decision="expired")
    return _block(
        "human_response", _clip(event.comment, options.max_result_chars), decision=event.decision, by=event.by
    )


def render(thread: Thread, options: ContextOptions | None = None) -> str:
    """The thread as the model's input, within ``options.max_tokens``.

    When over budget, the first user input is kept, then the newest blocks that fit; an
    ``<omitted events="N"/>`` marker says how many blocks in between were left out.
    """
    options = options or ContextOptions()
    skip = _resolved_errors(thread.events) if options.drop_resolved_errors else set()
    index = _Index.of(thread.events)
    blocks = [
        block
        for event in thread.events
        if event.seq not in skip and (block := render_event(event, index, options)) is not None
    ]
    sizes = [options.count_tokens(b) + 1 for b in blocks]
    if sum(sizes) <= options.max_tokens or len(blocks) <= 1:
        return "\n".join(blocks)
    budget = options.max_tokens - sizes[0] - options.count_tokens('<omitted events="000000"/>')
    tail: list[str] = []
    for block, size in zip(reversed(blocks[1:]), reversed(sizes[1:]), strict=True):
        if size > budget:
            break
        tail.append(block)
        budget -= size
    omitted = len(blocks) - 1 - len(tail)
    return "\n".join([blocks[0], f'<omitted events="{omitted}"/>', *reversed(tail)])
