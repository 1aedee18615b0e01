"""The register's tables: SQLAlchemy 2 typed ORM, portable between SQLite and PostgreSQL.

Conventions
- Primary keys are uuid4 hex strings (``new_id()``), except the global timeline ``seq``.
- Enum-like columns (status, stage, …) hold the plain string values of the enums in
  ``ledgerguard.models`` ("open", "sent", "succeeded"…); the service validates them.
- Every datetime column is a :class:`UTCDateTime`: values are stored as UTC and always come
  back tz-aware (UTC), on SQLite too.
- JSON columns are ``sqlalchemy.JSON`` and hold plain JSON values only (see ``to_jsonable``).
- ``timeline_entries`` rows are append-only: updating or deleting one through the ORM raises
  :class:`AppendOnlyError`.
"""

from __future__ import annotations

import enum
import hashlib
import json
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel
from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.types import TypeDecorator

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the very first timeline entry of a register."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    """A tz-aware UTC datetime; naive values are taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def to_jsonable(value: Any) -> Any:
    """Plain JSON values (dict/list/str/int/float/bool/None) for a JSON column or a hash.

    Datetimes become ISO strings, enums their value, pydantic models ``model_dump(mode="json")``,
    dict keys strings — so what is stored reads back equal to what was written.
    """
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, datetime):
        return as_utc(value).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, dict):
        return {str(to_jsonable(k)): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    return str(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC on every backend.

    PostgreSQL gets ``timestamp with time zone``; SQLite (which has no time zones) stores the UTC
    wall time and the value is made tz-aware again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}: {value!r}")
        value = as_utc(value)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class AppendOnlyError(RuntimeError):
    """Raised when something tries to change or remove a timeline entry."""


class Incident(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    dedup_key: Mapped[str] = mapped_column(String(255), index=True)
    # Equals dedup_key while the incident is open and NULL once it is resolved or closed: the
    # unique constraint is how the database enforces one open incident per dedup key.
    open_dedup_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    emergency_type: Mapped[str] = mapped_column(String(100), index=True)
    resource: Mapped[str] = mapped_column(String(255))
    title: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    level: Mapped[int | None] = mapped_column(Integer)
    priority: Mapped[str | None] = mapped_column(String(4))
    impact: Mapped[str | None] = mapped_column(String(1))
    urgency: Mapped[str | None] = mapped_column(String(1))
    regulatory_grade: Mapped[str | None] = mapped_column(String(20))
    assessment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    affected_clients: Mapped[list[Any]] = mapped_column(JSON, default=list)
    frozen_escalation: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Added by revision 0004: who took the incident over, and how (ui, cli, api, link, pagerduty).
    acknowledged_by: Mapped[str | None] = mapped_column(String(100))
    acknowledged_via: Mapped[str | None] = mapped_column(String(20))
    mitigated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    timeline_count: Mapped[int] = mapped_column(Integer, default=0)
    timeline_head: Mapped[str | None] = mapped_column(String(64))

    @property
    def is_open(self) -> bool:
        return self.status in ("open", "acknowledged", "mitigated")

    def __repr__(self) -> str:
        return f"<Incident {self.id} {self.dedup_key!r} {self.status} level={self.level}>"


class SignalRecord(Base):
    __tablename__ = "signals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    source: Mapped[str] = mapped_column(String(100))
    emergency_type: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(255))
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedup_key: Mapped[str] = mapped_column(String(255), index=True)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    drill: Mapped[bool] = mapped_column(Boolean, default=False)
    summary: Mapped[str] = mapped_column(Text, default="")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Added by revision 0002 (the intake); NULL for signals recorded before it or by a flow run.
    action: Mapped[str | None] = mapped_column(String(20))
    """firing, resolve, acknowledge or change."""
    status: Mapped[str | None] = mapped_column(String(20))
    """What the intake did with it: queued, coalesced, suppressed, unrouted or recorded."""
    fingerprint: Mapped[str | None] = mapped_column(String(255), index=True)
    """The sender's identity of the alert (Alertmanager fingerprint, PagerDuty dedup key…)."""
    group_key: Mapped[str | None] = mapped_column(String(255), index=True)
    """The route's group (route name + group_by label values) used for the grouping window."""
    # Added by revision 0007: the emergency flow run that recorded it (the consistency check
    # matches Prefect's runs to the register by this, a run that found nothing included).
    flow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)


