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
#
# EventBridge's cron (docs: "Cron expressions reference" and EventBridge Scheduler's "Schedule types"), evaluated
# here for `stepfold schedules`, `stepfold trigger-schedule` and the local stack; in AWS, EventBridge Scheduler
# evaluates it. Hand-written on purpose: no library on PyPI evaluates this dialect in a time zone. cronsim and
# croniter read Unix cron (five fields, Sunday 0, no year; cronsim has no 15W or wrap-around ranges, croniter no LW
# or 6L); aws-croniter and pyawscron read this dialect in UTC only, aws-croniter fails on LW and pyawscron on AWS's
# own 20-2 example. And this module is imported by every Lambda at cold start (the agents declare schedules),
# where such a library would add 3-60 ms; evaluation runs only in the CLI and the local stack.

_MONTHS = dict(
    zip(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), range(1, 13), strict=True)
)
_DAYS = dict(zip(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), range(1, 8), strict=True))
_RATE_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class _Field:
    """One field of a cron expression: its range, its names, and whether a range may wrap (``20-2``, ``FRI-MON``)."""

    name: str
    lo: int
    hi: int
    names: Mapping[str, int]
    wraps: bool = True
    steps: bool = True


_MINUTES = _Field("minutes", 0, 59, {})
_HOURS = _Field("hours", 0, 23, {})
_DAY_OF_MONTH = _Field("day-of-month", 1, 31, {})
_MONTH = _Field("month", 1, 12, _MONTHS)
_DAY_OF_WEEK = _Field("day-of-week", 1, 7, _DAYS, steps=False)
_YEAR = _Field("year", 1970, 2199, {}, wraps=False)

_DayRule = Literal["every", "days", "weekdays", "last", "last_weekday", "nearest_weekday", "last_of", "nth"]


@dataclass(frozen=True)
class _MonthDays:
    """The days of a month that the day field in use picks (the other day field is ``?``).

    ``days``: days of the month (``1,15``, ``1-5``); ``weekdays``: days of the week, 1 = SUN ... 7 = SAT (``MON-FRI``,
    and a bare ``L`` in day-of-week, the last day of the week: SAT); ``last``: ``L``; ``last_weekday``: ``LW``;
    ``nearest_weekday``: ``15W``, the Monday to Friday nearest the 15th, never in another month; ``last_of``:
    ``6L``, the month's last Friday; ``nth``: ``3#2``, its second Tuesday (none in a month without one).
    """

    rule: _DayRule = "every"
    values: frozenset[int] = frozenset()
    day: int = 0
    """``nearest_weekday``: the day of the month; ``last_of`` and ``nth``: the day of the week (1 = SUN)."""
    nth: int = 0

    def of(self, year: int, month: int) -> list[int]:
        """The days, ascending."""
        last = _last_day(year, month)
        if self.rule == "every":
            return list(range(1, last + 1))
        if self.rule == "days":
            return [d for d in sorted(self.values) if d <= last]
        if self.rule == "weekdays":
            first = _weekday(date(year, month, 1))
            return [d for d in range(1, last + 1) if (first + d - 2) % 7 + 1 in self.values]
        if self.rule == "last":
            return [last]
        if self.rule == "last_weekday":
            return [_nearest_weekday(year, month, last, last)]
        if self.rule == "nearest_weekday":
            return [_nearest_weekday(year, month, self.day, last)] if self.day <= last else []
        if self.rule == "last_of":
            return [last - (_weekday(date(year, month, last)) - self.day) % 7]
        first = 1 + (self.day - _weekday(date(year, month, 1))) % 7  # nth
        day = first + 7 * (self.nth - 1)
        return [day] if day <= last else []


