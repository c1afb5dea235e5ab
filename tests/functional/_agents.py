"""A tiny test agent whose tool and model count what they do, and a store that can crash on cue."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from agents import AGENTS, scripted_model
from core.adapters.llm import ProviderConfig
from core.adapters.llm.scripted import Say, ScriptedLLM
from core.kernel.agent import Agent
from core.kernel.events import Event, ToolResult
from core.kernel.model import LLMRequest
from core.kernel.store import ThreadStore
from core.kernel.thread import Thread
from core.kernel.tools import Tool, ToolContext
from infra.local.stack import LocalStack


class NoArgs(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CountingAgentKit:
    """Agent ``counter``: calls ``count`` once, then finishes. Counts tool runs and model calls."""

    def __init__(self, *, idempotent: bool = True, barrier: threading.Barrier | None = None) -> None:
        self.runs: Counter[str] = Counter()
        self.keys: list[str] = []
        self.crash_after_tool = False
        self.barrier = barrier
        tool = Tool("count", "Count one.", NoArgs, self._count, idempotent=idempotent)
        self.agent = Agent(
            name="counter",
            description="counts",
            prompt_id="calculator",
            prompt_version=1,
            tools=(tool,),
            model="scripted:counter",
        )
        self.llm = ScriptedLLM(self._brain, name="counter")

    def _brain(self, request: LLMRequest) -> Say:
        if self.barrier is not None:
            self.barrier.wait()
        if any(isinstance(e, ToolResult) for e in request.events):
            return Say("done_for_now", {"answer": "counted"})
        return Say("count", {})

    def _count(self, _: NoArgs, ctx: ToolContext) -> int:
        self.runs["call_id_count"] += 1
        self.keys.append(ctx.idempotency_key)
        return len(self.keys)

    def install(self, stack: LocalStack) -> None:
        rt = stack.rt
        rt.agents = {**AGENTS, self.agent.name: self.agent}
        rt.provider_config = ProviderConfig(
            scripted=lambda name: self.llm if name == "counter" else scripted_model(name)
        )
        rt.threads = _CrashingStore(rt.threads, self)


class _CrashingStore:
    """Raises when asked to commit a tool result while ``kit.crash_after_tool`` is set: a Lambda dying
    after the side effect and before the result commit."""

    def __init__(self, inner: ThreadStore, kit: CountingAgentKit) -> None:
        self.inner = inner
        self.kit = kit

    def create(self, thread: Thread) -> Thread:
        return self.inner.create(thread)

    def load(self, thread_id: str) -> Thread:
        return self.inner.load(thread_id)

    def append(self, thread_id: str, expected_version: int, events: Sequence[Event]) -> Thread:
        if self.kit.crash_after_tool and any(isinstance(e, ToolResult) for e in events):
            raise RuntimeError("the step crashed after the tool ran, before its result was committed")
        return self.inner.append(thread_id, expected_version, events)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
