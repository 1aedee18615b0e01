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

__all__ = ["DRILL_WITHIN_DAYS", "DUE_DAYS", "EXPIRY_WARNING_DAYS", "FILES", "UNEVEN_FACTOR", "Gap", "ReadinessError",
           "find_gaps", "gap_owner", "improvement_due", "load_readiness", "oncall_gaps", "oncall_load",
           "oncall_window", "read_registers", "source_key"]

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


def _load_register(folder: Path, register: str) -> Any:
    """One register's validated value (a list of items, or the RACI mapping); None when empty."""
    path = folder / FILES[register]
    content = _read(path, register)
    if content is None:
        return None
    expected = dict if register == "raci" else list
    if not isinstance(content, expected):
        raise ReadinessError(path, f"expected a YAML {'mapping of emergency types' if expected is dict else 'list'}"
                                   f", got {type(content).__name__}")
    if register == "training":
        # YAML 1.1 reads an unquoted `on:` key as the boolean true; a person typing the field's
        # name should not have to know that.
        content = [{("on" if key is True else key): value for key, value in record.items()}
                   if isinstance(record, dict) else record for record in content]
    try:
        return getattr(Readiness.model_validate({register: content}), register)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [str(part) for part in first.get("loc", ())][1:]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        raise ReadinessError(path, f"{message}{more}", field=".".join(loc) or None) from None


def _check_people(folder: Path, register: str, value: Any, people: set[str]) -> None:
    """Training records name people of contacts.yaml; owners are people or roles of it."""
    from ledgerguard.channels.contacts import Role

    path = folder / FILES[register]
    if register == "training":
        for i, record in enumerate(value):
            if record.person not in people:
                raise ReadinessError(path, f"unknown person id {record.person!r}: not in contacts.yaml",
                                     field=f"{i}.person")
    elif register in ("supplies", "resources", "regulations"):
        roles = {r.value for r in Role}
        for i, item in enumerate(value):
            if item.owner and item.owner not in people and item.owner not in roles:
                raise ReadinessError(path, f"unknown owner {item.owner!r}: neither a person id of contacts.yaml "
                                     f"nor a role ({', '.join(sorted(roles))})", field=f"{i}.owner")


def read_registers(agency_dir: Path, *, people: set[str] | None = None
                   ) -> tuple[Readiness, list[str], dict[str, ReadinessError]]:
    """Like :func:`load_readiness`, but a register that is wrong does not stop the others: it is
    read as empty and its error is returned (register -> error), for a check that must still
    report everything else — and say which file to fix."""
    folder = Path(agency_dir) / READINESS_DIR
    data: dict[str, Any] = {}
    missing: list[str] = []
    invalid: dict[str, ReadinessError] = {}
    for register in FILES:
        if not (folder / FILES[register]).exists():
            missing.append(register)
            continue
        try:
            value = _load_register(folder, register)
            if value is not None and people is not None:
                _check_people(folder, register, value, people)
        except ReadinessError as exc:
            invalid[register] = exc
            continue
        if value is not None:
            data[register] = value
    return Readiness(**data), missing, invalid


def load_readiness(agency_dir: Path, *, people: set[str] | None = None) -> tuple[Readiness, list[str]]:
    """The registers of ``agency_dir/readiness`` and the names of those whose file is missing.

    With ``people`` (the person ids of contacts.yaml), a training record of anyone else, or an
    owner who is neither one of them nor a role, is an error.
    """
    readiness, missing, invalid = read_registers(agency_dir, people=people)
    if invalid:
        raise next(iter(invalid.values()))
    return readiness, missing


def _due(last: date | None, every_days: int) -> date | None:
    return last + timedelta(days=every_days) if last else None


