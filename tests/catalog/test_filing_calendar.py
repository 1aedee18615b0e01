from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from ledgerguard.calendar import SHANGHAI, CalendarError, FilingCalendar, working_days_between
from ledgerguard.config import PROJECT_ROOT

CAL = PROJECT_ROOT / "catalog" / "filing-calendar.yaml"
SHARED = PROJECT_ROOT.parent / "shared" / "domain" / "filing-calendar.yaml"


@pytest.fixture(scope="module")
def cal() -> FilingCalendar:
    return FilingCalendar.load(CAL)


def sh(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_copy_matches_shared_domain_calendar(cal):
    if not SHARED.exists():
        pytest.skip("shared domain folder not present")
    shared = FilingCalendar.load(SHARED)
    assert shared.monthly == cal.monthly and shared.annual == cal.annual


def test_next_monthly_deadline_is_end_of_day_shanghai(cal):
    deadline = cal.next_monthly_deadline(sh(2026, 10, 26, 13, 40))
    assert deadline == sh(2026, 10, 26, 23, 59, 59)
    assert deadline.tzinfo is not None and deadline.utcoffset() == timedelta(hours=8)


def test_next_monthly_deadline_after_day_end_moves_on(cal):
    assert cal.next_monthly_deadline(sh(2026, 10, 27, 0, 0)) == sh(2026, 11, 16, 23, 59, 59)
    # year boundary inside the file
    assert cal.next_monthly_deadline(sh(2025, 12, 20)) == sh(2026, 1, 20, 23, 59, 59)


def test_next_monthly_deadline_accepts_utc_and_naive(cal):
    # 2026-10-26 16:00 UTC is 10-27 00:00 in Shanghai: October's deadline has passed
    utc = datetime(2026, 10, 26, 16, 0, tzinfo=timezone.utc)
    assert cal.next_monthly_deadline(utc) == sh(2026, 11, 16, 23, 59, 59)
    assert cal.next_monthly_deadline(datetime(2026, 10, 26, 12)) == sh(2026, 10, 26, 23, 59, 59)


def test_beyond_the_file_raises_clear_error(cal):
    with pytest.raises(CalendarError, match=r"covers 2025–2026.*filing-calendar.yaml"):
        cal.next_monthly_deadline(sh(2026, 12, 16))


def test_annual_deadlines(cal):
    assert cal.annual_deadline("business_annual_report", 2026) == sh(2026, 6, 30, 23, 59, 59)
    assert cal.annual_deadline("eit_annual_reconciliation", 2027) == sh(2027, 5, 31, 23, 59, 59)
    assert cal.next_annual_deadline("business_annual_report", sh(2026, 7, 1)) == sh(2027, 6, 30, 23, 59, 59)
    with pytest.raises(CalendarError, match="unknown annual deadline 'nope'"):
        cal.annual_deadline("nope", 2026)


def test_month_end():
    assert FilingCalendar.month_end(sh(2026, 6, 29, 17)) == sh(2026, 6, 30, 23, 59, 59)
    assert FilingCalendar.month_end(sh(2028, 2, 3)) == sh(2028, 2, 29, 23, 59, 59)


def test_working_days_across_national_day_2026_with_make_up_saturday():
    # 10-01..10-07 holiday; 10-10 (Saturday) is a 调休 working day; 10-11 Sunday off.
    # After 09-30: 10-08 Thu, 10-09 Fri, 10-10 Sat (make-up), 10-12 Mon = 4
    assert working_days_between(sh(2026, 9, 30, 9), sh(2026, 10, 12, 9)) == 4
    # Without holiday knowledge a naive Mon–Fri count would give 8
    naive = sum(1 for i in range(1, 13) if (date(2026, 9, 30) + timedelta(days=i)).weekday() < 5)
    assert naive == 8


def test_working_days_make_up_sunday_before_national_day():
    # 2026-09-20 is a Sunday worked in exchange for the holiday
    assert working_days_between(sh(2026, 9, 19, 12), sh(2026, 9, 20, 12)) == 1
    assert working_days_between(sh(2026, 9, 26, 12), sh(2026, 9, 27, 12)) == 0  # a normal Sunday


def test_working_days_scenario_e_and_edges():
    assert working_days_between(sh(2026, 6, 25, 9), sh(2026, 6, 30, 23, 59)) == 3
    assert working_days_between(sh(2026, 6, 30), sh(2026, 6, 25)) == 0
    assert working_days_between(sh(2026, 6, 30, 8), sh(2026, 6, 30, 20)) == 0


def test_working_days_unknown_year_raises_calendar_error():
    with pytest.raises(CalendarError, match="no holiday data for 2099"):
        working_days_between(sh(2099, 1, 1), sh(2099, 1, 10))


def test_bad_calendar_data_is_reported():
    with pytest.raises(CalendarError) as info:
        FilingCalendar.from_data(
            {"monthly_deadlines": {2026: ["2026-02-24", "2026-01-20", "2027-01-01", "soon"]},
             "annual_deadlines": {"x": "13-40"}, "extra": 1},
            source="cal.yaml",
        )
    text = str(info.value)
    for part in ("extra: unknown field", "monthly_deadlines.2026.2", "monthly_deadlines.2026.3",
                 "strictly increasing", "annual_deadlines.x"):
        assert part in text
