"""Thread stores: the Protocols, their errors, and the memory implementation.

What the other layers use of a store is named here. The DynamoDB stores (:mod:`core.store.dynamodb`,
:mod:`core.store.approvals_dynamodb`) and the transient-error rules (:mod:`core.store.transient`) are imported on
demand by the code that builds or maps them, so a function that never touches DynamoDB does not load them.
"""

from core.store.base import (
    InvalidCursorError,
    StoreError,
    StoreUnavailableError,
    ThreadExistsError,
    ThreadLister,
    ThreadListing,
    ThreadNotFoundError,
    ThreadStore,
    UnreadableThreadError,
    VersionConflictError,
)
from core.store.memory import MemoryThreadStore

__all__ = [
    "InvalidCursorError",
    "MemoryThreadStore",
    "StoreError",
    "StoreUnavailableError",
    "ThreadExistsError",
    "ThreadLister",
    "ThreadListing",
    "ThreadNotFoundError",
    "ThreadStore",
    "UnreadableThreadError",
    "VersionConflictError",
]
