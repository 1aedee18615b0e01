"""Register operations. Every function takes keyword-only arguments and a ``db_session``.

The functions flush but never commit: the caller owns the transaction, normally through
``ledgerguard.register.db.session_scope()``. Writes that may race with another process (opening
an incident, appending to the timeline, claiming a notification, starting an action, upserting an
obligation, linking a flow run) run their INSERT inside a SAVEPOINT, so a unique-constraint clash
rolls back only that insert and the function joins the row the other process wrote.
"""

from __future__ import annotations

import enum
import random
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ledgerguard.models import (
    ActionStatus,
    Assessment,
    DeliveryStatus,
    Finding,
    IncidentStatus,
    Signal,
    Stage,
    StepKind,
)
from ledgerguard.register.models import (
    GENESIS_HASH,
    FindingRecord,
    Incident,
    IncidentFlowRun,
    IntakeRequest,
    Notification,
    ObligationRecord,
    ObligationState,
    OutboxItem,
    OutboxStatus,
    RunbookAction,
    SignalRecord,
    TimelineEntry,
    as_utc,
    entry_hash,
    new_id,
    to_jsonable,
    utcnow,
)

__all__ = [
    "NotFound",
    "Conflict",
    "open_or_join_incident",
    "record_signal",
    "record_finding",
    "apply_assessment",
    "set_status",
    "append_timeline",
    "link_flow_run",
    "claim_notification",
    "mark_notification_sent",
    "mark_notification_failed",
    "list_notifications",
    "get_notification",
    "insert_or_fetch",
    "defer_notification",
    "list_due_notifications",
    "get_action",
    "start_action",
    "finish_action",
    "list_actions",
    "set_obligation_status",
    "list_obligations",
    "get_incident",
    "find_open_incident",
    "list_incidents",
    "get_timeline",
    "list_findings",
    "list_signals",
    "list_flow_runs",
]

APPEND_RETRIES = 8
TIMELINE_LOCK_KEY = 0x4C475444  # 'LGTD': the timeline chain's advisory lock
OPEN_RETRIES = 5
T = TypeVar("T")


class NotFound(LookupError):
    """A register row that was asked for does not exist."""


class Conflict(RuntimeError):
    """A write could not be made consistent with what another process wrote."""


def _value(x: Any) -> Any:
    return x.value if isinstance(x, enum.Enum) else x


def _retryable(exc: OperationalError) -> bool:
    """Deadlock / serialization failure (PostgreSQL) or a busy SQLite database."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    if code in ("40001", "40P01"):
        return True
    return "database is locked" in str(exc.orig).lower()


def _backoff(attempt: int) -> None:
    time.sleep(min(0.2, 0.005 * (2**attempt)) * random.random())


def insert_or_fetch(db_session: Session, obj: T, fetch: Callable[[], T | None]) -> tuple[T, bool]:
    """INSERT ``obj`` in a SAVEPOINT; on a unique clash return the row ``fetch`` finds instead."""
    try:
        with db_session.begin_nested():
            db_session.add(obj)
            db_session.flush()
        return obj, True
    except IntegrityError:
        existing = fetch()
        if existing is None:
            raise
        return existing, False


# --- queries ---------------------------------------------------------------------------------


def get_incident(*, db_session: Session, incident_id: str) -> Incident:
    incident = db_session.get(Incident, incident_id)
    if incident is None:
        raise NotFound(f"incident {incident_id!r} not found in the register")
    return incident


def find_open_incident(*, db_session: Session, dedup_key: str) -> Incident | None:
    """The open (open/acknowledged/mitigated) incident for ``dedup_key``, if any."""
    return db_session.scalars(select(Incident).where(Incident.open_dedup_key == dedup_key)).first()


def list_incidents(
    *,
    db_session: Session,
    status: IncidentStatus | str | Iterable[IncidentStatus | str] | None = None,
    emergency_type: str | None = None,
    drill: bool | None = None,
    open_only: bool = False,
) -> list[Incident]:
    """Incidents, newest first. ``status`` may be one status or several; ``open_only`` keeps
    the ones still open (open, acknowledged, mitigated)."""
    query = select(Incident)
    if status is not None:
        statuses = [status] if isinstance(status, (str, enum.Enum)) else list(status)
        query = query.where(Incident.status.in_([IncidentStatus(_value(s)).value for s in statuses]))
    if open_only:
        query = query.where(Incident.open_dedup_key.is_not(None))
    if emergency_type is not None:
        query = query.where(Incident.emergency_type == emergency_type)
    if drill is not None:
        query = query.where(Incident.drill.is_(drill))
    return list(db_session.scalars(query.order_by(Incident.opened_at.desc(), Incident.id)))


def get_timeline(*, db_session: Session, incident_id: str) -> list[TimelineEntry]:
    """An incident's timeline entries, oldest first."""
    query = select(TimelineEntry).where(TimelineEntry.incident_id == incident_id).order_by(TimelineEntry.seq)
    return list(db_session.scalars(query))


def list_findings(*, db_session: Session, incident_id: str) -> list[FindingRecord]:
    query = select(FindingRecord).where(FindingRecord.incident_id == incident_id)
    return list(db_session.scalars(query.order_by(FindingRecord.observed_at, FindingRecord.id)))


def list_signals(*, db_session: Session, incident_id: str) -> list[SignalRecord]:
    query = select(SignalRecord).where(SignalRecord.incident_id == incident_id)
    return list(db_session.scalars(query.order_by(SignalRecord.received_at, SignalRecord.id)))


def list_flow_runs(*, db_session: Session, incident_id: str) -> list[IncidentFlowRun]:
    query = select(IncidentFlowRun).where(IncidentFlowRun.incident_id == incident_id)
    return list(db_session.scalars(query.order_by(IncidentFlowRun.linked_at)))


