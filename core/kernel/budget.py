"""What each agent spent today, for the per-agent daily budget (``Limits.max_daily_cost_usd``)."""

from __future__ import annotations

import threading
from collections import defaultdict
from datetime import datetime
from typing import Protocol


def day_of(moment: datetime) -> str:
    """The UTC day a cost counts against: ``2026-11-25``."""
    return moment.date().isoformat()


class SpendLedger(Protocol):
    def spent(self, agent: str, day: str) -> float:
        """USD the agent's model calls cost on ``day`` so far."""
        ...

    def add(self, agent: str, day: str, usd: float) -> float:
        """Add a step's cost; returns the day's new total."""
        ...


class MemorySpendLedger:
    def __init__(self) -> None:
        self._totals: dict[tuple[str, str], float] = defaultdict(float)
        self._lock = threading.Lock()

    def spent(self, agent: str, day: str) -> float:
        return self._totals[(agent, day)]

    def add(self, agent: str, day: str, usd: float) -> float:
        with self._lock:
            self._totals[(agent, day)] += usd
            return self._totals[(agent, day)]
