"""The thread store interface: three methods, with a memory implementation for tests and the demo."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from core.kernel.events import Event
from core.kernel.thread import Status, Thread


class StoreError(Exception):
    """Base of store errors."""


class StoreUnavailableError(StoreError):
    """The store is throttled or failing (DynamoDB throughput, S3 5xx): safe to retry, Step Functions does."""


class UnreadableThreadError(StoreError):
    """A stored thread cannot be read back (an edited item, a payload object deleted from S3): retrying will not
    help; a person must restore it. ``thread_id`` and ``seq`` say where."""

    thread_id: str
    seq: int | str


@runtime_checkable
class FailureMarker(Protocol):
    """Stores that can mark a thread failed without reading its events: the one record an unreadable thread can
    still get, so its header (what listings show) never says ``running`` while nothing runs it."""

    def mark_failed(self, thread_id: str, *, error: str, reason: str) -> str:
        """Mark the header failed; returns the thread's agent (from the header)."""
        ...


class ThreadNotFoundError(StoreError, KeyError):
    def __init__(self, thread_id: str) -> None:
        super().__init__(thread_id)
        self.thread_id = thread_id

    def __str__(self) -> str:
        return f"no thread {self.thread_id!r}"


class ThreadExistsError(StoreError):
    def __init__(self, thread_id: str) -> None:
        super().__init__(f"thread {thread_id!r} already exists")
        self.thread_id = thread_id


class VersionConflictError(StoreError):
    """Someone else appended to the thread since it was read: reload and decide again."""

    def __init__(self, thread_id: str, expected: int, actual: int | None = None) -> None:
        found = f", it is at {actual}" if actual is not None else ""
        super().__init__(f"thread {thread_id!r} changed while this writer worked: expected version {expected}{found}")
        self.thread_id = thread_id
        self.expected = expected
        self.actual = actual


class ThreadStore(Protocol):
    """Where threads live. ``append`` is the only way a thread changes, and it is conditional."""

    def create(self, thread: Thread) -> Thread:
        """Store a new thread; :class:`ThreadExistsError` if the id is taken."""
        ...

    def load(self, thread_id: str) -> Thread:
        """The whole thread; :class:`ThreadNotFoundError` if there is none."""
        ...

    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        """Append events if the thread is still at ``expected_version``, else :class:`VersionConflictError`."""
        ...


@runtime_checkable
class RecentLoader(Protocol):
    """Stores that can give a step its thread without reading the whole log: from a snapshot, the thread comes
    back compacted (``Thread.base``; see :mod:`core.kernel.compaction`), and folds, renders and steps exactly as
    the whole one. ``load`` still returns the whole thread, the record. Apart from :class:`ThreadStore`, which
    stays three methods."""

    def load_recent(self, thread_id: str) -> Thread:
        """The thread, whole or compacted; :class:`ThreadNotFoundError` if there is none."""
        ...


def load_for_step(store: ThreadStore, thread_id: str) -> Thread:
    """What a step reads: the store's ``load_recent`` where it has one, else ``load``."""
    return store.load_recent(thread_id) if isinstance(store, RecentLoader) else store.load(thread_id)


# --- listings ------------------------------------------------------------------------------------------------

STATUSES: tuple[Status, ...] = ("running", "awaiting_human", "paused", "done", "failed")
MAX_LIST_LIMIT = 1000


@dataclass(frozen=True)
class ThreadListing:
    """One row of a listing: what a thread's header knows, without reading its events."""

    thread_id: str
    agent: str
    status: Status
    updated_at: datetime


class InvalidCursorError(StoreError, ValueError):
    """A listing cursor this store did not issue, or issued for a different query."""


@runtime_checkable
class ThreadLister(Protocol):
    """Stores that list threads; apart from :class:`ThreadStore`, which stays three methods."""

    def list_threads(
        self, *, status: Status | None = None, agent: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[ThreadListing], str | None]:
        """A page of threads, most recently updated first, and the next page's cursor (``None`` at the end)."""
        ...


def check_listing(status: str | None, limit: int) -> None:
    """Refuse a status that does not exist and a page size out of range."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; one of {', '.join(STATUSES)}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")


def encode_cursor(query: Sequence[str | None], position: Any) -> str:
    """An opaque cursor: the query it belongs to and where the next page starts, as URL-safe base64 JSON."""
    raw = json.dumps({"q": list(query), "p": position}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, query: Sequence[str | None]) -> Any:
    """The position in ``cursor``; :class:`InvalidCursorError` if it is malformed or was made for another query."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidCursorError("the cursor is not one this API issued; start again without it") from None
    if not isinstance(data, dict) or "p" not in data:
        raise InvalidCursorError("the cursor is not one this API issued; start again without it")
    if data.get("q") != list(query):
        raise InvalidCursorError("the cursor belongs to a listing with other filters; use the same status and agent")
    return data["p"]


APPEND_ATTEMPTS = 5


def append_one(store: ThreadStore, thread_id: str, build: Callable[[Thread], Event | None]) -> Thread:
    """Append the one event ``build`` makes from the thread as it is now, reloading and rebuilding it when another
    writer got there first. ``build`` may raise to refuse, or return None when there is nothing to append."""
    expected = -1
    for _ in range(APPEND_ATTEMPTS):
        thread = store.load(thread_id)
        event = build(thread)
        if event is None:
            return thread
        expected = thread.version
        try:
            return store.append(thread_id, expected, [event])
        except VersionConflictError:
            continue
    raise VersionConflictError(thread_id, expected)
