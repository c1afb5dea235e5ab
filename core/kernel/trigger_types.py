"""What an agent declares about where its threads come from (Factor 11): :class:`Webhook`, :class:`Schedule` and
:class:`EventRule`, with the pure code that checks and evaluates them (EventBridge patterns, schedule expressions).

These are values on ``Agent.triggers``, so :mod:`core.kernel.agent` imports this module; :mod:`core.services.triggers`,
which
reads the agents' declarations and launches threads through :mod:`core.services.control` (which needs the agents),
imports
it too. Keeping the declarations here, importing no other module of ``core``, is what keeps ``core.kernel.agent`` and
``core.services.triggers`` from importing each other. :mod:`core.services.triggers` re-exports every public name, and
its module
docstring describes how deliveries, schedules and rules are read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Payload = dict[str, Any]
Scheme = Literal["github", "slack", "stepfold"]

MAX_INPUT_CHARS = 8_000
"""A default ``to_input`` keeps at most this much of a payload."""
_SOURCE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_NAME = re.compile(r"^[0-9A-Za-z_.-]{1,64}$")
"""EventBridge Scheduler's and EventBridge rules' name alphabet."""


# --- declarations ----------------------------------------------------------------------------------------------


def payload_input(payload: Mapping[str, Any]) -> str:
    """The default ``to_input``: the payload as compact JSON, cut to :data:`MAX_INPUT_CHARS`."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, sort_keys=True, default=str)
    return text if len(text) <= MAX_INPUT_CHARS else text[: MAX_INPUT_CHARS - 3] + "..."


@dataclass(frozen=True)
class Webhook:
    """Start a thread for each signed delivery of ``events`` from ``source`` (``POST /webhooks/<source>``).

    Event names: GitHub ``<X-GitHub-Event>.<action>`` (``issues.opened``) or the bare event (``push``);
    Slack the slash command (``/standup``) or the Events API type (``app_mention``); our envelope its
    ``type``. ``"*"`` subscribes to every event of the source.
    """

    source: str
    events: Sequence[str]
    to_input: Callable[[Payload], str] = payload_input

    def __post_init__(self) -> None:
        if not _SOURCE.match(self.source):
            raise ValueError(f"webhook source {self.source!r}: use 1-40 lowercase letters, digits, '-' or '_'")
        events = (self.events,) if isinstance(self.events, str) else tuple(self.events)
        if not events or not all(isinstance(e, str) and e for e in events):
            raise ValueError(f"webhook {self.source}: name at least one event, e.g. ['issues.opened']")
        object.__setattr__(self, "events", events)

    @property
    def scheme(self) -> Scheme:
        return scheme_of(self.source)

    def accepts(self, event: str) -> bool:
        return "*" in self.events or event in self.events


@dataclass(frozen=True)
class Schedule:
    """Start a thread at each time ``expression`` names (EventBridge Scheduler; UTC unless ``timezone``).

    ``input`` is the thread's first user input, or a function of the scheduled time (in ``timezone``).
    ``name`` is what the Scheduler target's Input and ``stepfold trigger-schedule`` call it (with the scheduled
    time it makes the idempotency key); it defaults to the agent's name.
    """

    expression: str
    input: str | Callable[[datetime], str] = "It is time for your scheduled run."
    name: str = ""
    timezone: str = "UTC"
    _parsed: ScheduleExpression = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.name and not _NAME.match(self.name):
            raise ValueError(f"schedule name {self.name!r}: 1-64 of letters, digits, '-', '_' or '.'")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"schedule {self.name or self.expression}: unknown timezone {self.timezone!r}") from None
        object.__setattr__(self, "_parsed", parse_schedule_expression(self.expression))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def input_for(self, scheduled: datetime) -> str:
        return self.input(scheduled.astimezone(self.zone)) if callable(self.input) else self.input

    def fires_at(self, when: datetime) -> bool:
        """Whether the schedule fires at ``when`` (to the minute)."""
        return self._parsed.fires_at(when, self.zone)

    def next_fire(self, after: datetime) -> datetime | None:
        """The first fire time strictly after ``after`` (UTC), or None for ``rate(...)`` and a past ``at(...)``."""
        return self._parsed.next_fire(after, self.zone)

    def previous_fire(self, at_or_before: datetime) -> datetime | None:
        """The last fire time at or before ``at_or_before`` (UTC), or None."""
        return self._parsed.previous_fire(at_or_before, self.zone)


