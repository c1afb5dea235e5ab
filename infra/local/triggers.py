"""Triggers on the local stack: what Scheduler, EventBridge and SQS would deliver, through the deployed handler.

The builders make the exact events AWS sends to the triggers function (a Scheduler target's Input, the
EventBridge envelope, an SQS batch). :func:`deliver` hands one to that function: through moto's Lambda when
template.yaml declares ``TriggersFunction`` (as Scheduler or a rule would invoke it), else straight to
``functions.triggers.handler`` with a Lambda context. Either way it is the code that runs in AWS.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.kernel.agent import Agent
from core.services.triggers import Schedule, iso, schedules
from infra.local.stack import ACCOUNT, REGION, LambdaContext, LocalStack

FUNCTION = "TriggersFunction"


@dataclass(frozen=True)
class ScheduleRow:
    """One declared schedule as ``stepfold schedules`` lists it."""

    name: str
    agent: str
    expression: str
    timezone: str
    next_fire: datetime | None
    previous_fire: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "agent": self.agent,
            "expression": self.expression,
            "timezone": self.timezone,
            "next_fire": iso(self.next_fire) if self.next_fire else None,
            "previous_fire": iso(self.previous_fire) if self.previous_fire else None,
        }


def list_schedules(agents: Mapping[str, Agent], now: datetime | None = None) -> list[ScheduleRow]:
    """Every schedule the agents declare, with when it fires next and when it last should have."""
    now = now or datetime.now(UTC)
    rows = []
    for name, sub in sorted(schedules(agents).items()):
        schedule = sub.trigger
        assert isinstance(schedule, Schedule)
        rows.append(
            ScheduleRow(
                name,
                sub.agent,
                schedule.expression,
                schedule.timezone,
                schedule.next_fire(now),
                schedule.previous_fire(now),
            )
        )
    return rows


def scheduler_input(name: str, at: datetime) -> dict[str, Any]:
    """The Input a schedule's target receives, with ``<aws.scheduler.scheduled-time>`` filled in as Scheduler does."""
    return {"schedule": name, "scheduled_time": iso(at)}


def event_envelope(
    detail_type: str,
    source: str,
    detail: Mapping[str, Any],
    *,
    event_id: str | None = None,
    time_: datetime | None = None,
    resources: Sequence[str] = (),
) -> dict[str, Any]:
    """An EventBridge event exactly as a rule's Lambda target receives it."""
    return {
        "version": "0",
        "id": event_id or str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": iso(time_ or datetime.now(UTC)),
        "region": REGION,
        "resources": list(resources),
        "detail": dict(detail),
    }


def sqs_event(
    bodies: Sequence[str], *, queue: str = "stepfold-triggers", sent_at: float | None = None
) -> dict[str, Any]:
    """An SQS event source mapping's batch: one record per body, with the attributes Lambda receives."""
    sent = str(int((sent_at if sent_at is not None else time.time()) * 1000))
    arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue}"
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": f"AQEB{uuid.uuid4().hex}",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": sent,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": sent,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": REGION,
            }
            for body in bodies
        ]
    }


def invoke(stack: LocalStack, function: str, payload: Any) -> tuple[Any, bool]:
    """Invoke ``function`` through moto's Lambda, as a rule, a schedule or a queue would: (its answer, whether it
    raised). A function that raised answers Lambda's ``{"errorType", "errorMessage"}``."""
    response = stack.clients["lambda"].invoke(FunctionName=function, Payload=json.dumps(payload).encode())
    return json.loads(response["Payload"].read() or b"null"), bool(response.get("FunctionError"))


def deliver(stack: LocalStack, event: Mapping[str, Any]) -> Any:
    """Invoke the triggers function with ``event`` and return what it returned (raising what it raised)."""
    if FUNCTION in stack.function_arns:
        payload, raised = invoke(stack, FUNCTION, event)
        if raised:
            raise RuntimeError(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        return payload
    from functions.triggers import handler  # noqa: PLC0415 - template.yaml does not declare the function yet

    return handler(json.loads(json.dumps(event)), LambdaContext(function_name=FUNCTION))


def fire_schedule(stack: LocalStack, name: str, at: datetime) -> dict[str, Any]:
    """Fire schedule ``name`` for the scheduled time ``at``: the same Input, the same handler as in AWS."""
    result: dict[str, Any] = deliver(stack, scheduler_input(name, at))
    return result
