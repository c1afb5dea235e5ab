"""stepfold's agent kernel: pure, no AWS handlers, no environment reads.

The kernel's public surface is its modules, imported by name (``from core import control``, ``core.agent.Agent``):
this file imports none of them, so ``import core`` costs nothing and a Lambda loads only the modules its handler
uses (cold start is a feature). ``agents/`` builds on :mod:`core.agent` and :mod:`core.tools`; ``functions/`` and
``infra/`` may use every module listed here. Names starting with ``_`` (``core.llm._http``, ``_helpers``) are
private to their module or package.
"""

__all__ = [
    "agent",
    "approvals",
    "budget",
    "context",
    "control",
    "errors",
    "evals",
    "events",
    "llm",
    "notify",
    "observe",
    "parsing",
    "pricing",
    "prompts",
    "replay",
    "replies",
    "runner",
    "store",
    "thread",
    "tools",
    "trigger_types",
    "triggers",
]
