"""Compact errors into context (Factor 9): short, specific, and safe to show the model."""

from __future__ import annotations

from pydantic import ValidationError

MAX_ERROR_CHARS = 500


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Shorten ``text`` to ``limit`` characters, saying how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more chars]"


def compact_exception(exc: BaseException) -> str:
    """``TypeName: message`` on one line, without a traceback."""
    message = " ".join(str(exc).split())
    return clip(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)


def compact_validation_error(exc: ValidationError) -> str:
    """One line per field problem, e.g. ``b: Input should be a valid number (got 'xyz')``."""
    parts: list[str] = []
    for err in exc.errors(include_url=False)[:8]:
        where = ".".join(str(p) for p in err["loc"]) or "arguments"
        got = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {clip(repr(got), 60)})"
        parts.append(f"{where}: {err['msg']}{shown}")
    more = exc.error_count() - len(parts)
    if more > 0:
        parts.append(f"... and {more} more")
    return clip("; ".join(parts))