@dataclass(frozen=True)
class EventRule:
    """Start a thread for each EventBridge event matching ``pattern``; ``to_input`` gets the whole envelope.

    The rule that routes these events to the triggers function in template.yaml uses the same pattern;
    the function matches again here, so the code decides which agent an event starts.
    """

    pattern: Mapping[str, Any]
    to_input: Callable[[Payload], str] = payload_input
    name: str = ""

    def __post_init__(self) -> None:
        if self.name and not _NAME.match(self.name):
            raise ValueError(f"event rule name {self.name!r}: 1-64 of letters, digits, '-', '_' or '.'")
        validate_pattern(self.pattern)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return matches(self.pattern, event)


Trigger = Webhook | Schedule | EventRule


def scheme_of(source: str) -> Scheme:
    """How deliveries from ``source`` are signed: GitHub's and Slack's own schemes, ours for every other name."""
    return "github" if source == "github" else "slack" if source == "slack" else "stepfold"


# --- EventBridge patterns --------------------------------------------------------------------------------------

_OPERATORS = frozenset({"prefix", "exists"})


def validate_pattern(pattern: Mapping[str, Any], path: str = "") -> None:
    """Raise ValueError (naming the field) for a pattern outside the supported subset."""
    if not isinstance(pattern, Mapping) or not pattern:
        raise ValueError(f"event pattern{' at ' + path if path else ''} must be a non-empty object")
    for key, value in pattern.items():
        where = f"{path}.{key}" if path else key
        if isinstance(value, Mapping):
            validate_pattern(value, where)
            continue
        if not isinstance(value, list) or not value:
            raise ValueError(f'event pattern {where}: a leaf must be a non-empty list of values, e.g. ["order.failed"]')
        for matcher in value:
            if isinstance(matcher, Mapping):
                if len(matcher) != 1 or next(iter(matcher)) not in _OPERATORS:
                    raise ValueError(
                        f"event pattern {where}: supported operators are prefix and exists, got {dict(matcher)}"
                    )
                op, arg = next(iter(matcher.items()))
                if op == "prefix" and not isinstance(arg, str):
                    raise ValueError(f"event pattern {where}: prefix takes a string")
                if op == "exists" and not isinstance(arg, bool):
                    raise ValueError(f"event pattern {where}: exists takes true or false")
            elif isinstance(matcher, list):
                raise ValueError(f"event pattern {where}: nested lists are not a pattern")


def matches(pattern: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """EventBridge semantics: every field of the pattern matches (AND), any value of a list does (OR)."""
    for key, expected in pattern.items():
        present = key in event
        value = event.get(key)
        if isinstance(expected, Mapping):
            if not isinstance(value, Mapping) or not matches(expected, value):
                return False
        elif not any(_leaf_matches(m, present, value) for m in expected):
            return False
    return True


def _leaf_matches(matcher: Any, present: bool, value: Any) -> bool:
    if isinstance(matcher, Mapping):
        op, arg = next(iter(matcher.items()))
        if op == "exists":
            return (present and not isinstance(value, Mapping)) is arg
        return any(isinstance(v, str) and v.startswith(arg) for v in _values(value)) if present else False
    return present and any(_same_value(matcher, v) for v in _values(value))


def _values(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _same_value(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    return bool(expected == actual)


# --- schedule expressions --------------------------------------------------------------------------------------

_MONTHS = dict(
    zip(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), range(1, 13), strict=True)
)
_DAYS = dict(zip(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), range(1, 8), strict=True))
_CRON_FIELDS: tuple[tuple[str, int, int, Mapping[str, int]], ...] = (
    ("minutes", 0, 59, {}),
    ("hours", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 1, 7, _DAYS),
    ("year", 1970, 2199, {}),
)
_RATE_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_SEARCH_DAYS = 366 * 8


@dataclass(frozen=True)
class ScheduleExpression:
    """A parsed ``cron(...)``, ``rate(...)`` or ``at(...)``. Cron fields hold None for ``*`` / ``?``."""

    kind: Literal["cron", "rate", "at"]
    fields: tuple[frozenset[int] | None, ...] = ()
    every_seconds: int = 0
    at: datetime | None = None

    def _day(self, day: date) -> bool:
        _, _, dom, months, dow, years = self.fields
        aws_dow = (day.weekday() + 1) % 7 + 1  # Monday is 2, Sunday 1
        return (
            (years is None or day.year in years)
            and (months is None or day.month in months)
            and (dom is None or day.day in dom)
            and (dow is None or aws_dow in dow)
        )

    def _times(self, day: date, zone: ZoneInfo, *, reverse: bool) -> Iterator[datetime]:
        minutes, hours = self.fields[0], self.fields[1]
        for hour in sorted(hours if hours is not None else range(24), reverse=reverse):
            for minute in sorted(minutes if minutes is not None else range(60), reverse=reverse):
                yield datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone).astimezone(UTC)

    def fires_at(self, when: datetime, zone: ZoneInfo) -> bool:
        if self.kind == "at":
            return self.at is not None and _minute(when) == _minute(self.at.replace(tzinfo=zone))
        if self.kind == "rate":
            return True
        local = when.astimezone(zone)
        minutes, hours = self.fields[0], self.fields[1]
        return (
            self._day(local.date())
            and (hours is None or local.hour in hours)
            and (minutes is None or local.minute in minutes)
        )

    def next_fire(self, after: datetime, zone: ZoneInfo) -> datetime | None:
        if self.kind == "at":
            at = self.at.replace(tzinfo=zone).astimezone(UTC) if self.at else None
            return at if at is not None and at > after else None
        if self.kind == "rate":
            return None
        start = after.astimezone(zone).date()
        for offset in range(_SEARCH_DAYS):
            day = start + timedelta(days=offset)
            if self._day(day):
                for candidate in self._times(day, zone, reverse=False):
                    if candidate > after:
                        return candidate
        return None

    def previous_fire(self, at_or_before: datetime, zone: ZoneInfo) -> datetime | None:
        if self.kind == "at":
            at = self.at.replace(tzinfo=zone).astimezone(UTC) if self.at else None
            return at if at is not None and at <= at_or_before else None
        if self.kind == "rate":
            return None
        start = at_or_before.astimezone(zone).date()
        for offset in range(_SEARCH_DAYS):
            day = start - timedelta(days=offset)
            if self._day(day):
                for candidate in self._times(day, zone, reverse=True):
                    if candidate <= at_or_before:
                        return candidate
        return None


