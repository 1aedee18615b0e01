"""Staff check-ins after a 一级/二级 incident: each person who handled it says whether they are
fine, need support, or are not available — so the agency knows who can take the next one.

Keyword-only and Prefect-free; the caller owns the transaction. One check-in per (incident,
person): checking in again updates it, and every check-in goes on the incident's timeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.readiness.models import CHECKIN_STATUSES
from ledgerguard.readiness.service import Gap
from ledgerguard.register import service as register
from ledgerguard.register.models import ApprovalRecord, Incident, Notification, StaffCheckin, as_utc, new_id, utcnow

__all__ = ["CHECKIN_LEVELS", "CHECKIN_STATUSES", "DEFAULT_GRACE_DAYS", "DEFAULT_WITHIN_DAYS", "CheckinRefused",
           "MissingCheckin", "SupportRequest", "checkin_gaps", "involved_people", "list_checkins",
           "missing_checkins", "record_checkin", "support_requests"]

CHECKIN_LEVELS = (1, 2)
DEFAULT_GRACE_DAYS = 3
"""An incident still open after this many days asks for check-ins anyway: people are worn out
by a long incident before it is over."""
DEFAULT_WITHIN_DAYS = 30
"""Incidents resolved (or opened) longer ago than this no longer ask: a check-in about how
someone was a month ago helps nobody."""
_TIMELINE_STAGE = "record"


class CheckinRefused(ValueError):
    """A check-in that cannot be recorded; the message names what is wrong."""


@dataclass(frozen=True)
class MissingCheckin:
    incident_id: str
    emergency_type: str
    title: str
    level: int
    status: str
    opened_at: datetime
    people: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SupportRequest:
    """A check-in that said the person needs support or is not available."""

    incident_id: str
    emergency_type: str
    title: str
    level: int
    person: str
    status: str
    note: str
    checked_in_at: datetime


def _incident(db_session: Session, incident_id: str) -> Incident:
    return register.get_incident(db_session=db_session, incident_id=incident_id)  # NotFound names the id


def record_checkin(*, db_session: Session, contacts, incident_id: str, person_id: str, status: str,
                   note: str = "", via: str = "cli", now: datetime | None = None) -> tuple[StaffCheckin, bool]:
    """Record ``person_id``'s check-in for a 一级/二级 incident; ``(row, created)``.

    Raises :class:`CheckinRefused` for a status outside ok / needs_support / unavailable or an
    incident below 二级, ``UnknownPerson`` for someone not in contacts.yaml and
    ``register.NotFound`` for an incident the register does not hold.
    """
    from ledgerguard.acknowledgement.service import check_person

    if status not in CHECKIN_STATUSES:
        raise CheckinRefused(f"status must be one of {', '.join(CHECKIN_STATUSES)}, not {status!r}")
    person_id = check_person(contacts=contacts, person_id=person_id)
    incident = _incident(db_session, incident_id)
    if incident.level not in CHECKIN_LEVELS:
        level = f"level {incident.level}" if incident.level else "not classified yet"
        raise CheckinRefused(f"incident {incident.id} is {level}: staff check-ins are for level 1 and 2 "
                             "(一级/二级) incidents")
    now = as_utc(now) if now else utcnow()
    note = (note or "").strip()

    def fetch() -> StaffCheckin | None:
        return db_session.scalars(select(StaffCheckin).where(
            StaffCheckin.incident_id == incident.id, StaffCheckin.person_id == person_id)
            .execution_options(populate_existing=True)).first()

    row, created = fetch(), False
    if row is None:
        row, created = register.insert_or_fetch(db_session, StaffCheckin(
            id=new_id(), incident_id=incident.id, person_id=person_id, status=status, note=note, via=via,
            checked_in_at=now), fetch)
    if not created:
        row.status, row.note, row.via, row.checked_in_at = status, note, via, now
        db_session.flush()
    register.append_timeline(
        db_session=db_session, incident_id=incident.id, stage=_TIMELINE_STAGE, kind="staff.checked_in",
        message=f"staff check-in by {person_id} via {via}: {status}" + (f" — {note}" if note else "")
                + ("" if created else " (updated)"),
        actor=person_id, occurred_at=now,
        data={"person": person_id, "status": status, "note": note, "via": via, "first": created})
    return row, created


def list_checkins(*, db_session: Session, incident_id: str) -> list[StaffCheckin]:
    return list(db_session.scalars(select(StaffCheckin).where(StaffCheckin.incident_id == incident_id)
                                   .order_by(StaffCheckin.checked_in_at)))


def involved_people(*, db_session: Session, incident_id: str, contacts=None) -> list[str]:
    """Who handled the incident: whoever acknowledged it, the people its notifications reached,
    and whoever decided its approvals — in that order, once each. With ``contacts`` only people
    of contacts.yaml (no clients, no plain management-list addresses).

    Reports and post-mortems (the record stage) are left out: receiving one informs a person,
    it does not make them one of the responders.
    """
    incident = _incident(db_session, incident_id)
    found: list[str] = []
    if incident.acknowledged_by:
        found.append(incident.acknowledged_by)
    for row in db_session.scalars(select(Notification).where(
            Notification.incident_id == incident.id, Notification.status == "sent",
            Notification.stage != _TIMELINE_STAGE).order_by(Notification.created_at)):
        found.append(row.recipient.split(":", 1)[0])  # recipient_label(): person_id:channel:address
    for row in db_session.scalars(select(ApprovalRecord).where(ApprovalRecord.incident_id == incident.id)
                                  .order_by(ApprovalRecord.requested_at)):
        if row.decided_by:
            found.append(row.decided_by)
    people = list(dict.fromkeys(p for p in found if p))
    if contacts is not None:
        people = [p for p in people if contacts.person(p) is not None]
    return people


def missing_checkins(*, db_session: Session, contacts, now: datetime | None = None,
                     grace_days: int = DEFAULT_GRACE_DAYS,
                     within_days: int = DEFAULT_WITHIN_DAYS) -> list[MissingCheckin]:
    """Each real (not drill) 一级/二级 incident that should have check-ins by ``now`` — resolved or
    closed in the last ``within_days``, or still open after ``grace_days`` — with the involved
    people who have not checked in. Incidents everyone checked in for are left out."""
    now = as_utc(now) if now else utcnow()
    since = now - timedelta(days=within_days)
    out: list[MissingCheckin] = []
    incidents = db_session.scalars(select(Incident).where(
        Incident.level.in_(CHECKIN_LEVELS), Incident.drill.is_(False)).order_by(Incident.opened_at))
    for incident in incidents:
        opened = as_utc(incident.opened_at)
        if opened > now:
            continue
        if incident.status in ("resolved", "closed"):
            ended = incident.resolved_at or incident.closed_at or incident.updated_at
            if ended is None or as_utc(ended) < since:
                continue
        elif opened > now - timedelta(days=grace_days):
            continue
        done = {c.person_id for c in list_checkins(db_session=db_session, incident_id=incident.id)}
        waiting = [p for p in involved_people(db_session=db_session, incident_id=incident.id, contacts=contacts)
                   if p not in done]
        if waiting:
            out.append(MissingCheckin(incident_id=incident.id, emergency_type=incident.emergency_type,
                                      title=incident.title or incident.emergency_type, level=int(incident.level),
                                      status=incident.status, opened_at=opened, people=waiting))
    return out


def support_requests(*, db_session: Session, now: datetime | None = None,
                     within_days: int = DEFAULT_WITHIN_DAYS) -> list[SupportRequest]:
    """The latest check-ins of real 一级/二级 incidents in the last ``within_days`` that said
    "needs support" or "not available": someone should follow each of them up."""
    now = as_utc(now) if now else utcnow()
    rows = db_session.execute(
        select(StaffCheckin, Incident).join(Incident, Incident.id == StaffCheckin.incident_id).where(
            StaffCheckin.status.in_(("needs_support", "unavailable")), Incident.drill.is_(False),
            Incident.level.in_(CHECKIN_LEVELS), StaffCheckin.checked_in_at >= now - timedelta(days=within_days),
            StaffCheckin.checked_in_at <= now).order_by(StaffCheckin.checked_in_at))
    return [SupportRequest(incident_id=incident.id, emergency_type=incident.emergency_type,
                           title=incident.title or incident.emergency_type, level=int(incident.level),
                           person=checkin.person_id, status=checkin.status, note=checkin.note or "",
                           checked_in_at=as_utc(checkin.checked_in_at)) for checkin, incident in rows]


def checkin_gaps(missing: list[MissingCheckin], support: list[SupportRequest] = ()) -> list[Gap]:
    """One readiness gap per incident whose people have not all checked in, and one per person
    whose check-in asked for support or said they are not available."""
    gaps = []
    for r in support:
        code = "support_requested" if r.status == "needs_support" else "unavailable"
        gaps.append(Gap("checkins", f"{r.incident_id}:{r.person}", code,
                        f"{r.person} checked in {r.status} after {r.emergency_type} incident {r.incident_id}"
                        + (f": {r.note}" if r.note else ""),
                        data={"name": r.title, "incident_id": r.incident_id, "emergency_type": r.emergency_type,
                              "level": r.level, "person": r.person, "status": r.status, "note": r.note}))
    for m in missing:
        data: dict[str, Any] = {"name": m.title, "incident_id": m.incident_id, "emergency_type": m.emergency_type,
                                "level": m.level, "status": m.status, "people": list(m.people)}
        gaps.append(Gap("checkins", m.incident_id, "checkin_missing",
                        f"{m.emergency_type} incident {m.incident_id} (level {m.level}, {m.status}): "
                        f"no check-in from {', '.join(m.people)}", data=data))
    return gaps