def _last_day(year: int, month: int) -> int:
    return (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day


def _weekday(day: date) -> int:
    """EventBridge's day of the week: 1 = SUN, 2 = MON ... 7 = SAT."""
    return day.isoweekday() % 7 + 1


def _nearest_weekday(year: int, month: int, day: int, last: int) -> int:
    """``dayW``: the day itself on Monday to Friday; Saturday the Friday before, Sunday the Monday after, unless
    that leaves the month (the 1st on a Saturday is Monday the 3rd, the last on a Sunday is the Friday before)."""
    weekday = date(year, month, day).isoweekday()
    if weekday == 6:
        return day - 1 if day > 1 else day + 2
    if weekday == 7:
        return day + 1 if day < last else day - 2
    return day


@dataclass(frozen=True)
class ScheduleExpression:
    """A parsed ``cron(...)``, ``rate(...)`` or ``at(...)``.

    A cron expression is evaluated in the schedule's time zone as EventBridge Scheduler does it across daylight
    saving time: a local time the clocks skip (spring) does not fire, a local time they repeat (autumn) fires once,
    the first time.
    """

    kind: Literal["cron", "rate", "at"]
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: _MonthDays = _MonthDays()
    months: frozenset[int] = frozenset()
    years: frozenset[int] = frozenset()
    every_seconds: int = 0
    at: datetime | None = None

    def _dates(self, start: date, *, reverse: bool) -> Iterator[date]:
        """The days it fires on, from ``start`` (included) onwards, or backwards from it."""
        for year in sorted(self.years, reverse=reverse):
            if not _onwards((year,), (start.year,), reverse=reverse):
                continue
            for month in sorted(self.months, reverse=reverse):
                if not _onwards((year, month), (start.year, start.month), reverse=reverse):
                    continue
                days = self.days.of(year, month)
                for day in reversed(days) if reverse else days:
                    if _onwards((year, month, day), (start.year, start.month, start.day), reverse=reverse):
                        yield date(year, month, day)

    def _times(self, day: date, zone: ZoneInfo, *, reverse: bool) -> Iterator[datetime]:
        """Its fire times on local ``day``, in UTC: a time the clocks skip is left out, a repeated one is the first."""
        for hour in sorted(self.hours, reverse=reverse):
            for minute in sorted(self.minutes, reverse=reverse):
                local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)  # fold=0: the first one
                utc = local.astimezone(UTC)
                if utc.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
                    yield utc

    def fires_at(self, when: datetime, zone: ZoneInfo) -> bool:
        if self.kind == "at":
            return self.at is not None and _minute(when) == _minute(self.at.replace(tzinfo=zone))
        if self.kind == "rate":
            return True
        local = when.astimezone(zone)
        if local.fold and local.replace(fold=0).utcoffset() != local.utcoffset():
            return False  # the second pass of a repeated hour: EventBridge fires once, the first time
        return (
            local.year in self.years
            and local.month in self.months
            and local.hour in self.hours
            and local.minute in self.minutes
            and local.day in self.days.of(local.year, local.month)
        )

    def next_fire(self, after: datetime, zone: ZoneInfo) -> datetime | None:
        if self.kind == "at":
            at = self.at.replace(tzinfo=zone).astimezone(UTC) if self.at else None
            return at if at is not None and at > after else None
        if self.kind == "rate":
            return None
        for day in self._dates(after.astimezone(zone).date(), reverse=False):
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
        for day in self._dates(at_or_before.astimezone(zone).date(), reverse=True):
            for candidate in self._times(day, zone, reverse=True):
                if candidate <= at_or_before:
                    return candidate
        return None


def _onwards(found: tuple[int, ...], start: tuple[int, ...], *, reverse: bool) -> bool:
    return found <= start if reverse else found >= start


def _minute(when: datetime) -> datetime:
    return when.astimezone(UTC).replace(second=0, microsecond=0)


def parse_schedule_expression(expression: str) -> ScheduleExpression:
    """Parse what EventBridge Scheduler accepts; ValueError says what is wrong.

    ``cron(minutes hours day-of-month month day-of-week year)``: ``, - * /`` in every field but day-of-week (no
    ``/``); ranges may wrap (``20-2``, ``FRI-MON``) except in the year; names JAN-DEC and SUN-SAT (SUN is 1);
    exactly one of the day fields is ``?``; day-of-month also ``L``, ``LW``, ``15W``; day-of-week also ``L``,
    ``6L``, ``3#2``, each alone in its field. ``rate(1 minute|hour|day)`` or ``rate(N minutes|hours|days)``.
    ``at(yyyy-mm-ddThh:mm:ss)``.
    """
    text = expression.strip()
    match = re.fullmatch(r"(cron|rate|at)\((.*)\)", text)
    if match is None:
        raise ValueError(f"schedule {expression!r}: write cron(...), rate(...) or at(yyyy-mm-ddThh:mm:ss)")
    kind, inner = match[1], match[2].strip()
    if kind == "rate":
        return _rate(inner, expression)
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
    minutes, hours, day_of_month, month, day_of_week, year = parts
    if (day_of_month == "?") == (day_of_week == "?"):
        raise ValueError(f"schedule {expression!r}: exactly one of day-of-month and day-of-week must be '?'")
    return ScheduleExpression(
        "cron",
        minutes=_cron_values(minutes, _MINUTES, expression),
        hours=_cron_values(hours, _HOURS, expression),
        days=_day_of_week(day_of_week, expression) if day_of_month == "?" else _day_of_month(day_of_month, expression),
        months=_cron_values(month, _MONTH, expression),
        years=_cron_values(year, _YEAR, expression),
    )