class FindingRecord(Base):
    __tablename__ = "findings"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    detector: Mapped[str] = mapped_column(String(100))
    resource: Mapped[str] = mapped_column(String(255))
    summary: Mapped[str] = mapped_column(Text, default="")
    facts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class TimelineEntry(Base):
    """One append-only entry; ``hash`` chains it to the entry with ``seq - 1`` (register-wide)."""

    __tablename__ = "timeline_entries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
    stage: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(255))
    message: Mapped[str] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    def compute_hash(self) -> str:
        return entry_hash(
            seq=self.seq,
            incident_id=self.incident_id,
            occurred_at=self.occurred_at,
            stage=self.stage,
            kind=self.kind,
            actor=self.actor,
            message=self.message,
            data=self.data,
            flow_run_id=self.flow_run_id,
            prev_hash=self.prev_hash,
        )

    def __repr__(self) -> str:
        return f"<TimelineEntry #{self.seq} {self.incident_id} {self.stage}/{self.kind}>"


def canonical_occurred_at(value: datetime) -> str:
    """The ISO form hashed for ``occurred_at``: UTC, always with microseconds."""
    return as_utc(value).isoformat(timespec="microseconds")


def entry_hash(
    *,
    seq: int,
    incident_id: str,
    occurred_at: datetime,
    stage: str,
    kind: str,
    actor: str,
    message: str,
    data: Any,
    flow_run_id: str | None,
    prev_hash: str,
) -> str:
    """sha256 (hex) over the canonical JSON of one entry's content and its predecessor's hash."""
    body = {
        "seq": seq,
        "incident_id": incident_id,
        "occurred_at": canonical_occurred_at(occurred_at),
        "stage": stage,
        "kind": kind,
        "actor": actor,
        "message": message,
        "data": to_jsonable(data if data is not None else {}),
        "flow_run_id": flow_run_id,
        "prev_hash": prev_hash,
    }
    text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    stage: Mapped[str] = mapped_column(String(20))
    recipient: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(100))
    step: Mapped[str] = mapped_column(String(100))
    template: Mapped[str] = mapped_column(String(255), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    # Added by revision 0004: a ``deferred`` notification (quiet hours) goes out at ``due_at``.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RunbookAction(Base):
    __tablename__ = "runbook_actions"
    __table_args__ = (UniqueConstraint("incident_id", "step_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    output: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))


class ObligationRecord(Base):
    __tablename__ = "obligations"
    __table_args__ = (UniqueConstraint("incident_id", "obligation_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    obligation_id: Mapped[str] = mapped_column(String(100))
    law: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    recipient: Mapped[str] = mapped_column("to", Text)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    immediate: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    met_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text, default="", server_default="")
    amount_yuan: Mapped[float | None] = mapped_column(Numeric(14, 2, asdecimal=False))


class IncidentFlowRun(Base):
    __tablename__ = "incident_flow_runs"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    flow_name: Mapped[str] = mapped_column(String(255), default="")
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ObligationState(str, enum.Enum):
    OPEN = "open"
    MET = "met"
    MISSED = "missed"
    WAIVED = "waived"


# --- append-only timeline -------------------------------------------------------------------


@event.listens_for(TimelineEntry, "before_update")
def _refuse_update(mapper: Any, connection: Any, target: TimelineEntry) -> None:
    raise AppendOnlyError(f"timeline entry #{target.seq} is append-only and cannot be updated")


@event.listens_for(TimelineEntry, "before_delete")
def _refuse_delete(mapper: Any, connection: Any, target: TimelineEntry) -> None:
    raise AppendOnlyError(f"timeline entry #{target.seq} is append-only and cannot be deleted")


@event.listens_for(Session, "do_orm_execute")
def _refuse_bulk_changes(orm_execute_state: Any) -> None:
    """ORM-enabled ``update(TimelineEntry)`` / ``delete(TimelineEntry)`` bypass mapper events."""
    if not (orm_execute_state.is_update or orm_execute_state.is_delete):
        return
    mapper = orm_execute_state.bind_mapper
    if mapper is not None and mapper.class_ is TimelineEntry:
        verb = "updated" if orm_execute_state.is_update else "deleted"
        raise AppendOnlyError(f"timeline entries are append-only and cannot be {verb}")


ALL_TABLES = [
    "incidents",
    "signals",
    "findings",
    "timeline_entries",
    "notifications",
    "runbook_actions",
    "obligations",
    "incident_flow_runs",
]


# --- intake (revision 0002) ------------------------------------------------------------------


class IntakeRequest(Base):
    """One HTTP request the intake authenticated: accepted (202) or rejected, with the reason."""

    __tablename__ = "intake_requests"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(32), index=True)
    token_id: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    body_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    http_status: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    signal_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # The HMAC signature (v1 hex) when the request was signed: unique, so a replay is refused
    # by the database even across several intake processes.
    signature: Mapped[str | None] = mapped_column(String(64), unique=True)


class OutboxItem(Base):
    """A Prefect event waiting to be delivered; ``id`` is also the event id (idempotent re-delivery)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next_attempt_at", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    signal_id: Mapped[str | None] = mapped_column(ForeignKey("signals.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20), default="event")
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def __repr__(self) -> str:
        return f"<OutboxItem {self.id} {self.status} attempts={self.attempts}>"


class OutboxStatus(str, enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    PARKED = "parked"  # gave up after too many attempts; a person looks at it


INTAKE_TABLES = ["intake_requests", "outbox"]


# --- people in the loop (revision 0004) ------------------------------------------------------


class AckLink(Base):
    """A one-click acknowledgement link sent to one recipient for one incident.

    The link carries ``<id>.<signature>``; the signature (HMAC-SHA256 with the agency's link key)
    covers the id, the incident, the person and the expiry, so a link cannot be re-bound. It is
    spent when ``used_at`` is set (an UPDATE guarded by ``used_at IS NULL``: single use even
    across intake processes).
    """

    __tablename__ = "ack_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    person_id: Mapped[str] = mapped_column(String(100))
    recipient: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_from: Mapped[str | None] = mapped_column(String(64))


class ApprovalRecord(Base):
    """One request for a person's approval of a runbook step, and its decision."""

    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="pending", index=True)
    """pending, approved, rejected, timed_out or abandoned (its run ended without a decision)."""
    requested_by: Mapped[str] = mapped_column(String(100))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    approvers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """Person ids who may decide (the requester is never one of them)."""
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str | None] = mapped_column(String(20))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))


