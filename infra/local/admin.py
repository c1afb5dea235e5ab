"""Local-only routes of ``stepfold serve``'s front door: what AWS does outside the HTTP API, on request.

``POST /_local/events`` is EventBridge ``PutEvents`` (``{"source", "detail-type", "detail", "id"?}``) and
``POST /_local/schedules/{name}`` fires one of the template's schedules (``{"at": ISO 8601 | "now" | "last"}``,
default ``last``: the time it last should have fired). Both need the stack's API key, as every API route does;
they exist only on the local front door (the deployed API has no such routes), and answer JSON.
``stepfold put-event`` and ``stepfold trigger-schedule`` call them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.services.triggers import BadDeliveryError, iso, scheduled_time
from infra.local.events import fire, put_event, template_schedules
from infra.local.stack import LocalStack

PREFIX = "/_local/"
_SCHEDULE = re.compile(r"^/_local/schedules/([A-Za-z0-9_.-]{1,64})$")
MAX_BODY = 256 * 1024


@dataclass(frozen=True)
class LocalAnswer:
    status: int
    body: dict[str, Any]


def _error(status: int, error: str, detail: str) -> LocalAnswer:
    return LocalAnswer(status, {"error": error, "detail": detail})


def answer(stack: LocalStack, method: str, path: str, body: bytes | None, authorized: bool) -> LocalAnswer | None:
    """The answer to a local-only route, or None when ``path`` is not one."""
    if not path.startswith(PREFIX):
        return None
    if not authorized:
        return _error(401, "unauthorized", "missing or invalid API key (the one `stepfold serve` printed)")
    if method != "POST":
        return _error(405, "method_not_allowed", f"{path} takes POST")
    try:
        document = json.loads(body or b"{}")
    except ValueError as exc:
        return _error(400, "bad_request", f"the body is not JSON: {exc}")
    if not isinstance(document, dict):
        return _error(400, "bad_request", "the body must be a JSON object")
    if path == "/_local/events":
        return _put_event(stack, document)
    found = _SCHEDULE.match(path)
    if found is not None:
        return _fire_schedule(stack, found.group(1), document)
    return _error(404, "not_found", f"no local route {path}; there are /_local/events and /_local/schedules/NAME")


def _put_event(stack: LocalStack, document: Mapping[str, Any]) -> LocalAnswer:
    source, detail_type, detail = document.get("source"), document.get("detail-type"), document.get("detail", {})
    if not isinstance(source, str) or not source or not isinstance(detail_type, str) or not detail_type:
        return _error(400, "bad_request", 'an event needs "source" and "detail-type" (strings) and a "detail" object')
    if not isinstance(detail, dict):
        return _error(400, "bad_request", '"detail" must be a JSON object')
    event_id = document.get("id")
    if event_id is not None and not isinstance(event_id, str):
        return _error(400, "bad_request", '"id" must be a string')
    return LocalAnswer(200, put_event(stack, source, detail_type, detail, event_id=event_id))


def _fire_schedule(stack: LocalStack, name: str, document: Mapping[str, Any]) -> LocalAnswer:
    known = template_schedules(stack)
    found = next((s for s in known if name in (s.label, s.name, s.logical_id)), None)
    if found is None:
        names = ", ".join(sorted(s.label for s in known)) or "none"
        return _error(404, "unknown_schedule", f"no schedule {name!r} in template.yaml; there are: {names}")
    text = document.get("at") or "last"
    now = datetime.now(UTC)
    if text == "now":
        at = now.replace(second=0, microsecond=0)
    elif text == "last":
        at = found.schedule.previous_fire(now) or now.replace(second=0, microsecond=0)
    else:
        try:
            at = scheduled_time(str(text))
        except BadDeliveryError:
            return _error(
                400, "bad_request", f'"at" {text!r}: an ISO 8601 time such as 2025-01-06T09:00:00Z, "now" or "last"'
            )
    note = None if found.schedule.fires_at(at) else f"{found.label} does not fire at {iso(at)}; fired anyway"
    result = fire(stack, found, at)
    return LocalAnswer(200, {"schedule": found.label, "scheduled_time": iso(at), "note": note, "result": result})