def list_actions(*, db_session: Session, incident_id: str) -> list[RunbookAction]:
    query = select(RunbookAction).where(RunbookAction.incident_id == incident_id)
    return list(db_session.scalars(query.order_by(RunbookAction.started_at, RunbookAction.step_id)))


def list_obligations(
    *, db_session: Session, incident_id: str | None = None, status: ObligationState | str | None = None
) -> list[ObligationRecord]:
    """Obligations by deadline (soonest first), for one incident or all of them."""
    query = select(ObligationRecord)
    if incident_id is not None:
        query = query.where(ObligationRecord.incident_id == incident_id)
    if status is not None:
        query = query.where(ObligationRecord.status == ObligationState(_value(status)).value)
    return list(db_session.scalars(query.order_by(ObligationRecord.deadline, ObligationRecord.obligation_id)))


def list_notifications(
    *, db_session: Session, incident_id: str | None = None, status: DeliveryStatus | str | None = None
) -> list[Notification]:
    query = select(Notification)
    if incident_id is not None:
        query = query.where(Notification.incident_id == incident_id)
    if status is not None:
        query = query.where(Notification.status == DeliveryStatus(_value(status)).value)
    return list(db_session.scalars(query.order_by(Notification.created_at, Notification.id)))


# --- signals, incidents, findings ------------------------------------------------------------


def record_signal(*, db_session: Session, signal: Signal, incident_id: str | None = None,
                  flow_run_id: str | None = None) -> SignalRecord:
    """Store one received signal, optionally linked to an incident and to the flow run that
    recorded it."""
    record = SignalRecord(
        id=new_id(),
        incident_id=incident_id,
        source=signal.source,
        emergency_type=signal.emergency_type,
        resource=signal.resource,
        labels=to_jsonable(signal.labels),
        dedup_key=signal.dedup_key,
        observed_at=as_utc(signal.observed_at),
        received_at=utcnow(),
        drill=signal.drill,
        summary=signal.summary,
        payload=to_jsonable(signal.payload),
        flow_run_id=flow_run_id,
    )
    db_session.add(record)
    db_session.flush()
    return record


def open_or_join_incident(
    *,
    db_session: Session,
    signal: Signal,
    title: str,
    flow_run_id: str | None = None,
    flow_name: str = "",
    actor: str = "ledgerguard",
    record_timeline: bool = True,
) -> tuple[Incident, bool]:
    """Join the open incident for ``signal.dedup_key`` or open a new one; ``(incident, opened)``.

    The signal is recorded and linked to the incident. With ``record_timeline`` (default) a
    timeline entry is appended: kind ``opened`` for a new incident, ``signal_joined`` otherwise.
    With ``flow_run_id`` the flow run is linked to the incident too.
    """
    dedup_key = signal.dedup_key
    incident: Incident | None = None
    opened = False
    for _attempt in range(OPEN_RETRIES):
        incident = find_open_incident(db_session=db_session, dedup_key=dedup_key)
        if incident is not None:
            break
        now = utcnow()
        candidate = Incident(
            id=new_id(),
            dedup_key=dedup_key,
            open_dedup_key=dedup_key,
            emergency_type=signal.emergency_type,
            resource=signal.resource,
            title=title,
            status=IncidentStatus.OPEN.value,
            drill=signal.drill,
            affected_clients=[],
            opened_at=now,
            updated_at=now,
            timeline_count=0,
        )
        try:
            with db_session.begin_nested():
                db_session.add(candidate)
                db_session.flush()
        except IntegrityError:
            continue  # another session opened it first: join theirs on the next pass
        incident, opened = candidate, True
        break
    if incident is None:
        raise Conflict(f"could not open or join an incident for dedup key {dedup_key!r}")

    record_signal(db_session=db_session, signal=signal, incident_id=incident.id, flow_run_id=flow_run_id)
    if flow_run_id:
        link_flow_run(db_session=db_session, incident_id=incident.id, flow_run_id=flow_run_id, flow_name=flow_name)
    if record_timeline:
        data = {"source": signal.source, "dedup_key": dedup_key, "resource": signal.resource,
                "drill": signal.drill, "summary": signal.summary}
        append_timeline(
            db_session=db_session,
            incident_id=incident.id,
            stage=Stage.DETECT.value,
            kind="opened" if opened else "signal_joined",
            message=(f"incident opened: {title}" if opened else f"signal from {signal.source} joined the incident")
            + (f" — {signal.summary}" if signal.summary else ""),
            actor=actor,
            data=data,
            flow_run_id=flow_run_id,
        )
    return incident, opened


def record_finding(*, db_session: Session, incident_id: str, finding: Finding) -> FindingRecord:
    get_incident(db_session=db_session, incident_id=incident_id)
    record = FindingRecord(
        id=new_id(),
        incident_id=incident_id,
        detector=finding.detector,
        resource=finding.resource,
        summary=finding.summary,
        facts=to_jsonable(finding.facts),
        evidence=[e.model_dump(mode="json") for e in finding.evidence],
        observed_at=as_utc(finding.observed_at),
    )
    db_session.add(record)
    db_session.flush()
    return record