def find_gaps(*, readiness: Readiness, today: date, people: list[str], emergency_types: list[str],
              missing: list[str] = (), drilled_on: dict[str, date] | None = None,
              invalid: dict[str, Exception] | None = None) -> list[Gap]:
    """Everything past due or absent on ``today``: overdue checks, expired or short supplies,
    unverified contacts, regulations past review, people with no drill in 12 months,
    emergency types without a RACI, registers with no file (or, in ``invalid``, a wrong one).

    ``drilled_on`` adds what the register knows beyond training.yaml: each person's latest
    scored drill. Every gap's ``data`` carries ``name`` (what the item is called) and the
    numbers its message quotes, so a report can say it in the reader's language.
    """
    gaps = [Gap(register, FILES[register], "register_missing", f"no {FILES[register]} in the readiness folder",
                data={"name": FILES[register]})
            for register in missing]
    for register, error in (invalid or {}).items():
        gaps.append(Gap(register, FILES[register], "register_invalid", f"{FILES[register]} cannot be read: {error}",
                        data={"name": FILES[register], "error": str(error)}))
    for s in readiness.supplies:
        base = {"name": s.name, "kind": s.kind, "emergency_type": SUPPLY_TYPES.get(s.kind)}
        due = _due(s.last_checked, s.check_every_days)
        if due is None:
            gaps.append(Gap("supplies", s.id, "never_checked", f"{s.name}: never checked", data=base))
        elif due < today:
            days = (today - due).days
            gaps.append(Gap("supplies", s.id, "check_overdue", f"{s.name}: check due {due}, "
                            f"{days} day(s) overdue", due=due, data={**base, "days": days}))
        if s.expires is not None and s.expires <= today:
            gaps.append(Gap("supplies", s.id, "expired", f"{s.name}: expired on {s.expires}", due=s.expires,
                            data={**base, "expires": s.expires.isoformat()}))
        elif s.expires is not None and s.expires <= today + timedelta(days=EXPIRY_WARNING_DAYS):
            gaps.append(Gap("supplies", s.id, "expiring", f"{s.name}: expires on {s.expires}", due=s.expires,
                            data={**base, "expires": s.expires.isoformat(), "days": (s.expires - today).days}))
        if s.quantity < s.minimum:
            gaps.append(Gap("supplies", s.id, "short", f"{s.name}: {s.quantity} on hand, at least {s.minimum} needed",
                            data={**base, "quantity": s.quantity, "minimum": s.minimum}))
    for r in readiness.resources:
        base = {"name": r.name, "kind": r.kind, "emergency_type": RESOURCE_TYPES.get(r.kind)}
        due = _due(r.last_verified, r.verify_every_days)
        if due is None:
            gaps.append(Gap("resources", r.id, "never_verified", f"{r.name}: contact never verified", data=base))
        elif due < today:
            gaps.append(Gap("resources", r.id, "verification_overdue",
                            f"{r.name}: contact verification due {due}", due=due,
                            data={**base, "days": (today - due).days}))
    for reg in readiness.regulations:
        due = _due(reg.last_reviewed, reg.review_every_days)
        if due is None:
            gaps.append(Gap("regulations", reg.id, "never_reviewed", f"{reg.title}: never reviewed",
                            data={"name": reg.title}))
        elif due < today:
            gaps.append(Gap("regulations", reg.id, "review_overdue", f"{reg.title}: review due {due}", due=due,
                            data={"name": reg.title, "days": (today - due).days}))
    since = today - timedelta(days=DRILL_WITHIN_DAYS)
    drilled: dict[str, date] = {}
    for record in readiness.training:
        if record.kind in ("drill", "tabletop") and record.on <= today:
            drilled[record.person] = max(record.on, drilled.get(record.person, record.on))
    for person, on in (drilled_on or {}).items():
        if on <= today:
            drilled[person] = max(on, drilled.get(person, on))
    for person in people:
        last = drilled.get(person)
        if last is None or last < since:
            gaps.append(Gap("training", person, "no_recent_drill",
                            f"{person}: no drill in the last 12 months" + (f" (last {last})" if last else ""),
                            data={"name": person, "person": person,
                                  "last_drill": last.isoformat() if last else None}))
    for etype in emergency_types:
        if etype not in readiness.raci:
            gaps.append(Gap("raci", etype, "raci_missing", f"{etype}: no RACI of departments",
                            data={"name": etype, "emergency_type": etype}))
    return gaps


# Which emergency type's RACI answers for a supply or an outside resource when the item names
# no owner: the type that would need it first.
SUPPLY_TYPES = {"ups": "office_outage", "network": "office_outage", "laptop": "ransomware",
                "ukey": "credential_expiry", "offline_kit": "etax_outage"}
RESOURCE_TYPES = {"it_support": "ransomware", "vendor": "saas_outage", "lawyer": "vendor_breach",
                  "insurer": "ransomware", "regulator": "vendor_breach"}
# Who takes a gap nobody else answers for, by register; every chain ends at IT and
# the duty lead, who run the readiness check.
FALLBACK_ROLES = {"regulations": ("legal", "data_protection", "it", "duty_lead"),
                  "training": ("duty_lead", "it"), "oncall": ("duty_lead", "it"), "checkins": ("duty_lead", "it"),
                  "raci": ("duty_lead", "manager", "it")}
