"""Compacted threads: what a snapshot keeps instead of the whole log ("The data model" in ARCHITECTURE.md).

A step needs three things of its thread: the fold, the stale-results count and the rendered context. The first two
are accumulators (:class:`~core.kernel.thread.Fold`, :class:`~core.kernel.thread.Staleness`) a snapshot carries as
they stand. The context (``core.kernel.context.render``) shows the first block and the newest blocks that fit its
budget, and counts the blocks in between in its ``<omitted events="N"/>`` marker. So a snapshot keeps the first
event, the newest events worth about ``window_tokens`` of blocks (:func:`compact`), and how many blocks the events
it leaves out make; :func:`render_context` renders the compacted thread and adds that count to the marker.

That is exact, not an approximation, and :func:`render_context` checks it every time: the compacted thread must
render with a marker (so the budget ran out inside the events it kept, where the whole thread's render runs out
too), and every answer and error it keeps must find its request and call in it. When it cannot show that, it
renders the whole thread (the caller's ``whole``), so the model never sees a context the whole thread would not give.
What :func:`compact` leaves out is only what can no longer change: no open call or request, no error a later result
could still resolve (``render`` drops resolved errors and the calls behind them), no request or call an answer
or error it keeps points at.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from operator import is_
from typing import overload

from core.kernel.context import ContextOptions, render
from core.kernel.events import (
    Error,
    Event,
    HumanRequest,
    HumanResponse,
    LLMCall,
    ToolCall,
    ToolResult,
    ToolsListed,
    ToolStarted,
    UserInput,
)
from core.kernel.thread import Base, Fold, Staleness, Thread

MARKER = '<omitted events="'
"""How ``render`` starts the line that counts the blocks it left out."""
_SIZING = ContextOptions(max_tokens=10**12)
_TRIES = 4
_NO_BLOCK = (LLMCall, ToolStarted, ToolsListed)
"""Events ``render`` does not show: a snapshot keeps none of them in its window (model calls are most of a log's
bytes), but every ``tools_listed`` event, wherever it is (:data:`_ALWAYS`)."""
_ALWAYS = (ToolsListed,)
"""Events a snapshot keeps wherever they are: an MCP server's pinned list is what a step of the thread runs with
(ARCHITECTURE.md "MCP tools")."""
_COUNTING = (
    ContextOptions(max_tokens=1, drop_resolved_errors=True),
    ContextOptions(max_tokens=1, drop_resolved_errors=False),
)
"""A budget nothing fits: ``render`` then counts every block after the first in its marker."""
_CHECKED = (ContextOptions(), ContextOptions(drop_resolved_errors=False))
"""The options :func:`compact` checks a new snapshot's context with, against the thread it compacts."""

Whole = Callable[[], Thread]
"""Reads the whole thread (the store's ``load``), for what a compacted thread cannot answer."""


def compact(thread: Thread, *, window_tokens: int, folded: Fold | None = None) -> Thread | None:
    """``thread`` as a snapshot keeps it: its folds as of now, its first event and the events from the newest
    ``window_tokens`` of context blocks back (further back while something there is still open), without the
    model calls and markers ``render`` does not show. None when there is nothing to leave out, the thread does not
    start with a user input, or the compacted thread would not render as ``thread`` does (checked with the default
    options, resolved errors dropped and kept).

    ``folded`` is ``Fold.of(thread)`` when the caller already has it. Costs a few renders of the kept events.
    """
    events = thread.events
    if not events or events[0].seq != 0 or not isinstance(events[0], UserInput):
        return None
    base = thread.base
    old_cut, old_elided = (base.cut, base.elided_blocks) if base is not None else (1, (0, 0))
    region = [event for event in events if event.seq >= old_cut]
    folded = folded if folded is not None else Fold.of(thread)
    now = thread if base is None else _probe(thread.id, thread)
    start = _window_start(thread, now, region, window_tokens)
    window = ContextOptions(max_tokens=window_tokens)
    for _ in range(_TRIES):
        held = _held_open(region, folded, start)
        if held is None:
            return None
        cut = max(held, old_cut)
        kept = (
            events[0],
            *(
                event
                for event in events[1:]
                if isinstance(event, _ALWAYS) or (event.seq >= cut and not isinstance(event, _NO_BLOCK))
            ),
        )
        then = _probe(f"{thread.id}\x00next", thread, kept)
        text = render(then, window)
        if cut <= old_cut or _marker_at(text, _first_block(thread, window)) is not None:
            break
        # Fewer blocks than counted (resolved errors, requests shown as their call): keep more, in proportion.
        tokens = _tokens(window, text)
        per_event = max(1.0, tokens / max(1, len(kept) - 1))
        start = _back(region, cut, math.ceil((window_tokens - tokens) / per_event * 1.2) + 1)
    if base is None and len(kept) == len(events):
        return None  # nothing to leave out
    elided = []
    for old, options in zip(old_elided, _COUNTING, strict=True):
        first = _first_block(thread, options)
        before, after = _marker_at(render(now, options), first), _marker_at(render(then, options), first)
        elided.append(old + (before[2] if before else 0) - (after[2] if after else 0))
    snapshot = Base(thread.version, cut, (elided[0], elided[1]), folded.carry(), Staleness.of(thread).carry())
    compacted = Thread(id=thread.id, agent=thread.agent, events=kept, labels=thread.labels, base=snapshot)
    if not _complete(compacted):
        return None
    for options, old, new in zip(_CHECKED, old_elided, elided, strict=True):
        first = _first_block(thread, options)
        expected = render(now, options) if base is None else _patched(render(now, options), first, old)
        if expected is None or _patched(render(then, options), first, new) != expected:
            return None
    return compacted


