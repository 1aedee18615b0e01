"""Who is on call, when the next hand-over is, and when a notification may go out.

All functions are keyword-only and pure: they take a :class:`~ledgerguard.oncall.models.Roster`
(and the agency's :class:`~ledgerguard.channels.contacts.Contacts` where a person is returned)
and fixed datetimes; nothing reads the clock. Naive datetimes are taken as local time in the
roster's time zone (the agency's, Asia/Shanghai by default).

Working days come from :mod:`ledgerguard.calendar` (``chinese_calendar``): weekends and public
holidays are non-working days, 调休 make-up Saturdays/Sundays are working days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import ValidationError

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import is_working_day
from ledgerguard.channels.contacts import Contacts, Person
from ledgerguard.oncall.models import Override, Roster, Rotation

__all__ = [
    "DEFAULT_ROSTER_FILE",
    "RosterError",
    "Shift",
    "delivery_time",
    "is_quiet",
    "load_roster",
    "next_handover",
    "on_call",
    "on_call_id",
    "parse_roster",
    "quiet_window",
    "roster_tz",
    "schedule",
    "shift_at",
]


DEFAULT_ROSTER_FILE = "oncall/roster.yaml"
DEFAULT_TIMEZONE = "Asia/Shanghai"
_MAX_SEARCH_DAYS = 60          # longest run of non-working days is ~9 (Spring Festival)
_MAX_BOUNDARIES = 1000


class RosterError(AgencyDataError):
    """The roster cannot be read, is invalid, or cannot answer; names the file and the field."""


@dataclass(frozen=True)
class Shift:
    """``person_id`` is on call for ``role`` from ``starts`` (inclusive) to ``ends`` (exclusive)."""

    role: str
    person_id: str
    starts: datetime
    ends: datetime
    override_reason: str | None = None   # set when an override, not the rotation, decides
    person: Person | None = None         # filled in by functions that take contacts

    @property
    def is_override(self) -> bool:
        return self.override_reason is not None


# ------------------------------------------------------------------------------------ loading
def roster_tz(roster: Roster) -> ZoneInfo:
    return ZoneInfo(roster.timezone or DEFAULT_TIMEZONE)


def _localise(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment.astimezone(tz)


def parse_roster(data: Any, *, source: Path | str, contacts: Contacts,
                 timezone: str = DEFAULT_TIMEZONE) -> Roster:
    """Validate roster data (as read from YAML) against ``contacts``.

    Naive override times are localised to the roster's time zone (``timezone`` when the file
    names none). Raises :class:`RosterError` naming ``source`` and the field.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RosterError(source, f"expected a mapping with 'rotations', got {type(data).__name__}")
    try:
        roster = Roster.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first.get("loc", ())) or None
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise RosterError(source, f"{message}{more}", field=field) from None
    if roster.timezone is None:
        roster.timezone = timezone
    tz = roster_tz(roster)

    known = {p.id for p in contacts.people}
    for role, rotation in roster.rotations.items():
        seen: set[str] = set()
        for i, pid in enumerate(rotation.members):
            if pid not in known:
                raise RosterError(source, f"unknown person id {pid!r} in the {role} rotation: "
                                          "not in contacts.yaml", field=f"rotations.{role}.members.{i}")
            if pid in seen:
                raise RosterError(source, f"person id {pid!r} is listed twice in the {role} rotation",
                                  field=f"rotations.{role}.members.{i}")
            seen.add(pid)
    for i, override in enumerate(roster.overrides):
        if override.person not in known:
            raise RosterError(source, f"unknown person id {override.person!r} in an override of role "
                                      f"{override.role}: not in contacts.yaml", field=f"overrides.{i}.person")
        if override.role not in roster.rotations:
            raise RosterError(source, f"role {override.role!r} has no rotation in this roster; add one under "
                                      "rotations before overriding it", field=f"overrides.{i}.role")
        override.from_ = _localise(override.from_, tz)
        override.to = _localise(override.to, tz)
        if override.to <= override.from_:
            raise RosterError(source, f"`to` ({override.to.isoformat()}) must be after `from` "
                                      f"({override.from_.isoformat()})", field=f"overrides.{i}.to")
    return roster


