"""The thread store interface: three methods, with a memory implementation for tests and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.events import Event
from core.thread import Thread


class StoreError(Exception):
    """Base of store errors."""


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
