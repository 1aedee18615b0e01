"""Fixtures for retention and purge: incidents built through the register service, then moved into
the past with a plain ORM update (incidents are not append-only), and a PostgreSQL register."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import pytest


def years_ago(years: int, *, days: int = 0) -> datetime:
    from ledgerguard.register.models import utcnow

    now = utcnow()
    try:
        then = now.replace(year=now.year - years)
    except ValueError:  # 29 February
        then = now.replace(year=now.year - years, day=28)
    return then - timedelta(days=days)


@dataclass
class Built:
    incident_id: str
    emergency_type: str


def build_incident(runtime, *, emergency_type: str, resource: str, closed: datetime | None,
                   notes: int = 2, drill: bool = False) -> Built:
    """An incident opened, noted on and (unless ``closed`` is None) resolved and closed through the
    register service; then its dates moved to ``closed`` (opened a day before it)."""
    from ledgerguard.models import Signal
    from ledgerguard.register import service as register
    from ledgerguard.register.models import Incident

    with runtime.session() as db_session:
        incident, opened = register.open_or_join_incident(
            db_session=db_session, title=f"{emergency_type} {resource}",
            signal=Signal(source="test", emergency_type=emergency_type, resource=resource, drill=drill))
        assert opened
        for i in range(notes):
            register.append_timeline(db_session=db_session, incident_id=incident.id, stage="remediate", kind="note",
                                     message=f"step {i} 处置", data={"i": i})
        if closed is not None:
            register.set_status(db_session=db_session, incident_id=incident.id, status="resolved", actor="test")
            register.set_status(db_session=db_session, incident_id=incident.id, status="closed", actor="test")
    if closed is not None:
        with runtime.session() as db_session:
            row = db_session.get(Incident, incident.id)
            row.opened_at = closed - timedelta(days=1)
            row.resolved_at = closed - timedelta(hours=2)
            row.closed_at = closed
    return Built(incident.id, emergency_type)


@pytest.fixture
def runtime(agency_dir):
    from ledgerguard.runtime import get_runtime

    return get_runtime()


@pytest.fixture
def person(runtime) -> str:
    return runtime.contacts.people[0].id
