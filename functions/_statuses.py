"""HTTP statuses belong to handlers (ARCHITECTURE.md): the one lookup every handler module's table goes through.

Each handler module maps exception types to its answers in one table (``functions/routes/errors.py`` for the API,
``functions/approvals.py`` for the approval pages, ``functions/triggers.py`` for webhooks). :func:`lookup` walks an
exception's MRO, so a subclass answers as its nearest mapped base; an exception nothing in its MRO maps is None, which
each handler answers as its own failure (a 500 that is logged), never as a success.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

E = TypeVar("E", bound=BaseException)
V = TypeVar("V")


def lookup(table: Mapping[type[E], V], kind: type[BaseException]) -> V | None:
    """``table``'s entry for ``kind``, or for its nearest base that has one; None when none in its MRO has one."""
    for cls in kind.__mro__:
        if cls in table:
            return table[cls]
    return None
