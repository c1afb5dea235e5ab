"""An in-memory thread store with the same semantics as the DynamoDB one (tests, demo, benchmarks)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime

from core.kernel.events import Event
from core.kernel.store import (
    InvalidCursorError,
    ThreadExistsError,
    ThreadListing,
    ThreadNotFoundError,
    VersionConflictError,
    check_listing,
    decode_cursor,
    encode_cursor,
)
from core.kernel.thread import Status, Thread, fold


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

    def list_threads(
        self, *, status: Status | None = None, agent: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[ThreadListing], str | None]:
        """Threads by their last event's time, newest first (ties by id); folds every thread, fine for tests."""
        check_listing(status, limit)
        query = [status, agent]
        with self._lock:
            threads = list(self._threads.values())
        rows = sorted(
            (
                row
                for row in (_listing(t) for t in threads)
                if (status is None or row.status == status) and (agent is None or row.agent == agent)
            ),
            key=_order,
            reverse=True,
        )
        if cursor is not None:
            after = _position(decode_cursor(cursor, query))
            rows = [row for row in rows if _order(row) < after]
        page = rows[:limit]
        more = len(rows) > limit
        return page, encode_cursor(query, [page[-1].updated_at.isoformat(), page[-1].thread_id]) if more else None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(stamp: datetime) -> datetime:
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=UTC)


def _listing(thread: Thread) -> ThreadListing:
    updated = _aware(thread.events[-1].ts) if thread.events else _EPOCH
    return ThreadListing(thread.id, thread.agent, fold(thread).status, updated)


def _order(row: ThreadListing) -> tuple[datetime, str]:
    return row.updated_at, row.thread_id


def _position(raw: object) -> tuple[datetime, str]:
    """The (updated_at, thread_id) a cursor points after."""
    if isinstance(raw, list) and len(raw) == 2 and all(isinstance(part, str) for part in raw):
        try:
            return _aware(datetime.fromisoformat(raw[0])), raw[1]
        except ValueError:
            pass
    raise InvalidCursorError("the cursor is not one this API issued; start again without it")
