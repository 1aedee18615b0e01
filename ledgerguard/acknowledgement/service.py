"""Acknowledge an incident; every way in (UI form, CLI, API, link, PagerDuty) ends here.

Keyword-only, Prefect-free; the caller owns the transaction (``runtime.session()``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from ledgerguard.models import IncidentStatus, Stage
from ledgerguard.register import service as register
from ledgerguard.register.models import Incident, as_utc, utcnow

__all__ = ["ACK_CHANNELS", "AckResult", "IncidentNotOpen", "UnknownPerson", "acknowledge", "check_person",
           "mtta_seconds"]

ACK_CHANNELS = ("ui", "cli", "api", "link", "pagerduty", "monitoring", "drill")
"""How an acknowledgement can arrive (``via``)."""


class UnknownPerson(ValueError):
    """The person named is not in the agency's contacts.yaml."""


class IncidentNotOpen(ValueError):
    """A resolved or closed incident cannot be taken over any more."""


@dataclass(frozen=True)
class AckResult:
    incident_id: str
    acknowledged_by: str | None
    acknowledged_via: str | None
    acknowledged_at: datetime | None
    first: bool
    """True for the acknowledgement that took the incident over; False when it was already."""
    status: str

    def as_dict(self) -> dict:
        return {"incident_id": self.incident_id, "acknowledged_by": self.acknowledged_by,
                "acknowledged_via": self.acknowledged_via, "status": self.status, "first": self.first,
                "acknowledged_at": self.acknowledged_at.isoformat() if self.acknowledged_at else None}


def check_person(*, contacts, person_id: str) -> str:
    """``person_id`` if contacts.yaml knows it; :class:`UnknownPerson` naming the ids otherwise."""
    person_id = (person_id or "").strip()
    if contacts.person(person_id) is None:
        known = ", ".join(p.id for p in contacts.people) or "none"
        raise UnknownPerson(f"unknown person {person_id!r}: not in contacts.yaml (people: {known})")
    return person_id


def mtta_seconds(incident: Incident) -> float | None:
    """Time to acknowledge: from the incident opening to its first acknowledgement."""
    if incident.acknowledged_at is None or incident.opened_at is None:
        return None
    return max(0.0, (incident.acknowledged_at - incident.opened_at).total_seconds())


def acknowledge(
    *,
    db_session: Session,
    incident_id: str,
    by: str,
    via: str,
    note: str = "",
    at: datetime | None = None,
    flow_run_id: str | None = None,
) -> AckResult:
    """Record that ``by`` took the incident over through ``via``; :class:`IncidentNotOpen` when
    the incident is resolved or closed (checked under the row lock).

    The first acknowledgement sets ``acknowledged_at/by/via`` (and the status ``acknowledged``
    when the incident is still ``open``; a ``mitigated`` incident keeps its status). A later one
    changes nothing but is kept on the timeline (``acknowledged.again``), so the record shows
    every person who answered. The row is locked while it is decided, so two acknowledgements at
    the same moment cannot both be first.
    """
    if via not in ACK_CHANNELS:
        raise ValueError(f"via must be one of {', '.join(ACK_CHANNELS)}, not {via!r}")
    from sqlalchemy import select

    incident = db_session.scalars(select(Incident).where(Incident.id == incident_id).with_for_update()
                                  .execution_options(populate_existing=True)).first()
    if incident is None:
        raise register.NotFound(f"incident {incident_id!r} not found in the register")
    if not incident.is_open:
        raise IncidentNotOpen(f"incident {incident_id} is {incident.status}: there is nothing left to acknowledge")
    now = as_utc(at) if at else utcnow()
    data = {"by": by, "via": via, "note": note}
    if incident.acknowledged_at is not None:
        register.append_timeline(
            db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value, kind="acknowledged.again",
            message=f"{by} also acknowledged via {via} (already acknowledged"
                    + (f" by {incident.acknowledged_by} via {incident.acknowledged_via})" if incident.acknowledged_by
                       else f" at {incident.acknowledged_at.isoformat(timespec='seconds')})")
                    + (f": {note}" if note else ""),
            actor=by, data=data, flow_run_id=flow_run_id, occurred_at=now)
        return _result(incident, first=False)

    incident.acknowledged_at = now
    incident.acknowledged_by = by
    incident.acknowledged_via = via
    seconds = mtta_seconds(incident)
    register.append_timeline(
        db_session=db_session, incident_id=incident_id, stage=Stage.NOTIFY.value, kind="acknowledged",
        message=f"acknowledged by {by} via {via}" + (f" after {seconds / 60:.1f} min" if seconds is not None else "")
                + (f": {note}" if note else ""),
        actor=by, data={**data, "mtta_seconds": seconds}, flow_run_id=flow_run_id, occurred_at=now)
    if incident.status == IncidentStatus.OPEN.value:
        register.set_status(db_session=db_session, incident_id=incident_id, status=IncidentStatus.ACKNOWLEDGED,
                            actor=by, stage=Stage.NOTIFY, note=f"via {via}", flow_run_id=flow_run_id, at=now)
    db_session.flush()
    return _result(incident, first=True)


def _result(incident: Incident, *, first: bool) -> AckResult:
    return AckResult(incident_id=incident.id, acknowledged_by=incident.acknowledged_by,
                     acknowledged_via=incident.acknowledged_via, acknowledged_at=incident.acknowledged_at,
                     first=first, status=incident.status)
