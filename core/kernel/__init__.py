"""The agent kernel: pure, no I/O of its own, no HTTP or AWS notions (ARCHITECTURE.md, "The map").

A step (:mod:`core.kernel.runner`) is a fold of the thread's events (:mod:`core.kernel.thread`), a rendered
context (:mod:`core.kernel.context`), ONE model call through the :class:`~core.kernel.model.LLM` Protocol, a
validated tool call (:mod:`core.kernel.tools`) and one commit through the
:class:`~core.kernel.store.ThreadStore` Protocol. User agents build on :mod:`core.kernel.agent` and
:mod:`core.kernel.tools`.
"""

__all__ = [
    "agent",
    "budget",
    "compaction",
    "context",
    "errors",
    "events",
    "model",
    "observe",
    "parsing",
    "pricing",
    "prompts",
    "runner",
    "store",
    "thread",
    "tools",
    "trigger_types",
]
