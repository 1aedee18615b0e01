"""Request, decide and time out approvals of runbook steps; each goes on the timeline.

Four eyes: the approver must be one of the eligible people and must not be the person who
requested the run. Keyword-only, Prefect-free; the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ledgerguard.models import Stage
from ledgerguard.register import service as register
from ledgerguard.register.models import ApprovalRecord, as_utc, new_id, utcnow

__all__ = ["ApprovalRefused", "Decision", "abandon", "decide", "eligible_approvers", "get_approval", "latest_approval",
           "list_approvals", "request_approval", "time_out"]

Decision = Literal["approve", "reject"]


class ApprovalRefused(ValueError):
    """A decision the four-eyes rule does not accept (self-approval, not an approver, already decided)."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


def eligible_approvers(*, contacts, roles: list[str], requested_by: str) -> list[str]:
    """Person ids holding one of ``roles``, the requester left out (nobody approves their own run)."""
    people = [p.id for role in roles for p in contacts.people if role in p.roles]
    return [pid for pid in dict.fromkeys(people) if pid != requested_by]


def request_approval(*, db_session: Session, incident_id: str, step_id: str, step_title: str, requested_by: str,
                     approvers: list[str], wait: timedelta, flow_run_id: str | None = None,
                     now: datetime | None = None) -> ApprovalRecord:
    """Open an approval of ``step_id`` (``approval.requested`` on the timeline).

    One flow run asks once per step: asked again by the same run (a task retry after the row was
    committed, a replay after the run resumed) it returns the row it opened before, whatever its
    status, and records nothing new, so the approvers get one form and one request.
    """
    if flow_run_id:
        prior = latest_approval(db_session=db_session, incident_id=incident_id, step_id=step_id)
        if prior is not None and prior.flow_run_id == flow_run_id:
            return prior
    now = as_utc(now) if now else utcnow()
    row = ApprovalRecord(id=new_id(), incident_id=incident_id, step_id=step_id, status="pending",
                         requested_by=requested_by, requested_at=now, deadline=now + wait,
                         approvers=list(approvers), reason="", flow_run_id=flow_run_id)
    db_session.add(row)
    db_session.flush()
    register.append_timeline(
        db_session=db_session, incident_id=incident_id, stage=Stage.REMEDIATE.value, kind="approval.requested",
        message=f"{step_title}: waiting up to {wait.total_seconds() / 60:.0f} min for approval by one of "
                f"{', '.join(approvers) or 'nobody'} (requested by {requested_by})",
        actor=requested_by, flow_run_id=flow_run_id,
        data={"approval_id": row.id, "step": step_id, "approvers": list(approvers),
              "deadline": row.deadline.isoformat()})
    return row


def get_approval(*, db_session: Session, approval_id: str) -> ApprovalRecord:
    row = db_session.get(ApprovalRecord, approval_id, populate_existing=True)
    if row is None:
        raise register.NotFound(f"approval {approval_id!r} not found in the register")
    return row


def list_approvals(*, db_session: Session, incident_id: str) -> list[ApprovalRecord]:
    return list(db_session.scalars(select(ApprovalRecord).where(ApprovalRecord.incident_id == incident_id)
                                   .order_by(ApprovalRecord.requested_at)))


def latest_approval(*, db_session: Session, incident_id: str, step_id: str) -> ApprovalRecord | None:
    return db_session.scalars(select(ApprovalRecord).where(ApprovalRecord.incident_id == incident_id,
                                                           ApprovalRecord.step_id == step_id)
                              .order_by(ApprovalRecord.requested_at.desc())).first()


