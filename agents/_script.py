"""Helpers for the example agents' scripted brains: read the thread the way a model would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from core.adapters.llm.scripted import Say
from core.kernel.events import Error, Event, HumanResponse, ToolCall, ToolResult, UserInput

T = TypeVar("T")


def since_last_input(events: Sequence[Event]) -> tuple[UserInput | None, list[Event]]:
    """The latest user input and everything after it."""
    for i in range(len(events) - 1, -1, -1):
        event = events[i]
        if isinstance(event, UserInput):
            return event, list(events[i + 1 :])
    return None, list(events)


def results(events: Sequence[Event], *, prefetch: bool = False) -> list[ToolResult]:
    """Tool results in order; by default only the model's own calls (not pre-fetches)."""
    prefetched = {e.call_id for e in events if isinstance(e, ToolCall) and e.prefetch}
    return [e for e in events if isinstance(e, ToolResult) and (prefetch or e.call_id not in prefetched)]


def last_of(events: Sequence[Event], kind: type[T]) -> T | None:
    return next((e for e in reversed(events) if isinstance(e, kind)), None)


def answers(events: Sequence[Event]) -> list[str]:
    """Answers a human gave to questions, oldest first."""
    return [e.answer for e in events if isinstance(e, HumanResponse) and e.decision == "answer" and e.answer]


def failed_after_last_result(events: Sequence[Event]) -> Error | None:
    """The newest error, if nothing succeeded after it."""
    for event in reversed(events):
        if isinstance(event, ToolResult):
            return None
        if isinstance(event, Error):
            return event
    return None


def ask(question: str, *, context: str = "", fmt: str = "free_text", choices: Sequence[str] = ()) -> Say:
    args: dict[str, object] = {"question": question, "format": fmt}
    if context:
        args["context"] = context
    if choices:
        args["choices"] = list(choices)
    return Say("request_human_input", args)


def done(answer: str) -> Say:
    return Say("done_for_now", {"answer": answer})
