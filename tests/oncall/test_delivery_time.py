"""Quiet hours: 四级 waits for the next working morning (holidays and 调休 from chinese_calendar);
一级/二级 always go out at once."""

from __future__ import annotations

from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import chinese_calendar
import pytest

from ledgerguard.models import Level
from ledgerguard.oncall import delivery_time, is_quiet, parse_roster

from .conftest import roster_data

SH = ZoneInfo("Asia/Shanghai")
FRIDAY_NIGHT = datetime(2026, 10, 9, 23, 0, tzinfo=SH)
MAKEUP_SATURDAY = date(2026, 10, 10)   # 调休: the Saturday after the National Day week is a working day


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SH)


def test_the_calendar_facts_these_tests_rely_on():
    assert FRIDAY_NIGHT.weekday() == 4 and chinese_calendar.is_workday(FRIDAY_NIGHT.date())
    assert MAKEUP_SATURDAY.weekday() == 5 and chinese_calendar.is_workday(MAKEUP_SATURDAY)
    national_day = [date(2026, 10, d) for d in range(1, 8)]
    assert all(chinese_calendar.is_holiday(d) for d in national_day)
    assert date(2026, 10, 1).weekday() == 3                    # a Thursday, yet a holiday
    assert chinese_calendar.is_workday(date(2026, 10, 8))
    assert not chinese_calendar.is_workday(date(2026, 10, 17))  # an ordinary Saturday


def test_a_level_four_at_23_on_friday_waits_for_the_makeup_saturday_morning(roster):
    sent = delivery_time(roster=roster, level=4, at=FRIDAY_NIGHT, tz=SH)
    assert sent == at("2026-10-10 08:00") and sent.tzinfo == SH
    assert delivery_time(roster=roster, level=Level.FOUR, at=FRIDAY_NIGHT, tz=SH) == at("2026-10-10 08:00")


@pytest.mark.parametrize("level", [1, 2, Level.ONE, Level.TWO])
def test_level_one_and_two_at_the_same_moment_go_out_at_once(roster, level):
    assert delivery_time(roster=roster, level=level, at=FRIDAY_NIGHT, tz=SH) == FRIDAY_NIGHT


def test_a_level_not_listed_as_waiting_goes_out_at_once(roster):
    assert delivery_time(roster=roster, level=3, at=FRIDAY_NIGHT, tz=SH) == FRIDAY_NIGHT


def test_a_national_day_holiday_waits_for_the_first_working_morning_after_it(roster):
    # 10:00 on Thursday 2026-10-01 is outside the nightly window but on a public holiday.
    assert is_quiet(roster=roster, at=at("2026-10-01 10:00"))
    assert delivery_time(roster=roster, level=4, at=at("2026-10-01 10:00"), tz=SH) == at("2026-10-08 08:00")
    assert delivery_time(roster=roster, level=4, at=at("2026-10-07 22:00"), tz=SH) == at("2026-10-08 08:00")
    assert delivery_time(roster=roster, level=1, at=at("2026-10-01 10:00"), tz=SH) == at("2026-10-01 10:00")


def test_daytime_on_a_makeup_saturday_is_working_time(roster):
    assert not is_quiet(roster=roster, at=at("2026-10-10 10:00"))
    assert delivery_time(roster=roster, level=4, at=at("2026-10-10 10:00"), tz=SH) == at("2026-10-10 10:00")
    # …and its early morning is still inside the nightly window.
    assert delivery_time(roster=roster, level=4, at=at("2026-10-10 07:30"), tz=SH) == at("2026-10-10 08:00")


def test_an_ordinary_weekend_waits_for_monday_morning(roster):
    assert delivery_time(roster=roster, level=4, at=at("2026-10-17 10:00"), tz=SH) == at("2026-10-19 08:00")
    assert delivery_time(roster=roster, level=4, at=at("2026-10-16 21:00"), tz=SH) == at("2026-10-19 08:00")


def test_the_window_edges_on_a_working_day(roster):
    assert delivery_time(roster=roster, level=4, at=at("2026-10-12 20:59"), tz=SH) == at("2026-10-12 20:59")
    assert delivery_time(roster=roster, level=4, at=at("2026-10-12 21:00"), tz=SH) == at("2026-10-13 08:00")
    assert delivery_time(roster=roster, level=4, at=at("2026-10-13 07:59"), tz=SH) == at("2026-10-13 08:00")
    assert delivery_time(roster=roster, level=4, at=at("2026-10-13 08:00"), tz=SH) == at("2026-10-13 08:00")


def test_moments_in_utc_are_judged_and_returned_in_the_given_zone(roster):
    friday_night_utc = datetime(2026, 10, 9, 15, 0, tzinfo=timezone.utc)   # 23:00 Shanghai
    sent = delivery_time(roster=roster, level=4, at=friday_night_utc, tz=SH)
    assert sent == at("2026-10-10 08:00") and sent.tzinfo == SH
    assert delivery_time(roster=roster, level=4, at=friday_night_utc, tz="Asia/Shanghai") == sent
    # Without tz the roster's own time zone is used.
    assert delivery_time(roster=roster, level=4, at=friday_night_utc) == sent


def test_the_roster_chooses_which_levels_wait_and_whether_weekends_are_quiet(contacts):
    roster = parse_roster(roster_data(quiet_hours={"hours": "22:00-07:30", "levels": [3, 4],
                                                   "non_working_days": False}),
                          source="roster.yaml", contacts=contacts)
    assert delivery_time(roster=roster, level=3, at=FRIDAY_NIGHT, tz=SH) == at("2026-10-10 07:30")
    assert delivery_time(roster=roster, level=4, at=at("2026-10-17 10:00"), tz=SH) == at("2026-10-17 10:00")
    assert delivery_time(roster=roster, level=4, at=at("2026-10-17 23:00"), tz=SH) == at("2026-10-18 07:30")
    nobody_waits = parse_roster(roster_data(quiet_hours={"levels": []}), source="roster.yaml", contacts=contacts)
    assert delivery_time(roster=nobody_waits, level=4, at=FRIDAY_NIGHT, tz=SH) == FRIDAY_NIGHT