def _minute(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(second=0, microsecond=0)


def parse_schedule_expression(expression: str) -> ScheduleExpression:
    """Parse what EventBridge Scheduler accepts (cron without ``L``, ``W``, ``#``); ValueError says what is wrong."""
    text = expression.strip()
    match = re.fullmatch(r"(cron|rate|at)\((.*)\)", text)
    if match is None:
        raise ValueError(f"schedule {expression!r}: write cron(...), rate(...) or at(yyyy-mm-ddThh:mm:ss)")
    kind, inner = match[1], match[2].strip()
    if kind == "rate":
        value, _, unit = inner.partition(" ")
        if not value.isdigit() or int(value) < 1 or unit.strip() not in _RATE_UNITS:
            raise ValueError(f"schedule {expression!r}: rate takes '<n> minute(s)|hour(s)|day(s)'")
        return ScheduleExpression("rate", every_seconds=int(value) * _RATE_UNITS[unit.strip()])
    if kind == "at":
        try:
            return ScheduleExpression("at", at=datetime.strptime(inner, "%Y-%m-%dT%H:%M:%S"))
        except ValueError:
            raise ValueError(f"schedule {expression!r}: at takes yyyy-mm-ddThh:mm:ss") from None
    parts = inner.split()
    if len(parts) != 6:
        raise ValueError(
            f"schedule {expression!r}: cron takes six fields (minutes hours day-of-month month day-of-week year), "
            f"got {len(parts)}"
        )
    if (parts[2] == "?") == (parts[4] == "?"):
        raise ValueError(f"schedule {expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    fields = tuple(_cron_field(part, spec, expression) for part, spec in zip(parts, _CRON_FIELDS, strict=True))
    return ScheduleExpression("cron", fields=fields)


def _cron_field(text: str, spec: tuple[str, int, int, Mapping[str, int]], expression: str) -> frozenset[int] | None:
    name, lo, hi, names = spec

    def fail(why: str) -> ValueError:
        return ValueError(f"schedule {expression!r}: {name} field {text!r}: {why}")

    if text == "?":
        if name not in ("day-of-month", "day-of-week"):
            raise fail("'?' is only allowed in day-of-month or day-of-week")
        return None
    if text == "*":
        return None

    def value(token: str) -> int:
        number = names.get(token.upper()) if names else None
        if number is None:
            if re.search(r"[LW#]", token.upper()):
                raise fail("L, W and # are not supported here (they are in AWS, but stepfold cannot evaluate them)")
            if not token.isdigit():
                raise fail(f"{token!r} is not a number{' or name' if names else ''}")
            number = int(token)
        if not lo <= number <= hi:
            raise fail(f"{number} is outside {lo}-{hi}")
        return number

    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        if slash and (not step_text.isdigit() or int(step_text) < 1):
            raise fail("a step must be a positive number")
        step = int(step_text) if slash else 1
        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = value(first), value(last)
            if start > end:
                raise fail(f"range {base} runs backwards")
        else:
            start = value(base)
            end = hi if slash else start
        values.update(range(start, end + 1, step))
    return frozenset(values)
