"""Load the readiness registers and find their gaps as of a day.

Keyword-only and pure: nothing reads the clock; ``today`` is the agency's local date. Each
register is optional (a missing file is an empty register, itself a gap the check reports);
a file that is there but wrong raises :class:`ReadinessError` naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.readiness.models import Readiness

__all__ = ["DRILL_WITHIN_DAYS", "EXPIRY_WARNING_DAYS", "FILES", "UNEVEN_FACTOR", "Gap", "ReadinessError",
           "find_gaps", "load_readiness", "oncall_gaps", "oncall_load"]

READINESS_DIR = "readiness"
# register -> file under <agency>/readiness/; list registers hold a YAML list, raci a mapping
FILES = {"supplies": "supplies.yaml", "resources": "resources.yaml", "regulations": "regulations.yaml",
         "training": "training.yaml", "raci": "raci.yaml"}
EXPIRY_WARNING_DAYS = 30
DRILL_WITHIN_DAYS = 365
UNEVEN_FACTOR = 1.5   # a person holding more than 1.5 × their fair share of a role's hours


class ReadinessError(AgencyDataError):
    """A readiness register cannot be read or is invalid; names the file and the field."""


@dataclass(frozen=True)
class Gap:
    """One thing not ready: ``code`` says what (for templates), ``message`` says it in words."""

    register: str
    item: str
    code: str
    message: str
    due: date | None = None
    data: dict[str, Any] = field(default_factory=dict)


def _read(path: Path, register: str) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ReadinessError(path, f"not valid YAML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReadinessError(path, f"cannot read the {register} register: {exc}") from None


def load_readiness(agency_dir: Path, *, people: set[str] | None = None) -> tuple[Readiness, list[str]]:
    """The registers of ``agency_dir/readiness`` and the names of those whose file is missing.

    With ``people`` (the person ids of contacts.yaml), a training record of anyone else is an error.
    """
    folder = Path(agency_dir) / READINESS_DIR
    data: dict[str, Any] = {}
    missing: list[str] = []
    for register, name in FILES.items():
        path = folder / name
        if not path.exists():
            missing.append(register)
            continue
        content = _read(path, register)
        if content is None:
            continue
        expected = dict if register == "raci" else list
        if not isinstance(content, expected):
            raise ReadinessError(path, f"expected a YAML {'mapping of emergency types' if expected is dict else 'list'}"
                                       f", got {type(content).__name__}")
        try:
            data[register] = getattr(Readiness.model_validate({register: content}), register)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = [str(part) for part in first.get("loc", ())][1:]
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            message = str(first.get("msg", "")).removeprefix("Value error, ")
            raise ReadinessError(path, f"{message}{more}", field=".".join(loc) or None) from None
    readiness = Readiness(**data)
    if people is not None:
        for i, record in enumerate(readiness.training):
            if record.person not in people:
                raise ReadinessError(folder / FILES["training"], f"unknown person id {record.person!r}: "
                                     "not in contacts.yaml", field=f"{i}.person")
    return readiness, missing


def _due(last: date | None, every_days: int) -> date | None:
    return last + timedelta(days=every_days) if last else None


def find_gaps(*, readiness: Readiness, today: date, people: list[str], emergency_types: list[str],
              missing: list[str] = ()) -> list[Gap]:
    """Everything past due or absent on ``today``: overdue checks, expired or short supplies,
    unverified contacts, regulations past review, people with no drill in 12 months,
    emergency types without a RACI, registers with no file."""
    gaps = [Gap(register, FILES[register], "register_missing", f"no {FILES[register]} in the readiness folder")
            for register in missing]
    for s in readiness.supplies:
        due = _due(s.last_checked, s.check_every_days)
        if due is None:
            gaps.append(Gap("supplies", s.id, "never_checked", f"{s.name}: never checked"))
        elif due < today:
            gaps.append(Gap("supplies", s.id, "check_overdue", f"{s.name}: check due {due}, "
                            f"{(today - due).days} day(s) overdue", due=due))
        if s.expires is not None and s.expires <= today:
            gaps.append(Gap("supplies", s.id, "expired", f"{s.name}: expired on {s.expires}", due=s.expires))
        elif s.expires is not None and s.expires <= today + timedelta(days=EXPIRY_WARNING_DAYS):
            gaps.append(Gap("supplies", s.id, "expiring", f"{s.name}: expires on {s.expires}", due=s.expires))
        if s.quantity < s.minimum:
            gaps.append(Gap("supplies", s.id, "short", f"{s.name}: {s.quantity} on hand, at least {s.minimum} needed",
                            data={"quantity": s.quantity, "minimum": s.minimum}))
    for r in readiness.resources:
        due = _due(r.last_verified, r.verify_every_days)
        if due is None:
            gaps.append(Gap("resources", r.id, "never_verified", f"{r.name}: contact never verified"))
        elif due < today:
            gaps.append(Gap("resources", r.id, "verification_overdue",
                            f"{r.name}: contact verification due {due}", due=due))
    for reg in readiness.regulations:
        due = _due(reg.last_reviewed, reg.review_every_days)
        if due is None:
            gaps.append(Gap("regulations", reg.id, "never_reviewed", f"{reg.title}: never reviewed"))
        elif due < today:
            gaps.append(Gap("regulations", reg.id, "review_overdue", f"{reg.title}: review due {due}", due=due))
    since = today - timedelta(days=DRILL_WITHIN_DAYS)
    drilled: dict[str, date] = {}
    for record in readiness.training:
        if record.kind in ("drill", "tabletop") and record.on <= today:
            drilled[record.person] = max(record.on, drilled.get(record.person, record.on))
    for person in people:
        last = drilled.get(person)
        if last is None or last < since:
            gaps.append(Gap("training", person, "no_recent_drill",
                            f"{person}: no drill in the last 12 months" + (f" (last {last})" if last else ""),
                            data={"last_drill": last.isoformat() if last else None}))
    for etype in emergency_types:
        if etype not in readiness.raci:
            gaps.append(Gap("raci", etype, "raci_missing", f"{etype}: no RACI of departments"))
    return gaps


def oncall_load(*, roster, contacts, start: datetime, days: int) -> dict[str, dict[str, float]]:
    """Hours on call per role and person from ``start`` for ``days`` days, overrides included."""
    from ledgerguard.oncall.service import schedule

    load: dict[str, dict[str, float]] = {role: {} for role in roster.rotations}
    for shift in schedule(roster=roster, contacts=contacts, start=start, days=days):
        hours = (shift.ends - shift.starts).total_seconds() / 3600
        load[shift.role][shift.person_id] = load[shift.role].get(shift.person_id, 0.0) + hours
    return load


def oncall_gaps(*, roster, contacts, start: datetime, days: int = 28) -> list[Gap]:
    """No one carries every night: a role with a single member, or a person whose share of a
    role's hours over the window is more than :data:`UNEVEN_FACTOR` × the fair share."""
    gaps: list[Gap] = []
    for role, hours in oncall_load(roster=roster, contacts=contacts, start=start, days=days).items():
        members = roster.rotations[role].members
        total = sum(hours.values())
        if len(members) == 1:
            gaps.append(Gap("oncall", role, "single_cover", f"{role}: {members[0]} is the only member of the "
                            "rotation and carries every shift", data={"person": members[0]}))
            continue
        fair = total / len(members) if total else 0.0
        for person, held in sorted(hours.items()):
            if fair and held > UNEVEN_FACTOR * fair:
                gaps.append(Gap("oncall", role, "uneven_load",
                                f"{role}: {person} is on call {held:.0f} h of {total:.0f} h in the next {days} days "
                                f"(a fair share is {fair:.0f} h)",
                                data={"person": person, "hours": round(held, 1), "fair_hours": round(fair, 1)}))
    return gaps