def apply_assessment(
    *, db_session: Session, incident_id: str, assessment: Assessment, affected_clients: list[str]
) -> Incident:
    """Store the classification on the incident and upsert its obligations.

    Obligations are keyed by (incident, obligation id): law/action/to/deadline are refreshed,
    a status already recorded (met, waived…) is kept.
    """
    incident = get_incident(db_session=db_session, incident_id=incident_id)
    incident.level = int(assessment.level.value)
    incident.priority = assessment.priority.value
    incident.impact = assessment.impact.value
    incident.urgency = assessment.urgency.value
    incident.regulatory_grade = assessment.regulatory_grade.value
    incident.assessment = assessment.model_dump(mode="json")
    incident.affected_clients = [str(c) for c in dict.fromkeys(affected_clients)]
    incident.updated_at = utcnow()

    for ob in assessment.obligations:
        def fetch(ob_id: str = ob.id) -> ObligationRecord | None:
            query = select(ObligationRecord).where(
                ObligationRecord.incident_id == incident_id, ObligationRecord.obligation_id == ob_id
            )
            return db_session.scalars(query).first()

        row = fetch()
        if row is None:
            row, created = insert_or_fetch(
                db_session,
                ObligationRecord(
                    id=new_id(), incident_id=incident_id, obligation_id=ob.id, law=ob.law, action=ob.action,
                    recipient=ob.to, deadline=as_utc(ob.deadline), immediate=ob.immediate,
                    status=ObligationState.OPEN.value, note=ob.note, amount_yuan=ob.amount_yuan,
                ),
                fetch,
            )
            if created:
                continue
        row.law, row.action, row.recipient = ob.law, ob.action, ob.to
        row.deadline, row.immediate = as_utc(ob.deadline), ob.immediate
        # the surcharge keeps accruing: each assessment records the amount so far
        row.note, row.amount_yuan = ob.note, ob.amount_yuan
    db_session.flush()
    return incident


def set_obligation_status(
    *,
    db_session: Session,
    incident_id: str,
    obligation_id: str,
    status: ObligationState | str,
    at: datetime | None = None,
) -> ObligationRecord:
    """Mark an obligation met / missed / waived (or open again); ``met_at`` is set when met."""
    row = db_session.scalars(
        select(ObligationRecord).where(
            ObligationRecord.incident_id == incident_id, ObligationRecord.obligation_id == obligation_id
        )
    ).first()
    if row is None:
        raise NotFound(f"obligation {obligation_id!r} of incident {incident_id!r} not found in the register")
    row.status = ObligationState(_value(status)).value
    if row.status == ObligationState.MET.value:
        row.met_at = as_utc(at) if at else utcnow()
    db_session.flush()
    return row


_STATUS_TIMESTAMP = {
    IncidentStatus.ACKNOWLEDGED.value: "acknowledged_at",
    IncidentStatus.MITIGATED.value: "mitigated_at",
    IncidentStatus.RESOLVED.value: "resolved_at",
    IncidentStatus.CLOSED.value: "closed_at",
}


def set_status(
    *,
    db_session: Session,
    incident_id: str,
    status: IncidentStatus | str,
    actor: str,
    note: str = "",
    stage: Stage | str = Stage.RECORD,
    flow_run_id: str | None = None,
    at: datetime | None = None,
) -> Incident:
    """Move an incident to ``status`` and record it on the timeline (kind ``status``).

    The first time a status is reached its timestamp (acknowledged_at…) is set. Resolving or
    closing frees the dedup key so the next signal opens a new incident; moving a resolved
    incident back to an open status takes the key again (``Conflict`` if another incident holds
    it). Setting the status it already has changes nothing and appends nothing.
    """
    incident = get_incident(db_session=db_session, incident_id=incident_id)
    new = IncidentStatus(_value(status))
    old = incident.status
    if new.value == old:
        return incident
    now = as_utc(at) if at else utcnow()

    if new.is_open and incident.open_dedup_key is None:
        try:
            with db_session.begin_nested():
                incident.open_dedup_key = incident.dedup_key
                db_session.flush()
        except IntegrityError:
            other = find_open_incident(db_session=db_session, dedup_key=incident.dedup_key)
            raise Conflict(
                f"cannot reopen incident {incident_id!r}: incident {other.id if other else '?'!r} "
                f"is already open for {incident.dedup_key!r}"
            ) from None
    elif not new.is_open:
        incident.open_dedup_key = None

    field = _STATUS_TIMESTAMP.get(new.value)
    if field and getattr(incident, field) is None:
        setattr(incident, field, now)
    incident.status = new.value
    incident.updated_at = now
    db_session.flush()
    append_timeline(
        db_session=db_session,
        incident_id=incident_id,
        stage=_value(stage),
        kind="status",
        message=f"status {old} → {new.value}" + (f": {note}" if note else ""),
        actor=actor,
        data={"from": old, "to": new.value, "note": note},
        flow_run_id=flow_run_id,
        occurred_at=now,
    )
    return incident


# --- timeline --------------------------------------------------------------------------------