def render_context(thread: Thread, options: ContextOptions, whole: Whole | None = None) -> str:
    """``render(thread, options)`` of the whole thread, from a compacted one when it can be shown to be the same;
    else from ``whole()`` (``ValueError`` without it)."""
    base = thread.base
    if base is None:
        return render(thread, options)
    if _complete(thread):
        elided = base.elided_blocks[0 if options.drop_resolved_errors else 1]
        text = _patched(render(_probe(thread.id, thread), options), _first_block(thread, options), elided)
        if text is not None:
            return text
    return render(uncompacted(thread, _need(whole, thread)), options)


def _patched(text: str, first: str, elided: int) -> str | None:
    """A compacted thread's render as the whole thread's: ``elided`` more blocks in its ``<omitted>`` count. None
    when that is not shown to be right: no count after the first block (its window did not fill the budget), or
    no line before it (the whole thread's render may have one, the legend, that this one does not)."""
    if not elided:
        return text
    at = _marker_at(text, first)
    if at is None or at[0] == 0:
        return None
    _, before, shown, after = at
    return f"{before}{shown + elided}{after}"


def uncompacted(thread: Thread, whole: Thread) -> Thread:
    """The whole of ``thread`` from ``whole`` (the stored log, which may have grown since): its events before the
    snapshot, then the compacted thread's own."""
    base = thread.base
    if base is None:
        return thread
    if whole.base is not None or whole.version < base.version:
        raise ValueError(
            f"thread {thread.id}: the log read back has {whole.version} events, its snapshot {base.version}"
        )
    events = (*whole.events[: base.version], *thread.recent)
    return Thread(id=thread.id, agent=thread.agent, events=events, labels=thread.labels)


class WholeEvents(Sequence[Event]):
    """The events of the whole thread, read only when something looks at them (a scripted model does; a real
    provider never does, so a step on a compacted thread reads no more of the log than its snapshot)."""

    def __init__(self, thread: Thread, whole: Whole | None) -> None:
        self._thread = thread
        self._whole = whole
        self._events: tuple[Event, ...] | None = None

    def _all(self) -> tuple[Event, ...]:
        if self._events is None:
            self._events = uncompacted(self._thread, _need(self._whole, self._thread)).events
        return self._events

    @overload
    def __getitem__(self, index: int) -> Event: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | Sequence[Event]:
        return self._all()[index]

    def __len__(self) -> int:
        return self._thread.version

    def __iter__(self) -> Iterator[Event]:
        return iter(self._all())


def _need(whole: Whole | None, thread: Thread) -> Thread:
    if whole is None:
        raise ValueError(
            f"thread {thread.id} is compacted (read from a snapshot) and this needs its whole log: pass the store's "
            "load as StepContext.history"
        )
    return whole()


def _alone(thread: Thread, event: Event) -> Thread:
    """A one-event thread to render (no validation: its seq need not be 0), under an id of its own."""
    return Thread.model_construct(id=f"{thread.id}\x00alone", agent=thread.agent, events=(event,), labels={}, base=None)


def _first_block(thread: Thread, options: ContextOptions) -> str:
    return render(_alone(thread, thread.events[0]), options)


class _Resequenced:
    """Events numbered 0..n-1 for ``render``, which numbers a thread's events by their position; the copies are
    kept per thread, so a thread that grew reuses them (and ``render``'s own memo of them)."""

    def __init__(self, max_threads: int = 64) -> None:
        self._max = max_threads
        self._threads: OrderedDict[str, tuple[list[Event], list[Event]]] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, key: str, events: Sequence[Event]) -> tuple[Event, ...]:
        with self._lock:
            originals, copies = self._threads.pop(key, ([], []))
            if len(originals) > len(events) or not all(map(is_, originals, events)):
                originals, copies = [], []
            for i in range(len(originals), len(events)):
                event = events[i]
                originals.append(event)
                copies.append(event if event.seq == i else event.model_copy(update={"seq": i}))
            self._threads[key] = (originals, copies)
            while len(self._threads) > self._max:
                self._threads.popitem(last=False)
            return tuple(copies)


