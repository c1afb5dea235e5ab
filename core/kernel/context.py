"""Own your context window (Factor 3): the thread rendered as a compact transcript.

What the model sees is decided here, by code you can read and test: which events appear, how big
results are cut, which errors are already resolved and left out, and what is dropped to stay
within a token budget. Output is stable for a given thread (snapshot-tested).

The bulk of a thread is tool calls and their results, so those are one line each; everything else is an
XML-ish block::

    <!-- → a tool call, ← its result -->
    <user_input>deploy the latest backend to staging</user_input>
    → list_git_tags() [run by code]
    ← [v1.5.0,v1.4.2]
    → deploy_backend(environment=staging tag=v1.5.0)
    ← environment=staging status=deployed

Only what the model uses is there: no call or approval ids (one call is open at a time, so a result belongs to
the call above it), no tool name repeated on a result, no wrapper around a call or a result. Errors, people's
answers and every truncation keep a block or a marker of their own.

Values are written in a compact, lossless notation instead of JSON (see :func:`notation`): an object is
``key=value`` pairs separated by spaces (``{...}`` when nested), a list is ``[a,b]``, and a string is bare when it
is a plain word (``staging``, ``v1.5.0``, ``https://x.org/a``) and JSON-quoted otherwise, so ``"5"``, ``"true"``
and ``"two words"`` stay strings. A tool's JSON written that way costs about a quarter fewer tokens.

Every text that is not ours is escaped: ``&``, ``<`` and ``>`` as in XML, and the two arrows as ``&#8594;`` and
``&#8592;``; so a line that starts with ``→``, ``←`` or ``<`` is always the renderer's, and nothing a person or a
tool wrote can open, close or forge a block or a call.

A warm container renders the same thread step after step, so each thread's rendered events are kept (see
:class:`_Rendered`): a step renders only the events that are new since the last one.
"""

from __future__ import annotations

import json
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import is_

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

CALL = "→"
RESULT = "←"
LEGEND = f"<!-- {CALL} a tool call, {RESULT} its result -->"
"""The first line of a context that has a call or a result in it: the notation, said once."""

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


# --- the notation -----------------------------------------------------------------------------------------------

_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_.:/@+-]*")
"""A string that can be written without quotes: it starts with a letter and holds no space, quote, bracket,
comma or ``=``, so it cannot be read as a number, a list, an object or the next pair."""
_LITERALS = frozenset({"true", "false", "null"})


def notation(value: JSON) -> str:
    """A JSON value as the model reads it here: an object as ``k=v`` pairs, a string as it is.

    At the top level a string is shown as it is (a document stays a document) and a non-empty object as its
    pairs; anything nested is written by :func:`inline`. Keys are sorted, so the output is stable. A value nested
    deeper than Python's recursion allows is shown as compact JSON instead, which goes deeper.
    """
    if isinstance(value, str):
        return value
    try:
        return _pairs(value) if isinstance(value, dict) and value else inline(value)
    except RecursionError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def inline(value: JSON) -> str:
    """A JSON value on one line, losslessly: a bare word, a JSON string, a number, ``[...]`` or ``{k=v ...}``."""
    if isinstance(value, str):
        return value if _BARE.fullmatch(value) and value not in _LITERALS else json.dumps(value, ensure_ascii=False)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else json.dumps(value)
    if isinstance(value, dict):
        return "{" + _pairs(value) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(inline, value)) + "]"
    return json.dumps(value, ensure_ascii=False)


def _pairs(value: dict[str, JSON]) -> str:
    return " ".join(f"{_key(key)}={inline(value[key])}" for key in sorted(value))


def _key(key: str) -> str:
    return key if _BARE.fullmatch(key) and key not in _LITERALS else json.dumps(key, ensure_ascii=False)


# --- one event --------------------------------------------------------------------------------------------------