def append_timeline(
    *,
    db_session: Session,
    incident_id: str,
    stage: Stage | str,
    kind: str,
    message: str,
    actor: str = "ledgerguard",
    data: dict[str, Any] | None = None,
    flow_run_id: str | None = None,
    occurred_at: datetime | None = None,
) -> TimelineEntry:
    """Append one entry to the register-wide hash chain; the only way to write the timeline.

    The entry gets ``seq`` = current head + 1 and ``prev_hash`` = the head's hash. If another
    session appends at the same moment, the unique ``seq`` rejects one insert; that insert is rolled
    back to its SAVEPOINT and retried on the new head, so the chain never forks.
    """
    incident = get_incident(db_session=db_session, incident_id=incident_id)
    stage_value = str(_value(stage))
    occurred = as_utc(occurred_at) if occurred_at else utcnow()
    payload = to_jsonable(data or {})
    last_error: Exception | None = None
    if db_session.get_bind().dialect.name == "postgresql":
        # One global chain: serialise appenders for the rest of this transaction instead of
        # letting them race for the same seq and exhaust their retries under load. SQLite's
        # BEGIN IMMEDIATE already gives the same order.
        db_session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": TIMELINE_LOCK_KEY})
    for attempt in range(APPEND_RETRIES):
        head = db_session.execute(
            select(TimelineEntry.seq, TimelineEntry.hash).order_by(TimelineEntry.seq.desc()).limit(1)
        ).first()
        seq, prev_hash = (head.seq + 1, head.hash) if head else (1, GENESIS_HASH)
        entry = TimelineEntry(
            id=new_id(),
            seq=seq,
            incident_id=incident_id,
            occurred_at=occurred,
            stage=stage_value,
            kind=kind,
            actor=actor,
            message=message,
            data=payload,
            flow_run_id=flow_run_id,
            prev_hash=prev_hash,
        )
        entry.hash = entry_hash(
            seq=seq, incident_id=incident_id, occurred_at=occurred, stage=stage_value, kind=kind, actor=actor,
            message=message, data=payload, flow_run_id=flow_run_id, prev_hash=prev_hash,
        )
        try:
            with db_session.begin_nested():
                db_session.add(entry)
                db_session.flush()
                incident.timeline_count = Incident.timeline_count + 1
                incident.timeline_head = entry.hash
                incident.updated_at = utcnow()
                db_session.flush()
        except IntegrityError as exc:
            last_error = exc
        except OperationalError as exc:
            if not _retryable(exc):
                raise
            last_error = exc
        else:
            return entry
        _backoff(attempt)
    raise Conflict(f"could not append to the timeline after {APPEND_RETRIES} attempts: {last_error}")


def link_flow_run(*, db_session: Session, incident_id: str, flow_run_id: str, flow_name: str = "") -> IncidentFlowRun:
    """Record that a flow run touched an incident (idempotent)."""
    def fetch() -> IncidentFlowRun | None:
        return db_session.get(IncidentFlowRun, (incident_id, flow_run_id))

    existing = fetch()
    if existing is not None:
        if flow_name and not existing.flow_name:
            existing.flow_name = flow_name
        return existing
    row, _ = insert_or_fetch(
        db_session,
        IncidentFlowRun(incident_id=incident_id, flow_run_id=flow_run_id, flow_name=flow_name, linked_at=utcnow()),
        fetch,
    )
    return row


# --- notifications ---------------------------------------------------------------------------


def get_notification(*, db_session: Session, key: str, lock: bool = False) -> Notification | None:
    query = select(Notification).where(Notification.idempotency_key == key).execution_options(populate_existing=True)
    if lock:
        query = query.with_for_update()
    return db_session.scalars(query).first()


def claim_notification(
    *,
    db_session: Session,
    key: str,
    incident_id: str | None,
    stage: Stage | str,
    recipient: str,
    channel: str,
    step: str,
    template: str,
    subject: str,
    flow_run_id: str | None = None,
) -> Notification | None:
    """Claim the right to send the notification with idempotency ``key``.

    Returns None when it was already sent (nothing to do). Otherwise returns the new row, or the
    existing pending/failed one, with ``attempts`` incremented and status ``pending``. The row is
    locked (SELECT … FOR UPDATE on PostgreSQL) until the transaction ends, so a caller that keeps
    its session open while sending makes a concurrent claimer wait and then see ``sent``.
    """
    row = get_notification(db_session=db_session, key=key, lock=True)
    if row is None:
        candidate = Notification(
            id=new_id(), idempotency_key=key, incident_id=incident_id, stage=str(_value(stage)),
            recipient=recipient, channel=channel, step=step, template=template, subject=subject,
            status=DeliveryStatus.PENDING.value, attempts=1, created_at=utcnow(), flow_run_id=flow_run_id,
        )
        row, created = insert_or_fetch(
            db_session, candidate, lambda: get_notification(db_session=db_session, key=key, lock=True)
        )
        if created:
            return row
    if row.status == DeliveryStatus.SENT.value:
        return None
    row.attempts = (row.attempts or 0) + 1
    row.status = DeliveryStatus.PENDING.value
    if flow_run_id:
        row.flow_run_id = flow_run_id
    db_session.flush()
    return row


def defer_notification(
    *,
    db_session: Session,
    key: str,
    incident_id: str | None,
    stage: Stage | str,
    recipient: str,
    channel: str,
    step: str,
    template: str,
    subject: str,
    due_at: datetime,
    flow_run_id: str | None = None,
) -> Notification | None:
    """Record a delivery that must wait until ``due_at`` (quiet hours); nothing is sent now.

    Returns None when this exact delivery was already sent. A row that exists in another state
    (pending, failed, deferred) is returned as it is: deferring never delays a delivery that is
    already under way, and never moves its time.
    """
    existing = get_notification(db_session=db_session, key=key)
    if existing is not None:
        return None if existing.status == DeliveryStatus.SENT.value else existing
    candidate = Notification(
        id=new_id(), idempotency_key=key, incident_id=incident_id, stage=str(_value(stage)),
        recipient=recipient, channel=channel, step=step, template=template, subject=subject,
        status=DeliveryStatus.DEFERRED.value, attempts=0, created_at=utcnow(), flow_run_id=flow_run_id,
        due_at=as_utc(due_at),
    )
    row, _ = insert_or_fetch(db_session, candidate, lambda: get_notification(db_session=db_session, key=key))
    return None if row.status == DeliveryStatus.SENT.value else row


def list_due_notifications(*, db_session: Session, now: datetime, incident_id: str | None = None) -> list[Notification]:
    """Deferred notifications whose time has come (all incidents, or one)."""
    query = select(Notification).where(Notification.status == DeliveryStatus.DEFERRED.value,
                                       Notification.due_at <= as_utc(now))
    if incident_id is not None:
        query = query.where(Notification.incident_id == incident_id)
    return list(db_session.scalars(query.order_by(Notification.due_at, Notification.created_at)))


