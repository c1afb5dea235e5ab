"""Schedule expressions as EventBridge reads them (core/kernel/trigger_types.py), checked against AWS's own words.

The examples are those of the EventBridge user guide ("Cron expressions reference": its table of examples and its
wildcards ``L``, ``W``, ``#``) and of the EventBridge Scheduler user guide (``6L`` with a year range; daylight
saving time: "When the time shifts forward in the Spring, your schedule invocation gets skipped if the cron
expression falls on a non-existent date and time. When the time shifts back in the Fall, your schedule runs only
once and doesn't repeat its invocation"). The expected times are worked out by hand from a calendar.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.kernel.trigger_types import Schedule, parse_schedule_expression


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def upcoming(expression: str, after: datetime, count: int, timezone: str = "UTC") -> list[datetime | None]:
    """The next ``count`` fire times after ``after`` (None once there are no more)."""
    schedule = Schedule(expression, name="s", timezone=timezone)
    found: list[datetime | None] = []
    when: datetime | None = after
    for _ in range(count):
        when = schedule.next_fire(when) if when is not None else None
        found.append(when)
    return found


# --- the EventBridge user guide's table of examples ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        pytest.param(  # "Run at 10:00 am (UTC+0) every day"
            "cron(0 10 * * ? *)", utc(2025, 1, 1, 10), [utc(2025, 1, 2, 10), utc(2025, 1, 3, 10)], id="daily-10am"
        ),
        pytest.param(  # "Run at 12:15 pm (UTC+0) every day"
            "cron(15 12 * * ? *)", utc(2025, 1, 1), [utc(2025, 1, 1, 12, 15), utc(2025, 1, 2, 12, 15)], id="daily-1215"
        ),
        pytest.param(  # "Run at 6:00 pm (UTC+0) every Monday through Friday": Friday 3 January, then Monday
            "cron(0 18 ? * MON-FRI *)",
            utc(2025, 1, 3, 18),
            [utc(2025, 1, 6, 18), utc(2025, 1, 7, 18)],
            id="weekdays-6pm",
        ),
        pytest.param(  # "Run at 8:00 am (UTC+0) every first day of the month"
            "cron(0 8 1 * ? *)", utc(2025, 1, 1, 8), [utc(2025, 2, 1, 8), utc(2025, 3, 1, 8)], id="first-of-month"
        ),
        pytest.param(  # "Run every 15 minutes"
            "cron(0/15 * * * ? *)",
            utc(2025, 1, 1, 10, 7),
            [utc(2025, 1, 1, 10, 15), utc(2025, 1, 1, 10, 30), utc(2025, 1, 1, 10, 45), utc(2025, 1, 1, 11)],
            id="every-15-minutes",
        ),
        pytest.param(  # "Run every 10 minutes Monday through Friday": Friday night, then Monday from midnight
            "cron(0/10 * ? * MON-FRI *)",
            utc(2025, 1, 3, 23, 45),
            [utc(2025, 1, 3, 23, 50), utc(2025, 1, 6, 0, 0), utc(2025, 1, 6, 0, 10)],
            id="weekdays-every-10-minutes",
        ),
        pytest.param(  # "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC+0)"
            "cron(0/5 8-17 ? * MON-FRI *)",
            utc(2025, 1, 6, 17, 50),
            [utc(2025, 1, 6, 17, 55), utc(2025, 1, 7, 8, 0)],
            id="weekday-office-hours",
        ),
        pytest.param(  # "Run every 30 minutes Monday through Friday between 10:00 pm on the starting day to 2:00 am
            # on the following day (UTC). Run from 12:00 am to 2:00 am on Monday morning (UTC)." The hours wrap
            # (20-2 is 20, 21, 22, 23, 0, 1, 2), each weekday on its own: Saturday's early hours do not fire,
            # Monday's do (and, minute 0/30 of hour 2 being 2:30 too, 2:30 is the last one).
            "cron(0/30 20-2 ? * MON-FRI *)",
            utc(2025, 1, 3, 23),  # a Friday
            [
                utc(2025, 1, 3, 23, 30),
                utc(2025, 1, 6, 0, 0),
                utc(2025, 1, 6, 0, 30),
                utc(2025, 1, 6, 1, 0),
                utc(2025, 1, 6, 1, 30),
                utc(2025, 1, 6, 2, 0),
                utc(2025, 1, 6, 2, 30),
                utc(2025, 1, 6, 20, 0),
            ],
            id="wrapping-hours",
        ),
    ],
)
def test_the_user_guides_examples_fire_when_it_says(
    expression: str, after: datetime, expected: list[datetime | None]
) -> None:
    assert upcoming(expression, after, len(expected)) == expected
    schedule = Schedule(expression, name="s")
    assert all(schedule.fires_at(when) for when in expected if when is not None)
    assert schedule.previous_fire(expected[-1] or after) == expected[-1]


# --- the wildcards: L, W, # -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        pytest.param(  # "L ... in the Day-of-month field specifies the last day of the month": leap years too
            "cron(0 23 L * ? *)",
            utc(2024, 1, 31, 23),
            [utc(2024, 2, 29, 23), utc(2024, 3, 31, 23), utc(2024, 4, 30, 23)],
            id="L-last-day-of-month",
        ),
        pytest.param(  # "L ... in the Day-of-week field specifies the last day of the week": Saturday
            "cron(0 12 ? * L *)", utc(2025, 1, 1), [utc(2025, 1, 4, 12), utc(2025, 1, 11, 12)], id="L-saturday"
        ),
        pytest.param(  # the Scheduler guide: "Run at 10:15 am on the last Friday of every month during 2019-2022"
            "cron(15 10 ? * 6L 2019-2022)",
            utc(2022, 11, 1),
            [utc(2022, 11, 25, 10, 15), utc(2022, 12, 30, 10, 15), None],
            id="6L-last-friday-until-2022",
        ),
        pytest.param(  # the same by name
            "cron(15 10 ? * FRIL *)", utc(2025, 2, 1), [utc(2025, 2, 28, 10, 15)], id="FRIL-last-friday"
        ),
        pytest.param(  # "3W specifies the weekday closest to the third day of the month": Friday the 3rd itself;
            # Saturday 3 May -> Friday the 2nd; Sunday 3 August -> Monday the 4th
            "cron(0 9 3W * ? *)",
            utc(2025, 4, 30),
            [utc(2025, 5, 2, 9), utc(2025, 6, 3, 9), utc(2025, 7, 3, 9), utc(2025, 8, 4, 9)],
            id="3W-nearest-weekday",
        ),
        pytest.param(  # W never leaves the month: Saturday 1 November 2025 -> Monday the 3rd, not Friday 31 October
            "cron(0 9 1W * ? *)", utc(2025, 10, 2), [utc(2025, 11, 3, 9)], id="1W-on-a-saturday"
        ),
        pytest.param(  # ... and Sunday 31 August 2025 -> Friday the 29th; 30-day months have no 31st: no fire
            "cron(0 9 31W * ? *)",
            utc(2025, 8, 1),
            [utc(2025, 8, 29, 9), utc(2025, 10, 31, 9), utc(2025, 12, 31, 9)],
            id="31W-on-a-sunday",
        ),
        pytest.param(  # LW: the last weekday of the month (31 May 2025 is a Saturday, 31 August a Sunday)
            "cron(0 9 LW * ? *)",
            utc(2025, 5, 1),
            [utc(2025, 5, 30, 9), utc(2025, 6, 30, 9), utc(2025, 7, 31, 9), utc(2025, 8, 29, 9)],
            id="LW-last-weekday",
        ),
        pytest.param(  # "3#2 is the second Tuesday of the month"
            "cron(0 9 ? * 3#2 *)",
            utc(2025, 1, 1),
            [utc(2025, 1, 14, 9), utc(2025, 2, 11, 9), utc(2025, 3, 11, 9)],
            id="3#2-second-tuesday",
        ),
        pytest.param(  # the first Monday of each month
            "cron(0 9 ? * 2#1 *)", utc(2025, 1, 7), [utc(2025, 2, 3, 9), utc(2025, 3, 3, 9)], id="2#1-first-monday"
        ),
        pytest.param(  # a fifth Friday: January and May 2025 have one, February to April do not
            "cron(0 9 ? * FRI#5 *)", utc(2025, 1, 1), [utc(2025, 1, 31, 9), utc(2025, 5, 30, 9)], id="FRI#5"
        ),
        pytest.param(  # a wrapping range of days: Friday, Saturday, Sunday, Monday
            "cron(0 1 ? * FRI-MON *)",
            utc(2025, 1, 7),
            [utc(2025, 1, 10, 1), utc(2025, 1, 11, 1), utc(2025, 1, 12, 1), utc(2025, 1, 13, 1), utc(2025, 1, 17, 1)],
            id="FRI-MON",
        ),
        pytest.param(  # 29 February: the next leap year
            "cron(0 9 29 2 ? *)", utc(2025, 3, 1), [utc(2028, 2, 29, 9)], id="leap-day"
        ),
        pytest.param(  # a year far ahead is still found (no search horizon), and nothing after it
            "cron(0 0 1 1 ? 2199)", utc(2025, 1, 1), [utc(2199, 1, 1), None], id="the-last-year"
        ),
        pytest.param(  # names and lists, any case
            "cron(0 12 1 jan,Jul ? *)", utc(2025, 2, 1), [utc(2025, 7, 1, 12), utc(2026, 1, 1, 12)], id="names"
        ),
    ],
)
def test_the_wildcards_fire_when_aws_says(expression: str, after: datetime, expected: list[datetime | None]) -> None:
    assert upcoming(expression, after, len(expected)) == expected
    schedule = Schedule(expression, name="s")
    fired = [when for when in expected if when is not None]
    assert all(schedule.fires_at(when) for when in fired)
    assert schedule.previous_fire(fired[-1]) == fired[-1]


def test_previous_fire_walks_back_over_months_without_one() -> None:
    fifth_friday = Schedule("cron(0 9 ? * 6#5 *)", name="s")
    assert fifth_friday.previous_fire(utc(2025, 5, 30, 8, 59)) == utc(2025, 1, 31, 9)
    assert not fifth_friday.fires_at(utc(2025, 2, 28, 9))  # the last Friday of February, but its fourth
    last_friday = Schedule("cron(15 10 ? * 6L 2019-2022)", name="s")
    assert last_friday.previous_fire(utc(2030, 1, 1)) == utc(2022, 12, 30, 10, 15)
    assert last_friday.previous_fire(utc(2019, 1, 25, 10, 14)) is None


# --- time zones and daylight saving time ----------------------------------------------------------------------------
# Europe/Berlin, 2025: clocks go from 02:00 to 03:00 on 30 March (CET +1 -> CEST +2) and from 03:00 back to 02:00
# on 26 October.


def test_a_local_time_the_clocks_skip_does_not_fire() -> None:
    assert upcoming("cron(30 2 * * ? *)", utc(2025, 3, 28), 3, "Europe/Berlin") == [
        utc(2025, 3, 28, 1, 30),  # 02:30 CET
        utc(2025, 3, 29, 1, 30),
        utc(2025, 3, 31, 0, 30),  # 02:30 CEST: there was no 02:30 on the 30th
    ]
    half_hourly = Schedule("cron(0/30 * * * ? *)", name="s", timezone="Europe/Berlin")
    assert half_hourly.next_fire(utc(2025, 3, 30, 0, 45)) == utc(2025, 3, 30, 1, 0)  # 01:45 CET -> 03:00 CEST


def test_a_local_time_the_clocks_repeat_fires_once_the_first_time() -> None:
    assert upcoming("cron(30 2 * * ? *)", utc(2025, 10, 25, 12), 2, "Europe/Berlin") == [
        utc(2025, 10, 26, 0, 30),  # 02:30 CEST, the first 02:30
        utc(2025, 10, 27, 1, 30),  # 02:30 CET the next day: the second 02:30 of the 26th (01:30 UTC) did not fire
    ]
    daily = Schedule("cron(30 2 * * ? *)", name="s", timezone="Europe/Berlin")
    assert daily.fires_at(utc(2025, 10, 26, 0, 30))
    assert not daily.fires_at(utc(2025, 10, 26, 1, 30))
    assert daily.previous_fire(utc(2025, 10, 26, 1, 45)) == utc(2025, 10, 26, 0, 30)
    half_hourly = Schedule("cron(0/30 * * * ? *)", name="s", timezone="Europe/Berlin")
    # 02:30 CEST, then the repeated 02:00 and 02:30 (CET) are passed over: 03:00 CET
    assert half_hourly.next_fire(utc(2025, 10, 26, 0, 30)) == utc(2025, 10, 26, 2, 0)


def test_the_same_expression_fires_at_the_same_local_time_all_year() -> None:
    weekdays = Schedule("cron(0 9 ? * MON-FRI *)", name="s", timezone="America/New_York")
    assert weekdays.next_fire(utc(2025, 1, 6)) == utc(2025, 1, 6, 14)  # EST, UTC-5
    assert weekdays.next_fire(utc(2025, 7, 7)) == utc(2025, 7, 7, 13)  # EDT, UTC-4
    last_friday = Schedule("cron(0 17 ? * 6L *)", name="s", timezone="Asia/Tokyo")
    assert last_friday.next_fire(utc(2025, 1, 1)) == utc(2025, 1, 31, 8)  # Friday 17:00 in Tokyo is 08:00 UTC


# --- rate(...) -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(12 hours)", 43_200),
        ("rate(1 day)", 86_400),
        ("rate(7 days)", 604_800),
    ],
)
def test_a_rate_is_a_number_of_minutes_hours_or_days(expression: str, seconds: int) -> None:
    assert parse_schedule_expression(expression).every_seconds == seconds


# --- what EventBridge refuses is refused at declaration, saying what is wrong ---------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("rate(1 minutes)", "EventBridge wants 1 minute or N minutes"),
        ("rate(5 hour)", "EventBridge wants 1 hour or 5 hours"),
        ("rate(2 weeks)", "rate takes"),
        ("cron(0 9 L-2 * ? *)", "L and W stand alone here"),
        ("cron(0 9 1,L * ? *)", "L and W stand alone here"),
        ("cron(0 9 1-5W * ? *)", "L and W stand alone here"),
        ("cron(0 9 32W * ? *)", "day-of-month field '32W': 32 is outside 1-31"),
        ("cron(0 9 3#2 * ? *)", "'#' belongs in day-of-week"),
        ("cron(0 9 ? * 3#1,6#3 *)", "'#' takes one day and a week of the month"),
        ("cron(0 9 ? * 3#6 *)", "#6: a month has weeks 1-5"),
        ("cron(0 9 ? * 0#1 *)", "0 is outside 1-7"),
        ("cron(0 9 ? * 8L *)", "8 is outside 1-7"),
        ("cron(0 9 ? * MON/2 *)", "day-of-week takes no '/'"),
        ("cron(0 9 ? * 2W *)", "L, W and # are only for day-of-month and day-of-week"),
        ("cron(0 L * * ? *)", "hours field 'L': L, W and # are only for day-of-month and day-of-week"),
        ("cron(0 9 ? * MON-FRI 2027-2026)", "year field '2027-2026': range 2027-2026 runs backwards"),
        ("cron(0 9 ? JUL-FOO * *)", "'FOO' is not a number or name"),
    ],
)
def test_what_eventbridge_refuses_is_refused_saying_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_schedule_expression(expression)
