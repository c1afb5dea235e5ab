"""An in-memory thread store with the same semantics as the DynamoDB one (tests, demo, benchmarks)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from core.events import Event
from core.store.base import ThreadExistsError, ThreadNotFoundError, VersionConflictError
from core.thread import Thread


class MemoryThreadStore:
    def __init__(self) -> None:
        self._threads: dict[str, Thread] = {}
        self._lock = threading.Lock()

    def create(self, thread: Thread) -> Thread:
        with self._lock:
            if thread.id in self._threads:
                raise ThreadExistsError(thread.id)
            self._threads[thread.id] = thread
        return thread

    def load(self, thread_id: str) -> Thread:
        try:
            return self._threads[thread_id]
        except KeyError:
            raise ThreadNotFoundError(thread_id) from None

    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        with self._lock:
            current = self.load(thread_id)
            if current.version != expected_version:
                raise VersionConflictError(thread_id, expected_version, current.version)
            updated = current.extend(events)
            self._threads[thread_id] = updated
        return updated

    def ids(self) -> list[str]:
        return list(self._threads)
