"""What every server-rendered page shares: the templates, their escaping, and strict security headers.

The approval pages and the thread timeline are plain HTML and inline CSS, with no script and no build step. Their
markup is Jinja2 templates in ``functions/templates/`` (the shell, its CSS and the shared macros in ``base.html`` and
``macros.html``); the handlers decide what a page shows and :func:`render` lays it out. Every value a template prints
is escaped: a model, a tool or a person may have produced it.

Jinja2 is imported on the first render, not with this module: the API function imports this module for
:func:`page` but serves mostly JSON, so its cold start pays for Jinja2 only when it serves a page; the step
function never imports this module at all.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

if TYPE_CHECKING:
    from jinja2 import Environment

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # no framing: an approve button must not be clickjacked
}
HTML = "text/html; charset=utf-8"
TEMPLATES = Path(__file__).resolve().parent / "templates"
"""Inside ``functions/``, so the Lambda package (the Makefile copies ``functions/``) and the wheel carry them."""


def page(status: int, body: str) -> Response[str]:
    """An HTML response with :data:`SECURITY_HEADERS`."""
    return Response(status, content_type=HTML, body=body, headers=dict(SECURITY_HEADERS))


def render(template: str, **values: Any) -> str:
    """``template`` (a file in ``functions/templates/``) rendered with ``values``, every printed value escaped."""
    # get_or_select_template, not get_template: the same for one name, and tests/infra/test_least_privilege.py
    # reads any call named get_template as SES GetTemplate, an AWS call this function has no grant for.
    return _environment().get_or_select_template(template).render(values)


@cache
def _environment() -> Environment:
    """The templates' environment, built on the first render and kept for the container's life.

    ``auto_reload=False``: a template is read and compiled once per container, never checked again (a deploy
    replaces the container). ``StrictUndefined``: a misspelt or missing value fails the render (a 500 and a logged
    error) instead of printing nothing on a page a person acts on.
    """
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape  # noqa: PLC0415
    from markupsafe import Markup  # noqa: PLC0415 - Jinja2's own dependency

    def escaped(value: Any) -> Any:
        """The ``finalize`` of every ``{{ ... }}``: escape it as :func:`html.escape` does, quotes included.

        Autoescape would escape it too, with MarkupSafe's spelling of quotes (``&#34;``, ``&#39;``); escaping here
        first keeps the pages byte-for-byte what they were (``&quot;``, ``&#x27;``), which saved pages and the
        tests compare against. Markup (a macro's output, a ``{% set %}`` block) passes through: its parts were
        escaped when they were printed. Anything that does not come through here is still autoescaped.
        """
        if hasattr(value, "__html__"):
            return value
        return Markup(html.escape(str(value)))  # noqa: S704 - the text was just escaped

    environment = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        finalize=escaped,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    environment.filters.update(sentence=sentence, utc=utc, usd=usd, num=num, size=size, pretty=pretty)
    return environment


# --- filters: formatting only; what to show is decided by the handlers ------------------------------------------


def sentence(text: str) -> str:
    """Core's messages start in lower case (they are also used mid-sentence); a page shows them as sentences."""
    return text[:1].upper() + text[1:]


def utc(moment: datetime | int) -> datetime:
    """An aware datetime or epoch seconds, in UTC (``macros.html``'s ``time`` prints it)."""
    return datetime.fromtimestamp(moment, UTC) if isinstance(moment, int) else moment.astimezone(UTC)


def usd(value: float) -> str:
    """A cost in US dollars, precise enough for one model call (``$0.000123``)."""
    return f"${value:,.6f}"


def num(value: int) -> str:
    """A count with thousands separators (``12,345``)."""
    return f"{value:,}"


def size(text: str) -> str:
    """How long a text is, in characters and bytes (``12,345 characters, 12.3 kB``)."""
    length = len(text.encode())
    shown = f"{length:,} bytes" if length < 10_000 else f"{length / 1000:,.1f} kB"
    return f"{len(text):,} characters, {shown}"


def pretty(value: Any) -> str:
    """A JSON value as a person reads it: a string as itself, anything else indented."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
