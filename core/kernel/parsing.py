"""Parse untrusted text at the boundary without letting a malformed value turn into a 500.

Every front door (webhooks, the HTTP API, the approval page) reads numbers and JSON written by someone we do
not trust yet: often before any signature has been checked. Python's own parsers are generous in ways that
matter there: ``str.isdigit()`` accepts ``"²"`` and Arabic-Indic digits, ``int()`` of a 5,000-digit string
raises ``ValueError`` (the int/str conversion limit), ``json.loads`` of ``[[[[...`` raises ``RecursionError``,
and a JSON ``"\\ud800"`` decodes to a lone surrogate that only fails much later, when the store encodes it
as UTF-8. These helpers turn all of that into ``None`` or a :class:`BadInputError` with a message a caller can act on,
so the handler can answer 400 instead of crashing.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 64
"""Deepest nesting of arrays/objects accepted in a request body. Real payloads (Slack, GitHub, our API) stay
well under 20; the limit exists so a hostile body cannot exhaust the recursion limit of the parser, of
pydantic or of the DynamoDB serialiser further down."""

_ASCII_DIGITS = re.compile(r"[0-9]+")
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


class BadInputError(ValueError):
    """Input that is malformed in a way the sender can fix; ``str(exc)`` is safe to return to them."""


def ascii_int(text: str | None, *, max_digits: int) -> int | None:
    """``text`` as a non-negative integer if it is 1..``max_digits`` ASCII digits, else ``None``.

    Use this for every number read from a header, query string or form field. ``str.isdigit`` is not enough:
    it accepts superscripts and other scripts' digits (``int("²")`` then raises), and ``int`` of a very long
    digit string raises or burns CPU. Callers pick ``max_digits`` from what the field can legitimately hold
    (e.g. 10 for a Unix timestamp in seconds) and turn ``None`` into a 4xx with their own message.
    """
    if text is None or not 0 < len(text) <= max_digits or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


def json_depth(text: str) -> int:
    """The deepest array/object nesting in ``text``, ignoring brackets inside strings.

    Works on text that is not valid JSON too (it only counts), so it can run *before* ``json.loads`` and
    keep a deeply nested body away from the recursive parser altogether.
    """
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(text):
        lexeme = match.group()
        if lexeme in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif lexeme in "]}":
            depth -= 1
    return deepest


def check_text(value: Any, *, what: str = "the request") -> None:
    """Raise :class:`BadInputError` if any string inside ``value`` (keys included) cannot be encoded as UTF-8.

    JSON's ``\\ud800`` escape decodes to a lone surrogate, which Python holds happily until DynamoDB, the
    logger or an HTTP client tries to encode it. Checking once at the boundary gives the sender a 400 that
    names the problem instead of a 500 from deep inside the store.
    """
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError(
            f"{what} contains an unpaired UTF-16 surrogate (e.g. a lone \\ud800 escape); "
            "send valid Unicode text (pair surrogates, or send the character itself)"
        ) from None
    except (TypeError, ValueError, RecursionError):
        # Not JSON-shaped (or too deep to serialise): nothing here that the UTF-8 check can say about it.
        return


def loads_json(text: str | bytes, *, what: str = "the request body", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` for untrusted input: refuses deep nesting and lone surrogates with :class:`BadInputError`.

    Raises:
        BadInputError: ``text`` is not UTF-8, not JSON, nested deeper than ``max_depth``, or holds a lone
            surrogate. The message says which, and is safe to show the sender.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise BadInputError(f"{what} is not valid UTF-8; send JSON encoded as UTF-8") from None
    if json_depth(text) > max_depth:
        raise BadInputError(f"{what} is nested deeper than {max_depth} levels of arrays/objects; flatten it")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        detail = f" ({exc.msg} at line {exc.lineno} column {exc.colno})"
        raise BadInputError(f"{what} is not valid JSON{detail}; send a JSON document") from None
    except (ValueError, RecursionError):
        raise BadInputError(f"{what} is not valid JSON; send a JSON document") from None
    check_text(value, what=what)
    return value