DEFAULT_FALLBACK = ("it", "duty_lead")
# Days a person gets to fix a gap when the gap itself sets no later date.
DUE_DAYS = {"register_missing": 14, "register_invalid": 3, "never_checked": 7, "check_overdue": 7, "expired": 7,
            "expiring": 14, "short": 14, "never_verified": 14, "verification_overdue": 14, "never_reviewed": 30,
            "review_overdue": 30, "no_recent_drill": 60, "raci_missing": 30, "single_cover": 30,
            "uneven_load": 14, "checkin_missing": 2, "support_requested": 2,
            "unavailable": 2}
DEFAULT_DUE_DAYS = 14


def _holder(contacts, name: str) -> str | None:
    """``name`` as a person id: itself when it is a person, else the first person holding it as a role."""
    if not name:
        return None
    if contacts.person(name) is not None:
        return name
    holders = [p.id for p in contacts.people if name in p.roles]
    return holders[0] if holders else None


def gap_owner(*, gap: Gap, readiness: Readiness, contacts) -> str | None:
    """Who answers for a gap: the item's own ``owner``, else the accountable of the RACI of the
    emergency type the item serves, else a person holding the register's fallback role (IT or
    the duty lead). None when contacts.yaml has nobody to give it to."""
    items = {"supplies": readiness.supplies, "resources": readiness.resources,
             "regulations": readiness.regulations}.get(gap.register, [])
    item = next((i for i in items if i.id == gap.item), None)
    if item is not None and (owner := _holder(contacts, item.owner)):
        return owner
    etype = gap.data.get("emergency_type")
    if etype and etype in readiness.raci and (owner := _holder(contacts, readiness.raci[etype].accountable)):
        return owner
    for role in FALLBACK_ROLES.get(gap.register, DEFAULT_FALLBACK):
        if owner := _holder(contacts, role):
            return owner
    return None


def improvement_due(*, gap: Gap, today: date) -> date:
    """When the improvement item for ``gap`` is due: the code's usual time to fix, but never
    later than a date the gap itself sets in the future (an expiry)."""
    default = today + timedelta(days=DUE_DAYS.get(gap.code, DEFAULT_DUE_DAYS))
    if gap.due is not None and gap.due > today:
        return min(gap.due, default)
    return default


def source_key(gap: Gap) -> str:
    """The stable key an improvement item is raised under: one open item per gap."""
    return f"readiness:{gap.register}:{gap.item}:{gap.code}"


def oncall_load(*, roster, contacts, start: datetime, days: int) -> dict[str, dict[str, float]]:
    """Hours on call per role and person from ``start`` for ``days`` days, overrides included."""
    from ledgerguard.oncall.service import schedule

    load: dict[str, dict[str, float]] = {role: {} for role in roster.rotations}
    for shift in schedule(roster=roster, contacts=contacts, start=start, days=days):
        hours = (shift.ends - shift.starts).total_seconds() / 3600
        load[shift.role][shift.person_id] = load[shift.role].get(shift.person_id, 0.0) + hours
    return load


ONCALL_WINDOW_DAYS = 28


def oncall_window(rotation, minimum: int = ONCALL_WINDOW_DAYS) -> int:
    """Whole turns of the rotation covering at least ``minimum`` days: over 28 days three people
    on a weekly rotation cannot share evenly (one of them holds two weeks), over 42 they do, so
    only real imbalance (overrides) shows."""
    cycle = rotation.shift_days * len(rotation.members)
    return max(cycle, -(-minimum // cycle) * cycle)


def oncall_gaps(*, roster, contacts, start: datetime, days: int | None = None) -> list[Gap]:
    """No one carries every night: a role with a single member, or a person whose share of a
    role's hours is more than :data:`UNEVEN_FACTOR` × the fair share, over ``days`` from
    ``start`` (default: whole turns of each rotation, at least 28 days)."""
    gaps: list[Gap] = []
    for role, rotation in roster.rotations.items():
        members = rotation.members
        if len(set(members)) == 1:
            gaps.append(Gap("oncall", role, "single_cover", f"{role}: {members[0]} is the only member of the "
                            "rotation and carries every shift",
                            data={"name": role, "role": role, "person": members[0]}))
            continue
        window = days or oncall_window(rotation)
        hours = oncall_load(roster=roster, contacts=contacts, start=start, days=window).get(role, {})
        total = sum(hours.values())
        fair = total / len(members) if total else 0.0
        for person, held in sorted(hours.items()):
            if fair and held > UNEVEN_FACTOR * fair:
                gaps.append(Gap("oncall", role, "uneven_load",
                                f"{role}: {person} is on call {held:.0f} h of {total:.0f} h in the next {window} days "
                                f"(a fair share is {fair:.0f} h)",
                                data={"name": role, "role": role, "person": person, "hours": round(held, 1),
                                      "fair_hours": round(fair, 1), "total_hours": round(total, 1),
                                      "days": window}))
    return gaps