def _text(text: str) -> str:
    """Text that is not ours, made inert: it cannot start a block, a call or a result line."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace(CALL, "&#8594;").replace(RESULT, "&#8592;")


def _attr(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[truncated: {len(text) - limit} more chars]"


def _block(tag: str, body: str, **attrs: str | None) -> str:
    shown = "".join(f' {k}="{_attr(v)}"' for k, v in attrs.items() if v)
    return f"<{tag}{shown}>{_text(body)}</{tag}>"


def _call(call: ToolCall) -> str:
    line = f"{CALL} {call.tool}({_text(notation(call.args)) if call.args else ''})"
    return f"{line} [run by code]" if call.prefetch else line


def _result(body: str) -> str:
    return f"{RESULT} {_text(body)}" if body else f'{RESULT} ""'


@dataclass
class _Index:
    """What a human response refers to: the requests and calls before it."""

    requests: dict[str, HumanRequest] = field(default_factory=dict)
    calls: dict[str, ToolCall] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        if isinstance(event, ToolCall):
            self.calls[event.call_id] = event
        elif isinstance(event, HumanRequest):
            self.requests[event.approval_id] = event


def render_event(event: Event, index: _Index, options: ContextOptions) -> str | None:
    """One event as a line or a block, or None for events the model does not need (llm_call, markers, control).

    ``index`` holds the events before this one.
    """
    match event:
        case UserInput():
            return _block("user_input", event.text, source=None if event.source == "api" else event.source)
        case ToolCall():
            return _call(event)
        case ToolResult():
            return _result(_clip(notation(event.result), options.max_result_chars))
        case Error():
            # with a call id the failed call is the line above; without one it never became a call, so name the tool
            return _block("error", event.message, kind=event.kind, tool=None if event.call_id else event.tool)
        case HumanRequest():
            if event.origin == "model" and event.call_id in index.calls:
                return None  # the model's own request_human_input call, the line above, already says all of it
            text = event.question + (f"\n{event.context}" if event.context else "")
            return _block("human_request", text, kind=event.kind)
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
        return _result(f"NOT RUN - {why}")
    if event.decision == "answer":
        return _block("human_response", event.answer or "", by=event.by)
    if event.decision == "edit":
        return _block("human_response", notation(event.args or {}), decision="edit", by=event.by)
    if event.decision == "expired":
        return _block("human_response", "no answer before the request expired", decision="expired")
    return _block(
        "human_response", _clip(event.comment, options.max_result_chars), decision=event.decision, by=event.by
    )


# --- a thread's rendered events, kept between steps ---------------------------------------------------------------


@dataclass
class _Rendered:
    """One thread's events rendered so far, with what pruning needs to know about them.

    A block never depends on an event after it, so the blocks of a thread that grew are still right: a step
    renders only the new events. Which errors a later success resolved is kept up to date here too.
    """

    max_result_chars: int
    count: TokenCounter
    """The options' token counter: each block's size is counted once, when it is rendered."""
    events: list[Event] = field(default_factory=list)
    blocks: list[str | None] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    chars: int = 0
    index: _Index = field(default_factory=_Index)
    resolved: set[int] = field(default_factory=set)
    pending: list[Error] = field(default_factory=list)
    call_seqs: dict[str, int] = field(default_factory=dict)

    def add(self, event: Event, options: ContextOptions) -> None:
        """Take the next event: track it, render it."""
        self._track(event)
        block = render_event(event, self.index, options)
        self._append(event, block, 0 if block is None else self.count(block) + 1)

    def first(self, n: int) -> _Rendered:
        """The same thread cut back to its first ``n`` events, their blocks reused (a view of an earlier point)."""
        out = _Rendered(self.max_result_chars, self.count)
        for event, block, size in zip(self.events[:n], self.blocks[:n], self.sizes[:n], strict=True):
            out._track(event)
            out._append(event, block, size)
        return out

    def fits(self, options: ContextOptions) -> bool:
        """Whether these blocks are what ``options`` renders (the budget and pruning apply later, to the blocks)."""
        return self.max_result_chars == options.max_result_chars and self.count == options.count_tokens

    def _track(self, event: Event) -> None:
        if isinstance(event, ToolCall):
            self.call_seqs[event.call_id] = event.seq
        elif isinstance(event, Error) and event.kind not in _KEEP_ERRORS:
            self.pending.append(event)
        elif isinstance(event, ToolResult) and self.pending:
            for err in self.pending:
                self.resolved.add(err.seq)
                if err.call_id is not None and err.call_id in self.call_seqs:
                    self.resolved.add(self.call_seqs[err.call_id])
            self.pending.clear()

    def _append(self, event: Event, block: str | None, size: int) -> None:
        self.index.add(event)
        self.events.append(event)
        self.blocks.append(block)
        self.sizes.append(size)
        self.chars += 0 if block is None else len(block)


class _Memo:
    """The rendered events of the threads rendered last, by thread id; bounded in threads and in characters.

    An entry is used only for a thread whose events are the very objects it was built from (a warm container
    extends its cached thread, so they are): any other thread of the same id, or other options, starts afresh.
    """

    def __init__(self, max_threads: int = 64, max_chars: int = 16_000_000) -> None:
        self.max_threads, self.max_chars = max_threads, max_chars
        self._threads: OrderedDict[str, _Rendered] = OrderedDict()
        self._lock = threading.Lock()

    def rendered(self, thread: Thread, options: ContextOptions, use: Callable[[_Rendered], str]) -> str:
        events = thread.events
        with self._lock:
            memo = self._threads.pop(thread.id, None)
            if memo is None or not memo.fits(options) or not all(map(is_, memo.events, events)):
                memo = _Rendered(options.max_result_chars, options.count_tokens)
            elif len(memo.events) > len(events):
                memo = memo.first(len(events))
            for event in events[len(memo.events) :]:
                memo.add(event, options)
            text = use(memo)
            self._threads[thread.id] = memo
            self._evict()
            return text

    def _evict(self) -> None:
        chars = sum(m.chars for m in self._threads.values())
        while self._threads and (len(self._threads) > self.max_threads or chars > self.max_chars):
            _, dropped = self._threads.popitem(last=False)
            chars -= dropped.chars

    def clear(self) -> None:
        with self._lock:
            self._threads.clear()


_MEMO = _Memo()


# --- the whole context ------------------------------------------------------------------------------------------


def render(thread: Thread, options: ContextOptions | None = None) -> str:
    """The thread as the model's input, within ``options.max_tokens``.

    When over budget, the first user input is kept, then the newest blocks that fit; an
    ``<omitted events="N"/>`` marker says how many blocks in between were left out.
    """
    opts = options or ContextOptions()
    return _MEMO.rendered(thread, opts, lambda memo: _assemble(memo, opts))


def _assemble(memo: _Rendered, options: ContextOptions) -> str:
    skip = memo.resolved if options.drop_resolved_errors else set()
    shown = [
        (block, size)
        for seq, (block, size) in enumerate(zip(memo.blocks, memo.sizes, strict=True))
        if block is not None and seq not in skip
    ]
    blocks = [block for block, _ in shown]
    sizes = [size for _, size in shown]
    head = [LEGEND] if any(block[0] in (CALL, RESULT) for block in blocks) else []
    budget = options.max_tokens - sum(memo.count(line) + 1 for line in head)
    if sum(sizes) <= budget or len(blocks) <= 1:
        return "\n".join(head + blocks)
    budget -= sizes[0] + memo.count('<omitted events="000000"/>')
    tail: list[str] = []
    for block, size in zip(reversed(blocks[1:]), reversed(sizes[1:]), strict=True):
        if size > budget:
            break
        tail.append(block)
        budget -= size
    while tail and tail[-1].startswith(RESULT):
        tail.pop()  # a result whose call was left out would say nothing
    omitted = len(blocks) - 1 - len(tail)
    return "\n".join([*head, blocks[0], f'<omitted events="{omitted}"/>', *reversed(tail)])