def _require_notification(db_session: Session, key: str) -> Notification:
    row = get_notification(db_session=db_session, key=key)
    if row is None:
        raise NotFound(f"notification with idempotency key {key!r} not found in the register")
    return row


def mark_notification_sent(*, db_session: Session, key: str) -> Notification:
    row = _require_notification(db_session, key)
    row.status = DeliveryStatus.SENT.value
    row.sent_at = utcnow()
    db_session.flush()
    return row


def mark_notification_failed(*, db_session: Session, key: str, error: str) -> Notification:
    row = _require_notification(db_session, key)
    row.status = DeliveryStatus.FAILED.value
    row.last_error = error
    db_session.flush()
    return row


# --- runbook actions -------------------------------------------------------------------------


def get_action(*, db_session: Session, incident_id: str, step_id: str) -> RunbookAction | None:
    query = select(RunbookAction).where(RunbookAction.incident_id == incident_id, RunbookAction.step_id == step_id)
    return db_session.scalars(query.execution_options(populate_existing=True)).first()


def start_action(
    *,
    db_session: Session,
    incident_id: str,
    step_id: str,
    title: str,
    kind: StepKind | str,
    flow_run_id: str | None = None,
) -> RunbookAction:
    """Start (or restart) a runbook step: creates the row once, then increments ``attempts``.

    Status becomes ``pending`` for automatic steps and ``open`` for manual/approval steps (waiting
    for a person). Callers that must not repeat a finished step check ``get_action`` first.
    """
    kind_value = StepKind(_value(kind)).value

    def fetch() -> RunbookAction | None:
        query = select(RunbookAction).where(
            RunbookAction.incident_id == incident_id, RunbookAction.step_id == step_id
        ).with_for_update()
        return db_session.scalars(query.execution_options(populate_existing=True)).first()

    row = fetch()
    if row is None:
        get_incident(db_session=db_session, incident_id=incident_id)
        row, _ = insert_or_fetch(
            db_session,
            RunbookAction(id=new_id(), incident_id=incident_id, step_id=step_id, title=title, kind=kind_value,
                          status=ActionStatus.PENDING.value, attempts=0),
            fetch,
        )
    row.attempts = (row.attempts or 0) + 1
    row.title = title or row.title
    row.kind = kind_value
    row.status = (ActionStatus.PENDING if kind_value == StepKind.AUTOMATIC.value else ActionStatus.OPEN).value
    row.started_at = utcnow()
    row.finished_at = None
    row.error = None
    if flow_run_id:
        row.flow_run_id = flow_run_id
    db_session.flush()
    return row


def finish_action(
    *,
    db_session: Session,
    incident_id: str,
    step_id: str,
    status: ActionStatus | str,
    output: dict[str, Any] | None = None,
    error: str | None = None,
) -> RunbookAction:
    row = get_action(db_session=db_session, incident_id=incident_id, step_id=step_id)
    if row is None:
        raise NotFound(f"runbook step {step_id!r} of incident {incident_id!r} was never started")
    row.status = ActionStatus(_value(status)).value
    if output is not None:
        row.output = to_jsonable(output)
    row.error = error
    row.finished_at = utcnow()
    db_session.flush()
    return row


# --- intake and outbox (revision 0002) -------------------------------------------------------
#
# The intake writes an ``intake_requests`` row, its signals and one outbox row per event in ONE
# transaction before it answers 202; a relay (Prefect side) claims pending rows, POSTs their
# payloads to Prefect's events API and marks them delivered or failed. The outbox id is the
# Prefect event id, so delivering a row twice (a relay crash between POST and mark) is harmless.

__all__ += [
    "record_intake_request",
    "signature_seen",
    "enqueue_outbox",
    "claim_outbox_batch",
    "mark_outbox_delivered",
    "mark_outbox_failed",
    "park_outbox",
    "get_outbox_item",
    "list_outbox",
    "outbox_stats",
    "get_signal",
    "count_signals",
]

OUTBOX_MAX_ATTEMPTS = 50
"""``mark_outbox_failed`` parks a row after this many attempts (a person looks at it)."""


def record_intake_request(
    *,
    db_session: Session,
    source: str,
    token_id: str | None,
    body_sha256: str,
    status: str,
    http_status: int,
    remote_addr: str | None = None,
    error: str | None = None,
    signal_ids: list[str] | None = None,
    signature: str | None = None,
    received_at: datetime | None = None,
    request_id: str | None = None,
) -> IntakeRequest:
    """Record one authenticated intake request (``accepted`` or ``rejected`` with the reason).

    ``signature`` is unique: recording a signature that was already recorded raises
    ``IntegrityError`` at the flush, which the intake answers as a replay.
    """
    row = IntakeRequest(
        id=request_id or new_id(), source=source, token_id=token_id, received_at=as_utc(received_at or utcnow()),
        remote_addr=remote_addr, body_sha256=body_sha256, status=status, http_status=http_status, error=error,
        signal_ids=list(signal_ids or []), signature=signature,
    )
    db_session.add(row)
    db_session.flush()
    return row


def signature_seen(*, db_session: Session, signature: str) -> bool:
    return db_session.scalar(select(IntakeRequest.id).where(IntakeRequest.signature == signature)) is not None


def get_signal(*, db_session: Session, signal_id: str) -> SignalRecord:
    row = db_session.get(SignalRecord, signal_id)
    if row is None:
        raise NotFound(f"signal {signal_id!r} not found in the register")
    return row


