"""Shared helpers of the readiness tests: plant incidents, notifications, drills in the register."""

from __future__ import annotations

from datetime import timedelta

import yaml

from ledgerguard.models import IncidentStatus, Signal, utcnow
from ledgerguard.register import service as register
from ledgerguard.register.models import ApprovalRecord, DrillRecord, new_id


def people_of(agency_dir) -> list[dict]:
    return yaml.safe_load((agency_dir / "contacts.yaml").read_text(encoding="utf-8"))["people"]


def with_role(agency_dir, role: str) -> str:
    return next(p["id"] for p in people_of(agency_dir) if role in p["roles"])


def plant_incident(runtime, *, resource: str = "ledger:C0001", level: int | None = 1, status: str | None = "resolved",
                   drill: bool = False, acknowledged_by: str | None = None, notified: tuple[str, ...] = (),
                   decided_by: str | None = None, opened_days_ago: float = 1, emergency_type: str = "ledger_loss") -> str:
    """An incident as a finished run leaves it: classified, people notified (sent), maybe an
    acknowledgement and an approval decided, then resolved."""
    with runtime.session() as s:
        incident, _ = register.open_or_join_incident(
            db_session=s, title="账套数据丢失", signal=Signal(source="test", emergency_type=emergency_type,
                                                             resource=resource, drill=drill))
        incident.level = level
        incident.drill = drill
        incident.opened_at = utcnow() - timedelta(days=opened_days_ago)
        if acknowledged_by:
            incident.acknowledged_by, incident.acknowledged_via = acknowledged_by, "cli"
            incident.acknowledged_at = utcnow()
        for i, person in enumerate(notified):
            key = f"test-{incident.id}-{i}"
            register.claim_notification(db_session=s, key=key, incident_id=incident.id, stage="notify",
                                        recipient=f"{person}:email:{person}@agency.example", channel="email",
                                        step="initial", template="notify_staff", subject="x")
            register.mark_notification_sent(db_session=s, key=key)
        if decided_by:
            s.add(ApprovalRecord(id=new_id(), incident_id=incident.id, step_id="swap_in", status="approved",
                                 requested_by="ledgerguard", deadline=utcnow(), approvers=[decided_by],
                                 decided_by=decided_by, decided_at=utcnow()))
        s.flush()
        if status:
            register.set_status(db_session=s, incident_id=incident.id, status=IncidentStatus(status), actor="test")
        return incident.id


def plant_drill(runtime, *, participants: list[str], days_ago: int = 10, status: str = "scored") -> str:
    with runtime.session() as s:
        row = DrillRecord(id=new_id(), emergency_type="ledger_loss", scenario_id="s", mode="live", status=status,
                          requested_by="test", started_at=utcnow() - timedelta(days=days_ago), participants=participants,
                          weights={}, score=90.0, passed=True)
        s.add(row)
        return row.id