_RESEQUENCED = _Resequenced()


def _probe(key: str, thread: Thread, events: Sequence[Event] | None = None) -> Thread:
    """``events`` (the thread's by default) as a whole thread ``render`` can take."""
    numbered = _RESEQUENCED.of(key, thread.events if events is None else events)
    return Thread.model_construct(id=key, agent=thread.agent, events=numbered, labels={}, base=None)


def _window_start(thread: Thread, now: Thread, region: list[Event], window_tokens: int) -> int:
    """The seq from which the region's blocks fill ``window_tokens`` as ``render`` fills its budget (the region's
    start when they do not fill it). ``now`` renders as the region does."""
    first = _first_block(thread, _COUNTING[0])
    every = _marker_at(render(now, _COUNTING[0]), first)
    shown = _marker_at(render(now, ContextOptions(max_tokens=window_tokens)), _first_block(thread, _SIZING))
    start = region[0].seq if region else thread.version
    if every is None or shown is None:
        return start
    tail = every[2] - shown[2]
    for event in reversed(region):
        if not isinstance(event, _NO_BLOCK):
            tail -= 1
            if tail <= 0:
                return event.seq
    return start


def _tokens(options: ContextOptions, text: str) -> int:
    counter = options.count_tokens  # the options' tokenizer (a name shared with an AWS operation, hence the alias)
    return counter(text)


def _back(region: list[Event], cut: int, count: int) -> int:
    """The seq ``count`` events that may make a block before ``cut`` (the region's start at the most)."""
    earlier = [event.seq for event in region if event.seq < cut and not isinstance(event, _NO_BLOCK)]
    return earlier[-count] if count <= len(earlier) else (region[0].seq if region else cut)


def _held_open(region: list[Event], folded: Fold, cut: int) -> int | None:
    """``cut`` moved back so nothing still open is left out; None when something open is already out of the region
    (a thread this does not compact again; its snapshot stays as it is)."""
    start = region[0].seq if region else cut
    calls: dict[str, int] = {}
    requests: dict[str, HumanRequest] = {}
    for event in region:
        if isinstance(event, ToolCall):
            calls[event.call_id] = event.seq
        elif isinstance(event, HumanRequest):
            requests[event.approval_id] = event
    pins: list[int] = [call.seq for call in folded.calls.values() if call.call_id not in folded.closed]
    pins += [r.seq for aid, r in folded.requests.items() if aid not in folded.responses]
    last_result = max((e.seq for e in region if isinstance(e, ToolResult)), default=-1)
    pins += [e.seq for e in region if isinstance(e, Error) and e.seq > last_result]  # a later result may resolve it
    if any(pin < start for pin in pins):
        return None
    cut = min([cut, *pins])
    while True:
        moved = cut
        for event in region:
            if event.seq < cut:
                continue
            if isinstance(event, HumanResponse | HumanRequest):
                request = event if isinstance(event, HumanRequest) else requests.get(event.approval_id)
                if request is None:
                    return None
                moved = min(moved, request.seq)
                if request.call_id is not None:
                    if request.call_id not in calls:
                        return None
                    moved = min(moved, calls[request.call_id])
            elif isinstance(event, Error) and event.call_id is not None:
                if event.call_id not in calls:
                    return None
                moved = min(moved, calls[event.call_id])
        if moved == cut:
            return cut
        cut = moved


def _marker_at(text: str, first: str) -> tuple[int, str, int, str] | None:
    """Where ``render`` put its ``<omitted events="N"/>`` line right after the first block, if it did: (where the
    first block starts, the text up to N, N, the text after N)."""
    at = text.find(f"{first}\n{MARKER}")
    if at < 0 or (at > 0 and text[at - 1] != "\n"):
        return None
    start = at + len(first) + 1 + len(MARKER)
    end = text.find('"', start)
    digits = text[start:end] if end > start else ""
    if not digits.isdigit():
        return None
    return at, text[:start], int(digits), text[end:]


def _complete(thread: Thread) -> bool:
    """Every answer and error the compacted thread keeps finds its request and call in it (else its render would
    not be the whole thread's)."""
    if not thread.events or thread.events[0].seq != 0 or not isinstance(thread.events[0], UserInput):
        return False
    calls = {e.call_id for e in thread.events if isinstance(e, ToolCall)}
    requests = {e.approval_id: e for e in thread.events if isinstance(e, HumanRequest)}
    for event in thread.events:
        if isinstance(event, HumanResponse):
            request = requests.get(event.approval_id)
            if request is None or (request.call_id is not None and request.call_id not in calls):
                return False
        elif isinstance(event, Error) and event.call_id is not None and event.call_id not in calls:
            return False
    return True
