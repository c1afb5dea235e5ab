"""Thread stores: the Protocols, their errors, and the memory implementation.

What the other layers use of a store is named here. The DynamoDB stores (:mod:`core.adapters.store.dynamodb`,
:mod:`core.adapters.store.approvals_dynamodb`) and the transient-error rules (:mod:`core.adapters.store.transient`) are
imported on
demand by the code that builds or maps them, so a function that never touches DynamoDB does not load them.
"""

from core.adapters.store.memory import MemoryThreadStore
from core.kernel.store import (
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