def decide(*, db_session: Session, approval_id: str, by: str, decision: Decision, reason: str, via: str,
           step_title: str = "", flow_run_id: str | None = None, now: datetime | None = None) -> ApprovalRecord:
    """Approve or reject. A refused decision (self-approval, not eligible, already decided) is
    kept on the timeline as ``approval.refused`` and raises :class:`ApprovalRefused`; the
    approval stays pending for someone else."""
    row = get_approval(db_session=db_session, approval_id=approval_id)
    now = as_utc(now) if now else utcnow()
    title = step_title or row.step_id
    refusal = None
    if row.status != "pending":
        refusal = ("decided", f"{title}: already {row.status} by {row.decided_by or 'nobody'}")
    elif by == row.requested_by:
        refusal = ("self", f"{title}: {by} requested this run and cannot approve it too (four eyes); "
                           f"another approver must decide")
    elif by not in (row.approvers or []):
        refusal = ("not_an_approver", f"{title}: {by} may not approve this step; approvers: "
                                      f"{', '.join(row.approvers or []) or 'nobody'}")
    if refusal is not None:
        register.append_timeline(
            db_session=db_session, incident_id=row.incident_id, stage=Stage.REMEDIATE.value, kind="approval.refused",
            message=refusal[1], actor=by, flow_run_id=flow_run_id, occurred_at=now,
            data={"approval_id": row.id, "step": row.step_id, "by": by, "decision": decision, "why": refusal[0]})
        raise ApprovalRefused(*refusal)
    if decision not in ("approve", "reject"):
        raise ValueError(f"decision must be approve or reject, not {decision!r}")
    if not (reason or "").strip() and decision == "reject":
        raise ApprovalRefused("no_reason", f"{title}: a rejection needs a reason")
    row.status = "approved" if decision == "approve" else "rejected"
    row.decided_by, row.decided_at, row.reason, row.via = by, now, (reason or "").strip(), via
    db_session.flush()
    register.append_timeline(
        db_session=db_session, incident_id=row.incident_id, stage=Stage.REMEDIATE.value,
        kind=f"approval.{row.status}",
        message=f"{title}: {row.status} by {by} via {via}" + (f" — {row.reason}" if row.reason else ""),
        actor=by, flow_run_id=flow_run_id, occurred_at=now,
        data={"approval_id": row.id, "step": row.step_id, "by": by, "via": via, "reason": row.reason,
              "requested_by": row.requested_by})
    return row


def abandon(*, db_session: Session, approval_id: str, reason: str, flow_run_id: str | None = None,
            now: datetime | None = None) -> ApprovalRecord:
    """The run that waited for this approval ended without a decision (crashed, cancelled): the
    request is closed as ``abandoned`` so a later run of the incident asks afresh."""
    row = get_approval(db_session=db_session, approval_id=approval_id)
    if row.status != "pending":
        return row
    now = as_utc(now) if now else utcnow()
    row.status, row.decided_at, row.reason = "abandoned", now, reason
    db_session.flush()
    register.append_timeline(
        db_session=db_session, incident_id=row.incident_id, stage=Stage.REMEDIATE.value, kind="approval.abandoned",
        message=f"{row.step_id}: the approval request of run {row.flow_run_id} is void — {reason}",
        actor="ledgerguard", flow_run_id=flow_run_id, occurred_at=now,
        data={"approval_id": row.id, "step": row.step_id, "run": row.flow_run_id})
    return row


def time_out(*, db_session: Session, approval_id: str, step_title: str = "", flow_run_id: str | None = None,
             now: datetime | None = None) -> ApprovalRecord:
    """Nobody decided before the deadline: the miss is recorded (``approval.timed_out``)."""
    row = get_approval(db_session=db_session, approval_id=approval_id)
    if row.status != "pending":
        return row
    now = as_utc(now) if now else utcnow()
    row.status, row.decided_at = "timed_out", now
    db_session.flush()
    register.append_timeline(
        db_session=db_session, incident_id=row.incident_id, stage=Stage.REMEDIATE.value, kind="approval.timed_out",
        message=f"{step_title or row.step_id}: nobody approved by {row.deadline.isoformat(timespec='minutes')}; "
                "the duty lead is paged",
        actor="ledgerguard", flow_run_id=flow_run_id, occurred_at=now,
        data={"approval_id": row.id, "step": row.step_id, "approvers": row.approvers})
    return row
