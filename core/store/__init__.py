"""Thread stores: the Protocol, its errors, and the memory implementation (DynamoDB is imported on demand)."""

from core.store.base import (
    StoreError,
    StoreUnavailableError,
    ThreadExistsError,
    ThreadNotFoundError,
    ThreadStore,
    VersionConflictError,
)
from core.store.memory import MemoryThreadStore

__all__ = [
    "MemoryThreadStore",
    "StoreError",
    "StoreUnavailableError",
    "ThreadExistsError",
    "ThreadNotFoundError",
    "ThreadStore",
    "VersionConflictError",
]
