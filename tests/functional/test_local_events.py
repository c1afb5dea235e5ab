"""The template's schedules and event rules on the local stack (infra/local/events.py), read from template.yaml."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from core.kernel.thread import fold
from infra.local.events import Scheduler, TemplateSchedule, put_event, rule_targets, template_schedules
from infra.local.stack import LocalStack


def test_the_template_schedules_and_rules_are_read_as_declared(stack: LocalStack) -> None:
    (standup,) = template_schedules(stack)
    assert (standup.label, standup.function, standup.enabled) == ("standup-weekdays", "TriggersFunction", True)
    assert standup.schedule.expression == "cron(0 9 ? * MON-FRI *)"
    assert standup.payload(datetime(2025, 1, 6, 9, tzinfo=UTC)) == {
        "schedule": "standup-weekdays",
        "scheduled_time": "2025-01-06T09:00:00Z",
    }
    rules = {(t.rule, t.function) for t in rule_targets(stack)}
    assert ("OrderFailedRule", "TriggersFunction") in rules


def test_put_event_invokes_only_the_rules_that_match(stack: LocalStack) -> None:
    matched = put_event(stack, "shop.web", "order.failed", {"order_id": "ord_7", "reason": "payment_declined"})
    (delivery,) = [m for m in matched["matched"] if m["rule"] == "OrderFailedRule"]
    thread_id = delivery["result"]["threads"][0]["thread_id"]
    assert stack.thread(thread_id).agent == "orders"
    stack.wait(thread_id)
    # the pattern wants an order_id and a shop.* source: these reach no rule, and start nothing
    assert put_event(stack, "shop.web", "order.failed", {"reason": "x"})["matched"] == []
    assert put_event(stack, "billing", "order.failed", {"order_id": "ord_8"})["matched"] == []


class _Clock:
    """Sunday 23:00 UTC, then Monday 09:00 once the scheduler has read the time once."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> datetime:
        self.calls += 1
        return datetime(2025, 1, 5, 23, tzinfo=UTC) if self.calls == 1 else datetime(2025, 1, 6, 9, tzinfo=UTC)


def _fired(stack: LocalStack, clock: _Clock) -> Iterator[tuple[TemplateSchedule, datetime, Any]]:
    got: list[tuple[TemplateSchedule, datetime, Any]] = []
    done = threading.Event()

    def record(schedule: TemplateSchedule, at: datetime, result: Any) -> None:
        got.append((schedule, at, result))
        done.set()

    scheduler = Scheduler(stack, clock=clock, on_fire=record).start()
    try:
        assert done.wait(30), "the schedule did not fire"
    finally:
        scheduler.stop()
    yield from got


def test_the_scheduler_fires_each_schedule_at_its_next_time(stack: LocalStack) -> None:
    ((schedule, at, result),) = list(_fired(stack, _Clock()))
    assert (schedule.label, at) == ("standup-weekdays", datetime(2025, 1, 6, 9, tzinfo=UTC))
    thread_id = result["threads"][0]["thread_id"]
    final = stack.wait(thread_id)
    assert fold(final).status == "done"
    assert "Monday 2025-01-06" in (fold(final).answer or "")