def count_signals(
    *,
    db_session: Session,
    dedup_key: str,
    since: datetime,
    action: str | None = "firing",
) -> int:
    """Signals for ``dedup_key`` received at or after ``since`` (firing ones by default)."""
    query = select(func.count()).select_from(SignalRecord).where(
        SignalRecord.dedup_key == dedup_key, SignalRecord.received_at >= as_utc(since))
    if action is not None:
        query = query.where(SignalRecord.action == action)
    return int(db_session.scalar(query) or 0)


def enqueue_outbox(
    *,
    db_session: Session,
    signal_id: str | None = None,
    payload: dict[str, Any],
    item_id: str | None = None,
    kind: str = "event",
    not_before: datetime | None = None,
) -> OutboxItem:
    """Add one pending event to the outbox and return the row.

    ``item_id`` (uuid hex) defaults to a new one; ``payload["id"]``, the Prefect event id, is set
    to the same uuid in its dashed form when the payload has none. ``not_before`` delays the first
    delivery (a route's group wait)."""
    item_id = item_id or new_id()
    body = to_jsonable(payload)
    if not body.get("id"):
        body["id"] = str(uuid.UUID(hex=item_id)) if len(item_id) == 32 else item_id
    now = utcnow()
    row = OutboxItem(
        id=item_id, signal_id=signal_id, kind=kind, payload=body, status=OutboxStatus.PENDING.value, attempts=0,
        created_at=now, next_attempt_at=as_utc(not_before) if not_before else now,
    )
    db_session.add(row)
    db_session.flush()
    return row


def claim_outbox_batch(*, db_session: Session, limit: int = 100, now: datetime | None = None) -> list[OutboxItem]:
    """Rows due for delivery: pending or failed with ``next_attempt_at <= now``, oldest first.

    On PostgreSQL the rows are locked ``FOR UPDATE SKIP LOCKED`` until the transaction ends, so
    several relays never claim the same row; on SQLite the session's ``BEGIN IMMEDIATE`` already
    serialises relays. Keep the transaction open while delivering and mark each row in it, or
    commit right after claiming and accept that a crash re-delivers (harmless: the event id is
    the row id and Prefect de-duplicates by event id).
    """
    now = as_utc(now or utcnow())
    query = (
        select(OutboxItem)
        .where(
            OutboxItem.status.in_([OutboxStatus.PENDING.value, OutboxStatus.FAILED.value]),
            OutboxItem.next_attempt_at <= now,
        )
        .order_by(OutboxItem.created_at, OutboxItem.id)
        .limit(limit)
        .execution_options(populate_existing=True)
    )
    if db_session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    return list(db_session.scalars(query))


def get_outbox_item(*, db_session: Session, item_id: str) -> OutboxItem:
    row = db_session.get(OutboxItem, item_id)
    if row is None:
        raise NotFound(f"outbox item {item_id!r} not found in the register")
    return row


def mark_outbox_delivered(*, db_session: Session, item_id: str) -> OutboxItem:
    row = get_outbox_item(db_session=db_session, item_id=item_id)
    row.status = OutboxStatus.DELIVERED.value
    row.attempts = (row.attempts or 0) + 1
    row.delivered_at = utcnow()
    row.last_error = None
    db_session.flush()
    return row


def mark_outbox_failed(
    *, db_session: Session, item_id: str, error: str, retry_in_seconds: float, max_attempts: int = OUTBOX_MAX_ATTEMPTS
) -> OutboxItem:
    """Count a failed delivery and schedule the next one ``retry_in_seconds`` from now; after
    ``max_attempts`` the row is ``parked`` (no more automatic retries). A delivered row stays
    delivered."""
    row = get_outbox_item(db_session=db_session, item_id=item_id)
    if row.status == OutboxStatus.DELIVERED.value:
        return row
    row.attempts = (row.attempts or 0) + 1
    row.last_error = error[:4000]
    row.next_attempt_at = utcnow() + timedelta(seconds=max(0.0, float(retry_in_seconds)))
    row.status = (OutboxStatus.PARKED if row.attempts >= max_attempts else OutboxStatus.FAILED).value
    db_session.flush()
    return row


def park_outbox(*, db_session: Session, item_id: str, error: str) -> OutboxItem:
    """Stop retrying a row that can never be delivered (e.g. Prefect answers 4xx to it)."""
    row = get_outbox_item(db_session=db_session, item_id=item_id)
    row.status = OutboxStatus.PARKED.value
    row.last_error = error[:4000]
    db_session.flush()
    return row


def list_outbox(
    *, db_session: Session, status: OutboxStatus | str | None = None, signal_id: str | None = None
) -> list[OutboxItem]:
    query = select(OutboxItem)
    if status is not None:
        query = query.where(OutboxItem.status == OutboxStatus(_value(status)).value)
    if signal_id is not None:
        query = query.where(OutboxItem.signal_id == signal_id)
    return list(db_session.scalars(query.order_by(OutboxItem.created_at, OutboxItem.id)))


def outbox_stats(*, db_session: Session, now: datetime | None = None) -> dict[str, Any]:
    """Counts by status, how many are due now, and the age in seconds of the oldest undelivered."""
    now = as_utc(now or utcnow())
    counts = {s.value: 0 for s in OutboxStatus}
    for status, n in db_session.execute(select(OutboxItem.status, func.count()).group_by(OutboxItem.status)):
        counts[status] = int(n)
    undelivered = [OutboxStatus.PENDING.value, OutboxStatus.FAILED.value]
    due = db_session.scalar(
        select(func.count()).select_from(OutboxItem)
        .where(OutboxItem.status.in_(undelivered), OutboxItem.next_attempt_at <= now)
    )
    oldest = db_session.scalar(select(func.min(OutboxItem.created_at)).where(OutboxItem.status.in_(undelivered)))
    if oldest is not None:
        oldest = as_utc(oldest)
    return {
        **counts,
        "total": sum(counts.values()),
        "due": int(due or 0),
        "oldest_undelivered_age_seconds": round((now - oldest).total_seconds(), 3) if oldest else None,
    }


