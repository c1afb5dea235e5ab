"""The base of the example agents' stand-ins for external systems (a deploy API, an issue tracker, ...)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class FakeSystem:
    """Counts calls by idempotency key, so tests can prove an effect ran exactly once; ``reset`` clears what
    the subclass lists in ``RECORDS`` (the effects), never its seed data."""

    RECORDS: ClassVar[tuple[str, ...]] = ()
    runs: Counter[str] = field(default_factory=Counter, kw_only=True)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, kw_only=True)

    def record(self, key: str) -> None:
        with self._lock:
            self.runs[key] += 1

    def reset(self) -> None:
        with self._lock:
            for name in self.RECORDS:
                getattr(self, name).clear()
            self.runs.clear()
