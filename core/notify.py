"""How a person hears that an agent waits for them. Channels (webhook, Slack, email) implement one method."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Protocol

from core.approvals import Approval


class Notifier(Protocol):
    def notify(self, approval: Approval, url: str) -> None:
        """Tell someone that ``approval`` waits, with the signed ``url`` to answer it."""
        ...


@dataclass
class RecordingNotifier:
    """Keeps every notification in memory: the local stack prints them, tests read them."""

    sent: list[tuple[Approval, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def notify(self, approval: Approval, url: str) -> None:
        with self._lock:
            self.sent.append((approval, url))

    def last_for(self, thread_id: str) -> tuple[Approval, str] | None:
        with self._lock:
            return next(((a, u) for a, u in reversed(self.sent) if a.thread_id == thread_id), None)
