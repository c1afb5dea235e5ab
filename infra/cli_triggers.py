"""``stepfold schedules``, ``stepfold trigger-schedule`` and ``stepfold put-event``: schedules and events, locally.

``schedules`` reads the declarations in code (the same ones template.yaml's schedules mirror).
``trigger-schedule NAME [--at TIME]`` asks the running ``stepfold serve`` to fire the template's schedule through
the triggers function exactly as EventBridge Scheduler would (its Input, with the scheduled time), follows the
thread until it ends or waits for someone, and prints it. ``put-event`` puts an event on the running stack's
default bus: every rule the template declares that matches it invokes its target, as EventBridge does. Both talk
to ``STEPFOLD_URL`` with ``STEPFOLD_API_KEY`` like every other command (:mod:`infra.local.admin`).

Wired into ``infra.cli.parser()`` with ``cli_triggers.register(sub)``; each command's ``run`` takes
``(api, args, out)`` like the others there.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from agents import AGENTS
from core.services.triggers import iso
from infra.cli import Api, ApiError, follow

OK, FAILED = 0, 1
Out = Callable[[str], None]


def register(subparsers: Any) -> None:
    """Add the two commands to ``stepfold``'s subparsers."""
    c = subparsers.add_parser("schedules", help="the agents' schedules", description="The agents' schedules.")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=cmd_schedules)

    helptext = "fire a schedule on the local stack, as EventBridge Scheduler would"
    c = subparsers.add_parser("trigger-schedule", help=helptext, description=helptext)
    c.add_argument("name", help="a name from `stepfold schedules`")
    c.add_argument(
        "--at",
        default=None,
        help="the scheduled time, ISO 8601 (default: the last time the schedule should have fired)",
    )
    c.add_argument("--timeout", type=float, default=60.0, help="give up following the thread after this many seconds")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=cmd_trigger_schedule)

    helptext = "put an event on the running `stepfold serve`'s bus: the template's matching rules start their agents"
    c = subparsers.add_parser("put-event", help=helptext, description=helptext)
    c.add_argument("--source", required=True, help="e.g. shop.web")
    c.add_argument("--detail-type", required=True, help="e.g. order.failed")
    c.add_argument("--detail", default="{}", help="the event's detail, a JSON object")
    c.add_argument("--id", default=None, help="the event id (default: a new one; the same id starts nothing new)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(run=cmd_put_event)


def cmd_schedules(api: object, args: argparse.Namespace, out: Out) -> int:
    del api
    from infra.local.triggers import list_schedules  # noqa: PLC0415 - the local helpers import the stack

    rows = list_schedules(AGENTS)
    if args.json:
        out(json.dumps([r.as_dict() for r in rows], indent=2))
        return OK
    if not rows:
        out("(no agent declares a schedule)")
        return OK
    width = max(len(r.name) for r in rows)
    out(f"{'NAME':<{width}}  {'AGENT':<10} {'EXPRESSION':<28} {'TIMEZONE':<16} NEXT")
    for r in rows:
        upcoming = iso(r.next_fire) if r.next_fire else "-"
        out(f"{r.name:<{width}}  {r.agent:<10} {r.expression:<28} {r.timezone:<16} {upcoming}")
    return OK


def cmd_trigger_schedule(api: Api, args: argparse.Namespace, out: Out) -> int:
    """Ask the running ``stepfold serve`` to fire the schedule, then follow the thread it started."""
    fired = _local(api, f"/_local/schedules/{quote(args.name, safe='')}", {"at": args.at or "last"})
    result = fired.get("result") or {}
    threads = result.get("threads", []) if isinstance(result, dict) else []
    if not threads:
        raise ApiError(0, f"schedule {args.name} started nothing: {json.dumps(result)}")
    started = threads[0]
    summary = follow(api, started["thread_id"], after=None, live=True, as_json=False, out=lambda _: None,
                     timeout=args.timeout)  # fmt: skip
    if args.json:
        out(json.dumps({**fired, "thread": summary}))
        return OK
    note = f" ({fired['note']})" if fired.get("note") else ""
    fired_for = f"fired {fired['schedule']} for {fired['scheduled_time']}{note}"
    out(f"{fired_for}: {summary.get('agent')} thread {started['thread_id']}")
    out(f"  status: {summary.get('status')} after {summary.get('steps', 0)} model calls")
    if summary.get("answer"):
        out(f"  answer: {summary['answer']}")
    return OK if summary.get("status") in ("done", "awaiting_human") else FAILED


def cmd_put_event(api: Api, args: argparse.Namespace, out: Out) -> int:
    """``PutEvents`` on the running ``stepfold serve``: every rule of the template that matches starts its target."""
    try:
        detail = json.loads(args.detail)
    except ValueError as exc:
        raise ApiError(0, f"--detail is not JSON: {exc}") from None
    body = {"source": args.source, "detail-type": args.detail_type, "detail": detail, "id": args.id}
    put = _local(api, "/_local/events", {k: v for k, v in body.items() if v is not None})
    if args.json:
        out(json.dumps(put))
        return OK
    matched = put.get("matched", [])
    out(f"event {put.get('event_id')}: {len(matched)} rule(s) matched")
    for delivery in matched:
        result = delivery.get("result")
        threads = result.get("threads", []) if isinstance(result, dict) else []
        started = ", ".join(
            f"{t.get('thread_id')}{'' if t.get('created', True) else ' (already started)'}" for t in threads
        )
        out(f"  {delivery.get('rule')} -> {delivery.get('function')}: {started or json.dumps(result)}")
    return OK


def _local(api: Api, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """A local-only route of ``stepfold serve``; the deployed API has none, so say what to run there instead."""
    try:
        answer: dict[str, Any] = api.call("POST", path, body=body)
    except ApiError as exc:
        if exc.status == 404 and not exc.detail.startswith(("no local route", "no schedule")):
            raise ApiError(
                404,
                f"{api.url} is not `stepfold serve` ({exc.detail}); in AWS, EventBridge fires schedules and "
                "`aws events put-events` puts events",
            ) from None
        raise
    return answer