# --- accepting a signal (the intake's and the sweeps' one path) ------------------------------

__all__ += ["AcceptedSignal", "accept_signal", "SIGNAL_STATUSES"]

SIGNAL_STATUSES = ("queued", "coalesced", "suppressed", "unrouted", "recorded")
"""What ``accept_signal`` did with a signal (``signals.status``):

- ``queued``: an event was written to the outbox;
- ``coalesced``: a firing event for the same dedup key is still undelivered and carries it;
- ``suppressed``: the dedup key is flapping (too many firings in the window): no event, no page;
- ``unrouted``: no route matched (or no valid flow request): recorded only, for a person;
- ``recorded``: an acknowledgement, which changes the incident's status and makes no event.
"""


class AcceptedSignal:
    """The outcome of :func:`accept_signal`."""

    def __init__(self, *, record: SignalRecord, status: str, outbox: OutboxItem | None,
                 incident_id: str | None, incident_status: str | None = None, note: str = "") -> None:
        self.record = record
        self.status = status
        self.outbox = outbox
        self.incident_id = incident_id
        self.incident_status = incident_status
        self.note = note

    @property
    def event_id(self) -> str | None:
        return str(self.outbox.payload.get("id")) if self.outbox is not None else None

    def as_dict(self) -> dict[str, Any]:
        rec = self.record
        return {
            "id": rec.id, "emergency_type": rec.emergency_type, "resource": rec.resource,
            "dedup_key": rec.dedup_key, "action": rec.action, "status": self.status,
            "event_id": self.event_id, "incident_id": self.incident_id,
            "incident_status": self.incident_status, **({"note": self.note} if self.note else {}),
        }


def _resolve_dedup_key(
    db_session: Session, *, signal: Signal, action: str, fingerprint: str | None, group_key: str | None,
    group_window_seconds: float, now: datetime,
) -> str:
    """The dedup key a signal without an explicit one ends up with (see ``accept_signal``)."""
    if fingerprint:
        prev = db_session.scalars(
            select(SignalRecord)
            .where(SignalRecord.fingerprint == fingerprint, SignalRecord.emergency_type == signal.emergency_type,
                   SignalRecord.status != "unrouted")
            .order_by(SignalRecord.received_at.desc()).limit(1)
        ).first()
        if prev is not None:
            recent = as_utc(prev.received_at) >= now - timedelta(seconds=group_window_seconds)
            if action != "firing" or recent or find_open_incident(db_session=db_session, dedup_key=prev.dedup_key):
                return prev.dedup_key
    if action == "firing" and group_key and group_window_seconds > 0:
        leader = db_session.scalars(
            select(SignalRecord)
            .where(SignalRecord.group_key == group_key, SignalRecord.status != "unrouted",
                   SignalRecord.received_at >= now - timedelta(seconds=group_window_seconds))
            .order_by(SignalRecord.received_at.desc()).limit(1)
        ).first()
        if leader is not None:
            return leader.dedup_key
    return signal.dedup_key


def _still_firing(db_session: Session, *, incident: Incident, fingerprint: str | None) -> list[str]:
    """Fingerprints (other than ``fingerprint``) whose latest signal on this incident's dedup key,
    since the key was last resolved, is a firing one."""
    last_resolved = db_session.scalar(
        select(func.max(Incident.resolved_at)).where(Incident.dedup_key == incident.dedup_key,
                                                     Incident.id != incident.id))
    query = select(SignalRecord.fingerprint, SignalRecord.action).where(
        SignalRecord.dedup_key == incident.dedup_key, SignalRecord.fingerprint.is_not(None),
        SignalRecord.action.in_(["firing", "resolve"]))
    if last_resolved is not None:
        query = query.where(SignalRecord.received_at > as_utc(last_resolved))
    latest: dict[str, str] = {}
    for fp, act in db_session.execute(query.order_by(SignalRecord.received_at, SignalRecord.id)):
        latest[fp] = act
    return sorted(fp for fp, act in latest.items() if act == "firing" and fp != fingerprint)


