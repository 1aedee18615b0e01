"""The filing calendar (申报期) as data, and working days that know Chinese holidays and 调休.

Deadlines are whole days in China; a deadline "ends" at 23:59:59 Asia/Shanghai on its day.
Naive datetimes passed in are taken as Asia/Shanghai local time.
"""

from __future__ import annotations

import calendar as _stdcal
import logging
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

__all__ = ["CalendarError", "FilingCalendar", "SHANGHAI", "end_of_day", "to_shanghai", "working_days_between"]

SHANGHAI = ZoneInfo("Asia/Shanghai")
_END_OF_DAY = time(23, 59, 59)
_MM_DD = re.compile(r"^(\d{2})-(\d{2})$")


class CalendarError(ValueError):
    """The calendar cannot answer: a year it does not cover, a bad file, an unknown deadline."""


def to_shanghai(moment: datetime) -> datetime:
    """``moment`` as an aware Asia/Shanghai datetime (naive input is taken as Shanghai local time)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=SHANGHAI)
    return moment.astimezone(SHANGHAI)


def end_of_day(day: date) -> datetime:
    """23:59:59 Asia/Shanghai on ``day``."""
    return datetime.combine(day, _END_OF_DAY, tzinfo=SHANGHAI)


def _is_workday(day: date) -> bool:
    import chinese_calendar

    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError as exc:
        raise CalendarError(
            f"chinese_calendar has no holiday data for {day.year} ({exc}); "
            "upgrade the chinese-calendar package once the State Council publishes that year's holidays"
        ) from exc


def working_days_known(year: int) -> bool:
    """Whether the installed holiday table covers ``year`` (deadline counts need it)."""
    try:
        _is_workday(date(year, 6, 1))
        return True
    except CalendarError:
        return False


def is_working_day(day: date) -> bool:
    """A working day in China (weekdays except public holidays, plus 调休 make-up days). For a
    year the installed package has no data for, Monday–Friday, with a warning: a notification or
    a sample must not fail for want of a holiday table (deadlines use the strict check)."""
    try:
        return _is_workday(day)
    except CalendarError as exc:
        logging.getLogger("ledgerguard.calendar").warning("%s; taking Monday–Friday as working days", exc)
        return day.weekday() < 5


def working_days_between(start: datetime, end: datetime) -> int:
    """Working days after ``start``'s day up to and including ``end``'s day (Shanghai dates).

    Holidays are skipped and 调休 make-up days (a working Saturday or Sunday) count, as
    ``chinese_calendar.is_workday`` knows them. 0 when ``end`` is not after ``start``.
    Raises :class:`CalendarError` for a year the installed chinese_calendar does not know.
    """
    first = to_shanghai(start).date()
    last = to_shanghai(end).date()
    count = 0
    day = first + timedelta(days=1)
    while day <= last:
        if _is_workday(day):
            count += 1
        day += timedelta(days=1)
    return count


@dataclass(frozen=True)
class FilingCalendar:
    """Monthly/quarterly filing deadlines per year and the annual deadlines (month-day)."""

    monthly: dict[int, tuple[date, ...]]
    annual: dict[str, tuple[int, int]]
    source: str = ""

    # ----------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: Path | str) -> "FilingCalendar":
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise CalendarError(f"{path}: cannot read the filing calendar: {exc}") from exc
        except yaml.YAMLError as exc:
            raise CalendarError(f"{path}: not valid YAML: {exc}") from exc
        return cls.from_data(raw, source=str(path))

    @classmethod
    def from_data(cls, raw: Any, *, source: str = "") -> "FilingCalendar":
        problems: list[str] = []
        if not isinstance(raw, dict):
            raise CalendarError(f"{source}: the filing calendar must be a mapping")
        unknown = set(raw) - {"monthly_deadlines", "annual_deadlines"}
        for key in sorted(map(str, unknown)):
            problems.append(f"{key}: unknown field")
        monthly: dict[int, tuple[date, ...]] = {}
        for year, days in (raw.get("monthly_deadlines") or {}).items():
            try:
                year_int = int(year)
            except (TypeError, ValueError):
                problems.append(f"monthly_deadlines.{year}: year must be a number")
                continue
            if not isinstance(days, list):
                problems.append(f"monthly_deadlines.{year}: must be a list of dates")
                continue
            parsed: list[date] = []
            for i, day in enumerate(days):
                if isinstance(day, str):
                    try:
                        day = date.fromisoformat(day)
                    except ValueError:
                        pass
                if not isinstance(day, date) or isinstance(day, datetime):
                    problems.append(f"monthly_deadlines.{year}.{i}: {day!r} is not a date (YYYY-MM-DD)")
                    continue
                if day.year != year_int:
                    problems.append(f"monthly_deadlines.{year}.{i}: {day} is not in {year_int}")
                parsed.append(day)
            if parsed != sorted(parsed) or len(set(parsed)) != len(parsed):
                problems.append(f"monthly_deadlines.{year}: dates must be strictly increasing")
            monthly[year_int] = tuple(parsed)
        if not monthly:
            problems.append("monthly_deadlines: at least one year of deadlines is required")
        annual: dict[str, tuple[int, int]] = {}
        for name, text in (raw.get("annual_deadlines") or {}).items():
            match = _MM_DD.match(str(text))
            if not match:
                problems.append(f"annual_deadlines.{name}: {text!r} is not MM-DD")
                continue
            month, day = int(match.group(1)), int(match.group(2))
            try:
                date(2024, month, day)  # a leap year accepts every real month-day
            except ValueError:
                problems.append(f"annual_deadlines.{name}: {text!r} is not a real day")
                continue
            annual[str(name)] = (month, day)
        if problems:
            raise CalendarError(
                f"{source or 'filing calendar'}: " + "; ".join(problems)
            )
        return cls(monthly=dict(sorted(monthly.items())), annual=annual, source=source)

    # ----------------------------------------------------------------- queries
    @property
    def years(self) -> list[int]:
        return sorted(self.monthly)

    def monthly_deadlines(self) -> list[datetime]:
        """Every monthly deadline, as the end of its day, in order."""
        return [end_of_day(d) for year in self.years for d in self.monthly[year]]

    def next_monthly_deadline(self, after: datetime) -> datetime:
        """The first monthly filing deadline whose day has not ended at ``after``.

        Returned as 23:59:59 Asia/Shanghai on the deadline day. Raises :class:`CalendarError`
        when ``after`` lies beyond the last year in the file.
        """
        moment = to_shanghai(after)
        for deadline in self.monthly_deadlines():
            if deadline > moment:
                return deadline
        years = self.years
        raise CalendarError(
            f"no monthly filing deadline after {moment.isoformat()}: the filing calendar covers "
            f"{years[0]}–{years[-1]}; add the next year's dates (published by the State Taxation "
            "Administration, usually in December) to filing-calendar.yaml"
        )

    def annual_deadline(self, name: str, year: int) -> datetime:
        """The annual deadline ``name`` (e.g. ``business_annual_report``) in ``year``, end of day."""
        try:
            month, day = self.annual[name]
        except KeyError:
            known = ", ".join(sorted(self.annual)) or "none"
            raise CalendarError(f"unknown annual deadline {name!r}; known: {known}") from None
        if month == 2 and day == 29 and not _stdcal.isleap(year):
            day = 28
        return end_of_day(date(year, month, day))

    def next_annual_deadline(self, name: str, after: datetime) -> datetime:
        """The first occurrence of annual deadline ``name`` whose day has not ended at ``after``."""
        moment = to_shanghai(after)
        deadline = self.annual_deadline(name, moment.year)
        if deadline <= moment:
            deadline = self.annual_deadline(name, moment.year + 1)
        return deadline

    @staticmethod
    def month_end(after: datetime) -> datetime:
        """23:59:59 Asia/Shanghai on the last day of ``after``'s month (the month-end close)."""
        moment = to_shanghai(after)
        last = _stdcal.monthrange(moment.year, moment.month)[1]
        return end_of_day(date(moment.year, moment.month, last))

    @staticmethod
    def working_days_between(start: datetime, end: datetime) -> int:
        return working_days_between(start, end)
