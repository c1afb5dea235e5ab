"""``stepfold schedules`` and ``stepfold trigger-schedule``: the agents' schedules, and firing one locally.

``schedules`` reads the declarations in code (the same ones template.yaml's schedules mirror).
``trigger-schedule NAME --at TIME`` starts the local stack in this process, fires the schedule through the
triggers function exactly as EventBridge Scheduler would (its Input, with the scheduled time), follows the
thread until it ends or waits for someone, and prints it. The stack lives as long as the command.

Wire into ``infra.cli.parser()`` with ``cli_triggers.register(sub)``; each command's ``run`` takes
``(api, args, out)`` like the others there, and ignores ``api``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from agents import AGENTS
from core.kernel.events import UserInput
from core.kernel.thread import fold
from core.services.triggers import BadDeliveryError, Schedule, iso, scheduled_time, schedules

OK, FAILED, USAGE = 0, 1, 2
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


def cmd_trigger_schedule(api: object, args: argparse.Namespace, out: Out) -> int:
    del api
    found = schedules(AGENTS).get(args.name)
    if found is None:
        known = ", ".join(sorted(schedules(AGENTS))) or "none"
        return _fail(f"no schedule {args.name!r}; declared: {known} (see `stepfold schedules`)", USAGE)
    schedule = found.trigger
    assert isinstance(schedule, Schedule)
    try:
        at = _when(args.at, schedule)
    except ValueError as exc:
        return _fail(str(exc), USAGE)
    try:
        from infra.local.stack import LocalStack  # noqa: PLC0415 - needs the development extras (moto)
        from infra.local.triggers import fire_schedule  # noqa: PLC0415
    except ImportError as exc:
        return _fail(f"the local stack needs the development extras ({exc}); run: pip install -e '.[dev]'", FAILED)
    note = "" if schedule.fires_at(at) else f" (not a time {args.name} fires at; fired anyway)"
    with LocalStack(env={"POWERTOOLS_LOG_LEVEL": "WARNING"}) as stack:
        result = fire_schedule(stack, args.name, at)
        threads = result.get("threads", [])
        if not threads:
            return _fail(f"schedule {args.name} started nothing: {result}", FAILED)
        thread_id = threads[0]["thread_id"]
        final = stack.wait(thread_id, timeout=args.timeout)
        state = fold(final)
        if args.json:
            out(json.dumps({"schedule": args.name, "scheduled_time": iso(at), **threads[0], "status": state.status,
                            "answer": state.answer}, indent=2))  # fmt: skip
            return OK
        out(f"fired {args.name} for {iso(at)}{note}: {found.agent} thread {thread_id}")
        first = final.events[0]
        out(f"  input:  {first.text if isinstance(first, UserInput) else ''}")
        out(f"  status: {state.status} after {state.steps} model calls")
        if state.answer:
            out(f"  answer: {state.answer}")
    return OK if state.status in ("done", "awaiting_human") else FAILED


def _when(text: str | None, schedule: Schedule) -> datetime:
    if text is None or text == "last":
        now = datetime.now(UTC)
        return schedule.previous_fire(now) or now.replace(second=0, microsecond=0)
    if text == "now":
        return datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        return scheduled_time(text)
    except BadDeliveryError:
        raise ValueError(f"--at {text!r}: use an ISO 8601 time such as 2025-01-06T09:00:00Z, 'now' or 'last'") from None


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"error: {message}\n")
    return code