def _rate(inner: str, expression: str) -> ScheduleExpression:
    value, _, unit = inner.partition(" ")
    unit = unit.strip()
    if not value.isdigit() or int(value) < 1 or unit.removesuffix("s") not in _RATE_UNITS:
        raise ValueError(f"schedule {expression!r}: rate takes '<n> minute(s)|hour(s)|day(s)'")
    count, singular = int(value), unit.removesuffix("s")
    if (count == 1) != (unit == singular):
        raise ValueError(
            f"schedule {expression!r}: EventBridge wants 1 {singular} or {count if count > 1 else 'N'} {singular}s "
            f"(rate(1 {singular}), rate(5 {singular}s))"
        )
    return ScheduleExpression("rate", every_seconds=count * _RATE_UNITS[singular])


def _fail(spec: _Field, text: str, expression: str, why: str) -> ValueError:
    return ValueError(f"schedule {expression!r}: {spec.name} field {text!r}: {why}")


def _day_of_month(text: str, expression: str) -> _MonthDays:
    upper = text.upper()
    if upper == "L":
        return _MonthDays("last")
    if upper == "LW":
        return _MonthDays("last_weekday")
    nearest = re.fullmatch(r"(\d{1,2})W", upper)
    if nearest is not None:
        day = int(nearest[1])
        if not 1 <= day <= 31:
            raise _fail(_DAY_OF_MONTH, text, expression, f"{day} is outside 1-31")
        return _MonthDays("nearest_weekday", day=day)
    if "#" in text:
        raise _fail(_DAY_OF_MONTH, text, expression, "'#' belongs in day-of-week (3#2: the second Tuesday)")
    if re.search(r"[LW]", upper):
        raise _fail(
            _DAY_OF_MONTH,
            text,
            expression,
            "L and W stand alone here: L, LW or a day and W (15W), not in a list or range",
        )
    if text == "*":
        return _MonthDays("every")
    return _MonthDays("days", values=_cron_values(text, _DAY_OF_MONTH, expression))


def _day_of_week(text: str, expression: str) -> _MonthDays:
    upper = text.upper()
    if upper == "L":
        return _MonthDays("weekdays", values=frozenset({7}))  # the last day of the week: Saturday
    if "#" in text:
        nth = re.fullmatch(r"([0-9A-Z]+)#(\d)", upper)
        if nth is None or "," in text:
            raise _fail(_DAY_OF_WEEK, text, expression, "'#' takes one day and a week of the month, e.g. 3#2 or TUE#2")
        if not 1 <= int(nth[2]) <= 5:
            raise _fail(_DAY_OF_WEEK, text, expression, f"#{nth[2]}: a month has weeks 1-5")
        return _MonthDays("nth", day=_value(nth[1], _DAY_OF_WEEK, text, expression), nth=int(nth[2]))
    last_of = re.fullmatch(r"([0-9A-Z]+)L", upper)
    if last_of is not None:
        return _MonthDays("last_of", day=_value(last_of[1], _DAY_OF_WEEK, text, expression))
    if "/" in text:
        raise _fail(_DAY_OF_WEEK, text, expression, "day-of-week takes no '/' (EventBridge allows , - * ? L # there)")
    if text == "*":
        return _MonthDays("every")
    return _MonthDays("weekdays", values=_cron_values(text, _DAY_OF_WEEK, expression))


def _value(word: str, spec: _Field, text: str, expression: str) -> int:
    number = spec.names.get(word.upper())
    if number is None:
        if word == "?":
            raise _fail(spec, text, expression, "'?' is only allowed in day-of-month or day-of-week")
        if re.search(r"[LW#]", word.upper()):
            raise _fail(spec, text, expression, "L, W and # are only for day-of-month and day-of-week, each alone")
        if not word.isdigit():
            raise _fail(spec, text, expression, f"{word!r} is not a number{' or name' if spec.names else ''}")
        number = int(word)
    if not spec.lo <= number <= spec.hi:
        raise _fail(spec, text, expression, f"{number} is outside {spec.lo}-{spec.hi}")
    return number


def _cron_values(text: str, spec: _Field, expression: str) -> frozenset[int]:
    """``*``, a value, a range (wrapping past the end where the field allows: ``20-2``), ``/`` steps, lists."""
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        if slash and not spec.steps:
            raise _fail(spec, text, expression, f"{spec.name} takes no '/'")
        if slash and (not step_text.isdigit() or int(step_text) < 1):
            raise _fail(spec, text, expression, "a step must be a positive number")
        step = int(step_text) if slash else 1
        if base == "*":
            run = list(range(spec.lo, spec.hi + 1))
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, spec, text, expression), _value(last, spec, text, expression)
            if start > end and not spec.wraps:
                raise _fail(spec, text, expression, f"range {base} runs backwards")
            wrapped = [*range(start, spec.hi + 1), *range(spec.lo, end + 1)]  # 20-2: 20, 21, 22, 23, 0, 1, 2
            run = list(range(start, end + 1)) if start <= end else wrapped
        else:
            start = _value(base, spec, text, expression)
            run = list(range(start, spec.hi + 1)) if slash else [start]
        values.update(run[::step])
    return frozenset(values)