def accept_signal(
    *,
    db_session: Session,
    signal: Signal,
    action: str = "firing",
    actor: str | None = None,
    fingerprint: str | None = None,
    group_key: str | None = None,
    fixed_dedup_key: bool = False,
    group_window_seconds: float = 0,
    group_wait_seconds: float = 0,
    flap_threshold: int = 0,
    flap_window_seconds: float = 0,
    routed: bool = True,
    request: Any = True,
    note: str = "",
    now: datetime | None = None,
) -> AcceptedSignal:
    """Record one signal and decide what it sets in motion, in the caller's transaction.

    Dedup key: kept as is with ``fixed_dedup_key`` (PagerDuty's, a generic one); otherwise the key
    the last signal with the same ``fingerprint`` got (while its incident is open or within the
    group window; always for a resolve), else the key of the latest signal of ``group_key``
    within ``group_window_seconds``, else ``signal.dedup_key`` (``<type>:<resource>``).

    firing: joins the open incident's timeline (``signal_joined``) if there is one; above
    ``flap_threshold`` firings in ``flap_window_seconds`` it is ``suppressed`` (timeline
    "flapping: suppressed", no event); if a firing event for the key still waits in the outbox it
    is ``coalesced``; otherwise a ``ledgerguard.signal.firing`` event is queued (delayed by
    ``group_wait_seconds`` for the first signal of a group).
    resolve: resolves the open incident (actor ``actor``) unless other alerts of it still fire,
    and queues a ``ledgerguard.signal.resolved`` event. acknowledge: acknowledges the open
    incident, no event. change: queues a ``ledgerguard.signal.change`` event, opens nothing.
    ``routed=False``: recorded as ``unrouted`` only. ``request`` is passed to
    ``ledgerguard.signals.event_for_signal`` (True: built from the signal).
    """
    from ledgerguard.signals import ACTIONS, event_for_signal

    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; one of {ACTIONS}")
    now = as_utc(now or utcnow())
    actor = actor or signal.source
    if routed and not fixed_dedup_key:
        key = _resolve_dedup_key(db_session, signal=signal, action=action, fingerprint=fingerprint,
                                 group_key=group_key, group_window_seconds=group_window_seconds, now=now)
        if key != signal.dedup_key:
            signal = signal.model_copy(update={"dedup_key": key})
    key = signal.dedup_key
    incident = find_open_incident(db_session=db_session, dedup_key=key) if routed else None
    flapping = False
    if routed and action == "firing" and flap_threshold > 0 and flap_window_seconds > 0:
        seen = count_signals(db_session=db_session, dedup_key=key, since=now - timedelta(seconds=flap_window_seconds))
        flapping = seen >= flap_threshold

    record = record_signal(db_session=db_session, signal=signal, incident_id=incident.id if incident else None)
    record.action, record.fingerprint, record.group_key = action, fingerprint, group_key
    record.received_at = now

    def outcome(status: str, item: OutboxItem | None = None, text_note: str = note) -> AcceptedSignal:
        record.status = status
        db_session.flush()
        return AcceptedSignal(record=record, status=status, outbox=item, note=text_note,
                              incident_id=incident.id if incident else None,
                              incident_status=incident.status if incident else None)

    def queue(delay: float = 0) -> OutboxItem:
        item_id = new_id()
        payload = event_for_signal(signal, event_id=str(uuid.UUID(hex=item_id)), action=action, signal_id=record.id,
                                   requested_by=actor, occurred=now, request=request)
        payload["payload"]["incident_id"] = incident.id if incident else None
        return enqueue_outbox(db_session=db_session, signal_id=record.id, payload=payload, item_id=item_id,
                              not_before=now + timedelta(seconds=delay) if delay > 0 else None)

    if not routed:
        return outcome("unrouted")

    data = {"source": signal.source, "dedup_key": key, "resource": signal.resource, "signal_id": record.id,
            "action": action, "summary": signal.summary}
    if action == "firing":
        if flapping:
            # One timeline entry per flapping episode: the signals themselves are all kept (and
            # linked to the incident), but a storm must not bury the timeline under copies.
            previous = db_session.scalar(
                select(SignalRecord.status).where(SignalRecord.dedup_key == key, SignalRecord.action == "firing",
                                                  SignalRecord.id != record.id)
                .order_by(SignalRecord.received_at.desc()).limit(1))
            if incident and previous != "suppressed":
                append_timeline(db_session=db_session, incident_id=incident.id, stage=Stage.DETECT.value,
                                kind="flapping", actor=actor, data={**data, "threshold": flap_threshold,
                                                                    "window_seconds": flap_window_seconds},
                                message=(f"flapping: suppressed — more than {flap_threshold} firing signals in "
                                         f"{int(flap_window_seconds)} s from {signal.source}; nobody paged again; "
                                         f"further signals are kept in the register until it calms down"))
            return outcome("suppressed", text_note=f"flapping: more than {flap_threshold} firings "
                                                   f"in {int(flap_window_seconds)} s; no event")
        if incident:
            append_timeline(db_session=db_session, incident_id=incident.id, stage=Stage.DETECT.value,
                            kind="signal_joined", actor=actor, data=data,
                            message=f"signal from {signal.source} joined the incident"
                                    + (f" — {signal.summary}" if signal.summary else ""))
        waiting = db_session.scalar(
            select(OutboxItem.id).join(SignalRecord, OutboxItem.signal_id == SignalRecord.id)
            .where(SignalRecord.dedup_key == key, SignalRecord.action == "firing", SignalRecord.id != record.id,
                   OutboxItem.status.in_([OutboxStatus.PENDING.value, OutboxStatus.FAILED.value]))
            .limit(1))
        if waiting is not None:
            return outcome("coalesced", text_note=f"joins the undelivered event of outbox item {waiting}")
        first_of_group = incident is None and group_key is not None and key == record.dedup_key
        return outcome("queued", queue(group_wait_seconds if first_of_group else 0))

    if action == "resolve":
        text_note = note
        if incident:
            firing = _still_firing(db_session, incident=incident, fingerprint=fingerprint)
            if firing:
                text_note = f"{len(firing)} other alert(s) of this incident still firing; incident left open"
                append_timeline(db_session=db_session, incident_id=incident.id, stage=Stage.DETECT.value,
                                kind="signal_joined", actor=actor, data={**data, "still_firing": firing},
                                message=f"alert resolved at {signal.source}; {len(firing)} still firing")
            else:
                set_status(db_session=db_session, incident_id=incident.id, status=IncidentStatus.RESOLVED,
                           actor=actor, stage=Stage.DETECT, note=f"resolved by {signal.source}", at=now)
        return outcome("queued", queue(), text_note)

    if action == "acknowledge":
        if incident and incident.is_open:
            from ledgerguard.acknowledgement.service import acknowledge

            # The sender's acknowledgement is who clicked it there (PagerDuty's client, a bridge).
            acknowledge(db_session=db_session, incident_id=incident.id, by=actor,
                        via="pagerduty" if signal.source == "pagerduty" else "monitoring",
                        note=f"acknowledged at {signal.source}", at=now)
        return outcome("recorded")

    return outcome("queued", queue())  # change: joins a timeline later, never opens an incident
