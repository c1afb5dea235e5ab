"""stepfold's core, in three layers you can see in the tree (ARCHITECTURE.md, "The map").

``core.kernel``
    The agent kernel: events, the thread fold, context rendering, prompts, tools, the agent declaration and its
    step, and the interfaces (Protocols) of what a step needs from outside: a model, a thread store, a spend
    ledger. No network, no AWS, no HTTP, no environment reads.
``core.services``
    What an application does with threads, built on the kernel: control (launch, pause, resume, cancel,
    retry, fork), approvals, triggers, replies, notifications, evals, replay.
``core.adapters``
    The edge: model providers (``llm``), stores (``store``), the transports of notifications and replies.

Imports point down only (adapters -> services -> kernel), checked by the import-linter contracts in
pyproject.toml. No ``__init__`` here imports a module, so ``import core`` costs nothing and a Lambda loads only
the modules its handler uses (cold start is a feature). Names starting with ``_`` are private to their package.
"""

__all__ = ["adapters", "kernel", "services"]