def load_roster(*, agency) -> Roster:
    """Read ``oncall/roster.yaml`` (or ``data_files: {roster: ...}`` in agency.yaml) of a
    :class:`~ledgerguard.agency.LoadedAgency`, validated against its contacts."""
    path = agency.data_file("roster", DEFAULT_ROSTER_FILE)
    if not path.is_file():
        raise RosterError(path, "file not found (generate a sample agency with `ledgerguard sample`, "
                                "or write the on-call roster there)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RosterError(path, f"cannot read the roster: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise RosterError(path, f"not valid YAML: {exc}") from None
    return parse_roster(data, source=path, contacts=agency.contacts, timezone=agency.config.timezone)


# ------------------------------------------------------------------------------------ who is on call
def _rotation(roster: Roster, role: str) -> Rotation:
    role = getattr(role, "value", role)
    try:
        return roster.rotations[role]
    except KeyError:
        known = ", ".join(roster.rotations) or "none"
        raise RosterError("roster", f"no rotation for role {role!r}; the roster has: {known}",
                          field=f"rotations.{role}") from None


def _rotation_shift(role: str, rotation: Rotation, at: datetime, tz: ZoneInfo) -> Shift:
    local = _localise(at, tz)
    day = local.date() if local.time().replace(tzinfo=None) >= rotation.handover else local.date() - timedelta(days=1)
    index = (day - rotation.start).days // rotation.shift_days   # floor: before `start` runs backwards
    first = rotation.start + timedelta(days=index * rotation.shift_days)
    starts = datetime.combine(first, rotation.handover, tzinfo=tz)
    ends = datetime.combine(first + timedelta(days=rotation.shift_days), rotation.handover, tzinfo=tz)
    return Shift(role=role, person_id=rotation.members[index % len(rotation.members)], starts=starts, ends=ends)


def _active_override(roster: Roster, role: str, at: datetime) -> Override | None:
    active = [o for o in roster.overrides if o.role == role and o.from_ <= at < o.to]
    return active[-1] if active else None   # a later entry wins


def shift_at(*, roster: Roster, role: str, at: datetime) -> Shift:
    """The shift covering ``at``: the last matching override, else the rotation's turn. For an
    override, ``starts``/``ends`` are the override's bounds."""
    role = getattr(role, "value", role)
    tz = roster_tz(roster)
    at = _localise(at, tz)
    rotation = _rotation(roster, role)
    override = _active_override(roster, role, at)
    if override is not None:
        return Shift(role=role, person_id=override.person, starts=override.from_.astimezone(tz),
                     ends=override.to.astimezone(tz), override_reason=override.reason or "")
    return _rotation_shift(role, rotation, at, tz)


def on_call_id(*, roster: Roster, role: str, at: datetime) -> str:
    """Person id on call for ``role`` at ``at`` (overrides first, then the rotation)."""
    return shift_at(roster=roster, role=role, at=at).person_id


def _person(contacts: Contacts, person_id: str, role: str) -> Person:
    person = contacts.person(person_id)
    if person is None:
        raise RosterError("contacts.yaml", f"person id {person_id!r} (on call for {role}) is not in contacts",
                          field="people")
    return person


def on_call(*, roster: Roster, contacts: Contacts, role: str, at: datetime) -> Person:
    """The person on call for ``role`` at ``at``: an active override wins, else the rotation."""
    role = getattr(role, "value", role)
    return _person(contacts, on_call_id(roster=roster, role=role, at=at), role)


def _boundaries_after(roster: Roster, role: str, at: datetime, tz: ZoneInfo) -> datetime:
    """The first moment after ``at`` at which the answer for ``role`` might change."""
    rotation = _rotation(roster, role)
    candidates = [_rotation_shift(role, rotation, at, tz).ends]
    for o in roster.overrides:
        if o.role == role:
            candidates += [t for t in (o.from_, o.to) if t > at]
    return min(candidates)


def next_handover(*, roster: Roster, role: str, at: datetime) -> datetime:
    """The next moment after ``at`` at which a different person takes over ``role`` (a rotation
    hand-over, or an override starting or ending), in the roster's time zone. A rotation of one
    person with no override never changes hands: its next scheduled hand-over is returned."""
    role = getattr(role, "value", role)
    tz = roster_tz(roster)
    at = _localise(at, tz)
    current = on_call_id(roster=roster, role=role, at=at)
    cursor = at
    for _ in range(_MAX_BOUNDARIES):
        cursor = _boundaries_after(roster, role, cursor, tz)
        if on_call_id(roster=roster, role=role, at=cursor) != current:
            return cursor
    return _boundaries_after(roster, role, at, tz)


def schedule(*, roster: Roster, contacts: Contacts, start: datetime, days: int) -> list[Shift]:
    """Every shift of every role from ``start`` for ``days`` days, for display: per role in
    roster order, in time order, consecutive turns of the same person merged. The first shift
    of each role begins at ``start`` (it may have begun earlier) and the last is cut at the end."""
    tz = roster_tz(roster)
    start = _localise(start, tz)
    end = start + timedelta(days=max(0, days))
    shifts: list[Shift] = []
    for role in roster.rotations:
        cursor = start
        while cursor < end:
            pid = on_call_id(roster=roster, role=role, at=cursor)
            reason = shift_at(roster=roster, role=role, at=cursor).override_reason
            nxt = min(next_handover(roster=roster, role=role, at=cursor), end)
            shifts.append(Shift(role=role, person_id=pid, starts=cursor, ends=nxt, override_reason=reason,
                                person=_person(contacts, pid, role)))
            cursor = nxt
    return shifts


# ------------------------------------------------------------------------------------ quiet hours
def is_quiet(*, roster: Roster, at: datetime, tz: ZoneInfo | None = None) -> bool:
    """Whether ``at`` is inside quiet hours: the daily window, or (when ``non_working_days``)
    any time of a weekend or holiday that is not a 调休 working day."""
    tz = tz or roster_tz(roster)
    local = _localise(at, tz)
    quiet = roster.quiet_hours
    if quiet.covers(local.time().replace(tzinfo=None)):
        return True
    return quiet.non_working_days and not is_working_day(local.date())


def delivery_time(*, roster: Roster, level: int, at: datetime, tz: ZoneInfo | str | None = None) -> datetime:
    """When a notification of ``level`` raised at ``at`` goes out, in ``tz`` (default: the roster's).

    Levels listed in ``quiet_hours.levels`` (default 四级) that fall inside quiet hours — or on a
    non-working day (weekend or holiday, but not a 调休 make-up working day) — wait until the
    end of quiet hours on the next working day (e.g. 08:00 the next working morning). Every other
    level, and a waiting level outside quiet hours, goes out at ``at``. 一级/二级 never wait.
    """
    if isinstance(tz, str):
        tz = ZoneInfo(tz)
    tz = tz or roster_tz(roster)
    local = _localise(at, tz)
    quiet = roster.quiet_hours
    if int(level) in (1, 2) or int(level) not in quiet.levels:
        return local
    if not is_quiet(roster=roster, at=local, tz=tz):
        return local
    day = local.date()
    for _ in range(_MAX_SEARCH_DAYS):
        candidate = datetime.combine(day, quiet.end, tzinfo=tz)
        if candidate > local and (not quiet.non_working_days or is_working_day(day)):
            return candidate
        day += timedelta(days=1)
    return local  # no working day within two months: never hold a notification forever


def quiet_window(roster: Roster) -> tuple[time, time]:
    return roster.quiet_hours.start, roster.quiet_hours.end
