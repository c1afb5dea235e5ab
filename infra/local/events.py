"""The template's schedules and event rules on the local stack: what EventBridge Scheduler and EventBridge do.

:func:`put_event` is ``PutEvents`` on the default bus: it builds the event as a rule's target receives it, matches
it against every rule the template declares (``AWS::Events::Rule`` resources and functions' ``EventBridgeRule``
events) with EventBridge's pattern rules, and invokes each matching rule's Lambda target through moto's Lambda.
:class:`Scheduler` is EventBridge Scheduler for the template's ``AWS::Scheduler::Schedule`` resources: it
evaluates each enabled schedule's expression in its time zone and, at each fire time, invokes the target with
its ``Input`` (``<aws.scheduler.scheduled-time>`` filled in). ``stepfold serve`` runs both; ``stepfold
put-event`` and ``stepfold trigger-schedule`` reach them through the local front door (:mod:`infra.local.admin`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.kernel.trigger_types import Schedule
from core.services.triggers import iso, matches
from infra.local.stack import LocalStack
from infra.local.triggers import event_envelope, invoke

_log = logging.getLogger(__name__)
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"


@dataclass(frozen=True)
class RuleTarget:
    """One rule of the template and the function it invokes."""

    rule: str
    pattern: Mapping[str, Any]
    function: str
    input: str | None = None
    """A constant ``Input`` that replaces the event, as EventBridge sends it; None sends the event."""


@dataclass(frozen=True)
class TemplateSchedule:
    """An ``AWS::Scheduler::Schedule`` of the template whose target is one of its functions."""

    logical_id: str
    name: str
    schedule: Schedule
    function: str
    input: str
    enabled: bool

    def payload(self, at: datetime) -> Any:
        """The target's input for the fire time ``at``, as Scheduler fills its context attribute in."""
        return json.loads(self.input.replace(SCHEDULED_TIME, iso(at)))

    @property
    def label(self) -> str:
        """The schedule's name as the triggers function knows it (the ``schedule`` of its input)."""
        found = json.loads(self.input).get("schedule") if self.input.startswith("{") else None
        return str(found or self.name)


def _function_of(arn: Any) -> str | None:
    if isinstance(arn, dict) and "Fn::GetAtt" in arn:
        target = arn["Fn::GetAtt"]
        return str(target[0] if isinstance(target, list) else str(target).split(".")[0])
    return None


def rule_targets(stack: LocalStack) -> list[RuleTarget]:
    """Every rule on the default bus the template declares, with each of its Lambda targets."""
    found = [RuleTarget(r.name, r.pattern, r.function) for r in stack.template.event_rules()]
    for logical_id, resource in stack.template.resources.items():
        if resource.get("Type") != "AWS::Events::Rule":
            continue
        props = resource.get("Properties", {})
        if props.get("State", "ENABLED") != "ENABLED" or props.get("EventBusName", "default") != "default":
            continue
        pattern = stack.template.resolve(props.get("EventPattern") or {})
        for target in props.get("Targets", []):
            function = _function_of(target.get("Arn"))
            if function is not None:
                found.append(RuleTarget(logical_id, pattern, function, target.get("Input")))
    return found


def put_event(
    stack: LocalStack,
    source: str,
    detail_type: str,
    detail: Mapping[str, Any],
    *,
    event_id: str | None = None,
) -> dict[str, Any]:
    """``PutEvents`` of one event: every matching rule's target is invoked; returns the event and what each did."""
    event = event_envelope(detail_type, source, detail, event_id=event_id)
    deliveries = []
    for target in rule_targets(stack):
        if not matches(target.pattern, event):
            continue
        payload = json.loads(target.input) if target.input is not None else event
        result = _invoke(stack, target.function, payload)
        deliveries.append({"rule": target.rule, "function": target.function, "result": result})
    return {"event_id": event["id"], "event": event, "matched": deliveries}


def template_schedules(stack: LocalStack) -> list[TemplateSchedule]:
    """The template's schedules that invoke one of its functions."""
    found = []
    for logical_id, resource in stack.template.resources.items():
        if resource.get("Type") != "AWS::Scheduler::Schedule":
            continue
        props = stack.template.resolve(resource.get("Properties", {}))
        target = resource.get("Properties", {}).get("Target", {})
        function = _function_of(target.get("Arn"))
        if function is None:
            continue
        zone = str(props.get("ScheduleExpressionTimezone") or "UTC")
        schedule = Schedule(str(props["ScheduleExpression"]), name=logical_id[:64], timezone=zone)
        found.append(
            TemplateSchedule(
                logical_id,
                str(props.get("Name") or logical_id),
                schedule,
                function,
                str(target.get("Input") or "{}"),
                props.get("State", "ENABLED") == "ENABLED",
            )
        )
    return found


def fire(stack: LocalStack, schedule: TemplateSchedule, at: datetime) -> Any:
    """One delivery of ``schedule`` for the fire time ``at``: its target, its input, as Scheduler sends it."""
    return _invoke(stack, schedule.function, schedule.payload(at))


def _invoke(stack: LocalStack, function: str, payload: Any) -> Any:
    answer, raised = invoke(stack, function, payload)
    if raised:
        return {"error": answer.get("errorType") if isinstance(answer, dict) else "Unhandled", "detail": answer}
    return answer


class Scheduler:
    """EventBridge Scheduler for the template's enabled schedules, in a background thread.

    ``clock`` says what time it is (real time by default); the thread wakes at the next fire time of any schedule
    and delivers each one due. A delivery that fails is logged and the schedule goes on, as Scheduler's retry
    policy would eventually give up and move on.
    """

    def __init__(
        self,
        stack: LocalStack,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_fire: Callable[[TemplateSchedule, datetime, Any], None] | None = None,
    ) -> None:
        self.stack = stack
        self.clock = clock
        self.on_fire = on_fire
        self.schedules = [s for s in template_schedules(stack) if s.enabled]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="stepfold-local-scheduler", daemon=True)

    def start(self) -> Scheduler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        after = self.clock()
        while not self._stop.is_set():
            due = [(s, s.schedule.next_fire(after)) for s in self.schedules]
            upcoming = [(s, at) for s, at in due if at is not None]
            if not upcoming:
                return
            when = min(at for _, at in upcoming)
            wait = (when - self.clock()).total_seconds()
            if wait > 0 and self._stop.wait(min(wait, 60.0)):
                return
            if self.clock() < when:
                continue  # woke early (the 60 s cap): look again
            for schedule, at in upcoming:
                if at == when:
                    self._deliver(schedule, at)
            after = when + timedelta(seconds=1) - timedelta(microseconds=when.microsecond)

    def _deliver(self, schedule: TemplateSchedule, at: datetime) -> None:
        try:
            result = fire(self.stack, schedule, at)
        except Exception:  # noqa: BLE001 - the scheduler outlives one failed delivery
            _log.exception("schedule %s failed to fire for %s", schedule.name, iso(at))
            return
        if self.on_fire is not None:
            self.on_fire(schedule, at, result)
