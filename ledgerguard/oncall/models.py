"""The on-call roster file (``oncall/roster.yaml``): rotations per role, overrides, quiet hours.

Example::

    timezone: Asia/Shanghai          # optional; default: the agency's time zone (agency.yaml)
    rotations:
      duty_lead:                     # a role of contacts.yaml (see ledgerguard.channels.contacts.Role)
        kind: weekly                 # daily | weekly
        members: [wangfang, lijun]   # person ids from contacts.yaml, in turn order
        handover: "09:00"            # local hand-over time (quote it: YAML reads 21:00 as a number)
        start: 2026-01-05            # day of the first hand-over to members[0]; weekly: the
                                     # hand-over weekday is this day's weekday
      it:
        kind: daily
        members: [zhaolei, wangfang]
        handover: "09:00"
        start: 2026-01-01
    overrides:                       # win over the rotation while from <= t < to; a later entry
      - person: lijun                # wins over an earlier one that overlaps it
        role: duty_lead
        from: 2026-10-01T09:00:00+08:00   # aware, or local time in the roster's time zone
        to: 2026-10-03 09:00
        reason: 国庆值班调换
    quiet_hours:
      hours: "21:00-08:00"           # local; may wrap midnight
      levels: [4]                    # levels that wait for the end of quiet hours (一级/二级 never wait)
      non_working_days: true         # weekends and holidays count as quiet all day (调休 days do not)
"""

from __future__ import annotations

import re
from datetime import date, datetime, time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ledgerguard.channels.contacts import Role

__all__ = ["Override", "QuietHours", "Roster", "Rotation", "parse_local_time"]

_HH_MM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
_KNOWN_ROLES = {r.value for r in Role}


def parse_local_time(value: object) -> time:
    """``"09:00"`` → 09:00. An int is taken as minutes since midnight, which is what YAML 1.1
    makes of an unquoted ``21:00`` (sexagesimal 1260)."""
    if isinstance(value, time):
        return value.replace(tzinfo=None)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, str):
        match = _HH_MM.match(value.strip())
        if match:
            return time(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"{value!r} is not a local time HH:MM (e.g. \"09:00\")")


def _check_role(value: object) -> str:
    role = value.value if isinstance(value, Role) else str(value)
    if role not in _KNOWN_ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(sorted(_KNOWN_ROLES))}")
    return role


class Rotation(BaseModel):
    """One role's rotation: ``members`` take turns, one shift each (a day or a week)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["daily", "weekly"] = "weekly"
    members: list[str] = Field(min_length=1, description="person ids from contacts.yaml, in turn order")
    handover: time = Field(default=time(9, 0), description="local hand-over time")
    start: date = Field(description="day of the first hand-over (to members[0])")

    @field_validator("handover", mode="before")
    @classmethod
    def _handover(cls, value: object) -> time:
        return parse_local_time(value)

    @field_validator("start", mode="before")
    @classmethod
    def _start_is_a_day(cls, value: object) -> object:
        if isinstance(value, datetime):
            raise ValueError("start is a day (YYYY-MM-DD); the time of day is `handover`")
        return value

    @field_validator("members")
    @classmethod
    def _no_blank_members(cls, value: list[str]) -> list[str]:
        if any(not str(m).strip() for m in value):
            raise ValueError("a member id is empty")
        return [str(m) for m in value]

    @property
    def shift_days(self) -> int:
        return 1 if self.kind == "daily" else 7


class Override(BaseModel):
    """``person`` covers ``role`` from ``from`` (inclusive) to ``to`` (exclusive). Naive times are
    local in the roster's time zone; :func:`ledgerguard.oncall.service.parse_roster` makes them
    aware and checks that ``to`` is after ``from``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    person: str = Field(min_length=1)
    role: str
    from_: datetime = Field(alias="from")
    to: datetime
    reason: str = ""

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, value: object) -> str:
        return _check_role(value)

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _moment(cls, value: object) -> object:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime.combine(value, time(0, 0))  # a bare day: midnight local
        return value


class QuietHours(BaseModel):
    """Hours in which notifications of ``levels`` wait for the next working morning."""

    model_config = ConfigDict(extra="forbid")

    hours: str = "21:00-08:00"
    levels: list[int] = Field(default_factory=lambda: [4])
    non_working_days: bool = Field(default=True, description="weekends and holidays are quiet all day "
                                                            "(调休 make-up working days are not)")

    @field_validator("hours")
    @classmethod
    def _window(cls, value: str) -> str:
        parts = str(value).split("-")
        if len(parts) != 2:
            raise ValueError(f"{value!r} is not a window HH:MM-HH:MM (e.g. \"21:00-08:00\")")
        start, end = (parse_local_time(p.strip()) for p in parts)
        if start == end:
            raise ValueError(f"{value!r}: start and end are the same time")
        return f"{start:%H:%M}-{end:%H:%M}"

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: list[int]) -> list[int]:
        bad = [v for v in value if v not in (1, 2, 3, 4)]
        if bad:
            raise ValueError(f"levels are 1–4 (一级…四级), not {bad}")
        urgent = [v for v in value if v in (1, 2)]
        if urgent:
            raise ValueError(f"level(s) {urgent} may not wait: 一级/二级 notifications always go out at once")
        return sorted(set(value))

    @property
    def start(self) -> time:
        return parse_local_time(self.hours.split("-")[0])

    @property
    def end(self) -> time:
        return parse_local_time(self.hours.split("-")[1])

    def covers(self, moment: time) -> bool:
        """Whether the local time of day ``moment`` lies inside the window (start inclusive)."""
        start, end = self.start, self.end
        if start < end:
            return start <= moment < end
        return moment >= start or moment < end


class Roster(BaseModel):
    """``oncall/roster.yaml``."""

    model_config = ConfigDict(extra="forbid")

    timezone: str | None = Field(default=None, description="default: the agency's time zone")
    rotations: dict[str, Rotation] = Field(default_factory=dict, description="per role")
    overrides: list[Override] = Field(default_factory=list)
    quiet_hours: QuietHours = Field(default_factory=QuietHours)

    @field_validator("rotations", mode="before")
    @classmethod
    def _roles(cls, value: object) -> object:
        if isinstance(value, dict):
            for key in value:
                _check_role(key)
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @property
    def roles(self) -> list[str]:
        return list(self.rotations)
