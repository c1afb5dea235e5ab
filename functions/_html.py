"""What every server-rendered page shares: the document shell, its CSS, strict security headers, escaping.

The approval pages and the thread timeline are plain HTML and inline CSS, with no script and no build step.
Every value that a model, a tool or a person produced goes through :func:`e` before it reaches a page.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime

from aws_lambda_powertools.event_handler import Response

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",  # no framing: an approve button must not be clickjacked
}
HTML = "text/html; charset=utf-8"

e = html.escape
"""Escape text for an element body or a quoted attribute (quotes included)."""

CSS = """
:root{color-scheme:light dark;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5}
body{margin:0;padding:1rem}
main{max-width:46rem;margin:0 auto}
h1{font-size:1.4rem;margin:.5rem 0 1rem;overflow-wrap:anywhere}
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}
h3{font-size:1rem;margin:0 0 .25rem;overflow-wrap:anywhere}
pre,code,.code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9rem}
pre{white-space:pre-wrap;overflow-wrap:anywhere;padding:.75rem;border:1px solid GrayText;border-radius:4px}
p,dd{overflow-wrap:anywhere}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem}
dt{font-weight:600}
dd{margin:0}
section{border-top:1px solid GrayText;padding-top:.75rem;margin-top:1rem}
.error{border:2px solid #a40e26;border-radius:4px;padding:.5rem .75rem;margin:1rem 0}
.hint{font-size:.9rem;margin:.25rem 0}
:focus-visible{outline:3px solid #0969da;outline-offset:2px}
@media (max-width:30rem){dl{grid-template-columns:1fr}dd{margin-bottom:.5rem}}
"""
"""The base stylesheet: readable at 320px, light and dark, with no external resource (the CSP allows none)."""


def page(status: int, body: str) -> Response[str]:
    """An HTML response with :data:`SECURITY_HEADERS`."""
    return Response(status, content_type=HTML, body=body, headers=dict(SECURITY_HEADERS))


def document(title: str, main: str, *, css: str = "", heading: str | None = None) -> str:
    """A whole page: ``title`` as its ``<title>`` and ``<h1>`` (or ``heading``, already HTML), then ``main`` (HTML)."""
    h1 = e(title) if heading is None else heading
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{e(title)} · stepfold</title>\n<style>{CSS}{css}</style>\n</head>\n"
        f"<body>\n<main>\n<h1>{h1}</h1>\n{main}\n</main>\n</body>\n</html>\n"
    )


def sentence(text: str) -> str:
    """Core's messages start in lower case (they are also used mid-sentence); a page shows them as sentences."""
    return text[:1].upper() + text[1:]


def utc(moment: datetime | int, *, seconds: bool = False) -> str:
    """A ``<time>`` element in UTC, from an aware datetime or epoch seconds."""
    when = datetime.fromtimestamp(moment, UTC) if isinstance(moment, int) else moment.astimezone(UTC)
    shown = when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return f'<time datetime="{when.strftime("%Y-%m-%dT%H:%M:%SZ")}">{shown} UTC</time>'


def usd(value: float) -> str:
    """A cost in US dollars, precise enough for one model call (``$0.000123``)."""
    return f"${value:,.6f}"
