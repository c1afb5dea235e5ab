"""Application services on the kernel: what people and triggers do with threads (ARCHITECTURE.md, "The map").

Each service takes its stores, clients and clock as arguments; none builds a client or reads the environment.
"""

__all__ = ["approvals", "control", "evals", "notify", "replay", "replies", "triggers"]