PEOPLE_TABLES = ["ack_links", "approvals"]


# --- readiness (revision 0005) ---------------------------------------------------------------


class ImprovementItem(Base):
    """Something to improve, found by a drill, the readiness check or a post-mortem, with an
    owner and a due date, tracked until a person closes it."""

    __tablename__ = "improvement_items"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    source: Mapped[str] = mapped_column(String(20), index=True)
    """readiness, drill, incident or postmortem."""
    source_key: Mapped[str] = mapped_column(String(255), index=True)
    """What found it, stably: ``readiness:supplies:ups-1:check_overdue``; the same finding joins
    the open item instead of opening another."""
    open_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    """``source_key`` while the item is open, NULL once closed (one open item per finding)."""
    title: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(100))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    times_seen: Mapped[int] = mapped_column(Integer, default=1)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(100))
    resolution: Mapped[str] = mapped_column(Text, default="")
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)


READINESS_TABLES = ["improvement_items"]


# --- drills and staff check-ins (revision 0006) ------------------------------------------------


class DrillRecord(Base):
    """One drill: the scenario it played, the sandbox it ran on, the drill incident it opened,
    what was measured and the score those measures earned (with the weights it was scored by)."""

    __tablename__ = "drills"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    emergency_type: Mapped[str] = mapped_column(String(100), index=True)
    scenario_id: Mapped[str] = mapped_column(String(100))
    mode: Mapped[str] = mapped_column(String(20), default="live")
    """live (the real flow on a sandbox) or tabletop (the runbook walked through forms)."""
    status: Mapped[str] = mapped_column(String(20), default="running", index=True)
    """running, scored, or failed (the drill itself broke: no score)."""
    requested_by: Mapped[str] = mapped_column(String(100), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    sandbox: Mapped[str | None] = mapped_column(Text)
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id"), index=True)
    expected_level: Mapped[int | None] = mapped_column(Integer)
    level: Mapped[int | None] = mapped_column(Integer)
    measures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    score: Mapped[float | None] = mapped_column(Numeric(5, 1, asdecimal=False))
    passed: Mapped[bool | None] = mapped_column(Boolean)
    weights: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    participants: Mapped[list[Any]] = mapped_column(JSON, default=list)
    report_path: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class StaffCheckin(Base):
    """After a 一级/二级 incident each person who handled it checks in: fine, needs support, or
    not available — so the agency knows who can take the next one."""

    __tablename__ = "staff_checkins"
    __table_args__ = (UniqueConstraint("incident_id", "person_id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    person_id: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20))
    """ok, needs_support or unavailable."""
    note: Mapped[str] = mapped_column(Text, default="")
    via: Mapped[str] = mapped_column(String(20), default="cli")
    checked_in_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


DRILL_TABLES = ["drills", "staff_checkins"]


# --- compliance record (revision 0007) ---------------------------------------------------------


class PostmortemReview(Base):
    """What a person concluded about an incident: root cause, contributing factors, lessons and
    action items (each action item also opens an improvement item). Every edit is a new revision,
    so the post-mortem always says who concluded what, and when."""

    __tablename__ = "postmortem_reviews"
    __table_args__ = (UniqueConstraint("incident_id", "revision"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    root_cause: Mapped[str] = mapped_column(Text)
    contributing_factors: Mapped[list[Any]] = mapped_column(JSON, default=list)
    lessons: Mapped[str] = mapped_column(Text, default="")
    action_items: Mapped[list[Any]] = mapped_column(JSON, default=list)
    """[{title, owner, due (ISO date), improvement_item_id}]"""
    entered_by: Mapped[str] = mapped_column(String(100))
    entered_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    via: Mapped[str] = mapped_column(String(20), default="cli")
    flow_run_id: Mapped[str | None] = mapped_column(String(64))


class NoticeDraft(Base):
    """One version of a notice to people outside the agency (individuals under PIPL Art. 57, a
    client, the CAC, the police), rendered from the incident. Nothing leaves until a person
    approves that exact version (``content_sha256``)."""

    __tablename__ = "notice_drafts"
    __table_args__ = (UniqueConstraint("incident_id", "kind", "audience", "version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    """pipl57 (individuals), client, cac_report, police…"""
    audience: Mapped[str] = mapped_column(String(255), default="")
    """Who it is for within the kind: a client id, ``individuals``, ``cac``…"""
    language: Mapped[str] = mapped_column(String(10))
    version: Mapped[int] = mapped_column(Integer, default=1)
    content_sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="drafted", index=True)
    """drafted, approved, rejected, sent or superseded (a newer version replaced it)."""
    drafted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    drafted_by: Mapped[str] = mapped_column(String(100), default="ledgerguard")
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str] = mapped_column(Text, default="")
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sent_to: Mapped[list[Any]] = mapped_column(JSON, default=list)
    flow_run_id: Mapped[str | None] = mapped_column(String(64))


class PurgeRecord(Base):
    """One incident's records removed from the register after its retention period ended: what
    was kept how long (record kinds, the date it had to be kept until), who purged it and how
    many rows went. Kept for ever: the register says what it no longer holds, and why."""

    __tablename__ = "purges"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    incident_id: Mapped[str] = mapped_column(String(32), index=True)  # no FK: the incident is gone
    emergency_type: Mapped[str] = mapped_column(String(100))
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    record_kinds: Mapped[list[Any]] = mapped_column(JSON, default=list)
    retain_until: Mapped[datetime] = mapped_column(UTCDateTime())
    purged_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    purged_by: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text, default="")
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    archive: Mapped[str | None] = mapped_column(Text)
    """The exported archive (folder and manifest SHA-256) that holds the records now."""


class TimelineTombstone(Base):
    """What is left of a purged timeline entry: its place and hashes only, so the register-wide
    hash chain still verifies across the gap while the content is gone."""

    __tablename__ = "timeline_tombstones"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    incident_id: Mapped[str] = mapped_column(String(32), index=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    purge_id: Mapped[str] = mapped_column(ForeignKey("purges.id"), index=True)


COMPLIANCE_TABLES = ["postmortem_reviews", "notice_drafts", "purges", "timeline_tombstones"]
