"""``stepfold context ID [--seq N]``: what the model saw at a model call (Factor 3: own your context window).

One call to ``GET /threads/{id}/context`` through the HTTP API (``STEPFOLD_URL``, ``STEPFOLD_API_KEY``): the
first model call at or after seq N (the latest without ``--seq``), its system prompt as rendered from the prompt
version recorded on the call, and the thread as ``core.kernel.context.render`` gave it to the model. ``--only context``
prints just the rendered context, byte for byte, for diffing or piping.

Wire into ``infra.cli.parser()`` with ``cli_views.register(sub)``; the command's ``run`` takes ``(api, args, out)``
like the others there.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

OK = 0
Out = Callable[[str], None]


class Api(Protocol):
    """What the command needs of ``infra.cli.Api``: one JSON call, raising its ApiError / UnreachableError."""

    def call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None) -> Any: ...


def _seq(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"a seq is a number from 0 (see `stepfold events ID`), got {text!r}")
    return int(text)


def register(subparsers: Any) -> None:
    """Add ``context`` to ``stepfold``'s subparsers."""
    helptext = "what the model saw at a model call: its system prompt and the rendered thread"
    c = subparsers.add_parser("context", help=helptext, description=helptext)
    c.add_argument("thread_id")
    c.add_argument(
        "--seq",
        type=_seq,
        default=None,
        help="the first model call at or after this seq (`stepfold events ID` shows them); default: the latest",
    )
    c.add_argument("--only", choices=("system", "context"), default=None, help="print just this part, exactly")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=cmd_context)


def cmd_context(api: Api, args: argparse.Namespace, out: Out) -> int:
    view: dict[str, Any] = api.call(
        "GET", f"/threads/{quote(args.thread_id, safe='')}/context", params={"seq": args.seq}
    )
    if args.json:
        out(json.dumps(view, indent=2))
        return OK
    if args.only is not None:
        out(str(view.get(args.only) or ""))
        return OK
    for line in header(view):
        out(line)
    out("--- system prompt " + "-" * 40)
    out(str(view.get("system") or "(the prompt file of this version is gone)").rstrip("\n"))
    out("--- context " + "-" * 46)
    out(str(view.get("context") or ""))
    return OK


def header(view: dict[str, Any]) -> list[str]:
    """The lines above the prompt and context: which call, which prompt, how big."""
    prompt = view.get("prompt") or {}
    hash_ = str(prompt.get("hash") or "")[:12]
    lines = [
        f"step     {view.get('step')} (model call at seq {view.get('seq')}), model {view.get('model')}",
        f"prompt   {prompt.get('id')}/v{prompt.get('version')} {hash_}",
        f"context  about {view.get('tokens')} tokens of {view.get('max_tokens')} (estimated); "
        + (
            f"the scripted model estimated {view.get('input_tokens')} input tokens (no provider counted them)"
            if str(view.get("model") or "").startswith("scripted:")
            else f"the provider counted {view.get('input_tokens')} input tokens"
        ),
        f"tools    {', '.join(view.get('tools') or [])}",
    ]
    if not prompt.get("current", True):
        lines.append("warning  the prompt file changed since this call: the system prompt below is today's text")
    around = [
        f"previous: --seq {view['previous_seq']}" if view.get("previous_seq") is not None else "",
        f"next: --seq {view['next_seq']}" if view.get("next_seq") is not None else "",
    ]
    if any(around):
        lines.append("see      " + "  ".join(a for a in around if a))
    return lines
