"""How the kernel reports what it is doing without knowing who listens (Powertools stays in functions/)."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal, Protocol

SpanKind = Literal["llm", "tool"]


class Observer(Protocol):
    def span(self, kind: SpanKind, name: str) -> AbstractContextManager[object]:
        """Wrap one model call or one tool run (a trace subsegment in AWS)."""
        ...


class NullObserver:
    def span(self, kind: SpanKind, name: str) -> AbstractContextManager[object]:
        del kind, name
        return nullcontext()
