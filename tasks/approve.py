"""Approval gates: a destructive runbook step (or an approval step) waits in the emergency run
for a person other than the requester, through a typed form on the paused run."""

from __future__ import annotations

import time
from datetime import timedelta

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT, NO_CACHE
from prefect.runtime import flow_run

from ledgerguard.approvals.service import (
    ApprovalRefused,
    abandon,
    decide,
    eligible_approvers,
    latest_approval,
    request_approval,
    time_out,
)
from ledgerguard.channels.contacts import resolve_recipients
from ledgerguard.channels.messaging import render_message
from ledgerguard.models import ActionStatus, Stage, StepKind
from ledgerguard.register import service as register
from ledgerguard.response.models import StepResult
from ledgerguard.response.notifying import ack_personaliser, on_call_now, send_once
from ledgerguard.response.reporting import incident_snapshot, report_context
from ledgerguard.runtime import get_runtime
from tasks.people import (
    FORM_GRACE,
    approval_form,
    close_runs,
    run_is_live,
    start_round,
    suspend_for_person,
    ui_run_url,
    wait_for_person,
    wake_run,
)

DEADLINE_DEPLOYMENT = "approval-deadline/approval-deadline"

TEMPLATE = "approval_request"


def _run_id() -> str | None:
    return str(flow_run.id) if flow_run.id else None


def _notify(*, runtime, entry, incident_id: str, step, approval, timed_out: bool) -> None:
    """Ask the eligible approvers (or, on a time-out, page the duty lead) with a link to the form."""
    run_id = _run_id()
    language = runtime.settings.language
    snapshot = incident_snapshot(runtime=runtime, incident_id=incident_id)
    context = report_context(runtime=runtime, entry=entry, snapshot=snapshot, run={"flow_run_id": run_id})
    context["approval"] = {"id": approval.id, "step_id": step.id, "title": step.title.get(language),
                           "instructions": step.instructions.get(language) if step.instructions else "",
                           "requested_by": approval.requested_by, "approvers": list(approval.approvers),
                           "deadline": approval.deadline, "form_url": ui_run_url(run_id), "timed_out": timed_out,
                           "on_reject": step.on_reject}
    if timed_out:
        roles = ["duty_lead"]
        routing = resolve_recipients(contacts=runtime.contacts, roles=roles, on_call=on_call_now(runtime=runtime,
                                                                                                  roles=roles))
        recipients, step_key = routing.recipients, f"approval:{approval.id}:timed_out"
    else:
        recipients = resolve_recipients(contacts=runtime.contacts, roles=["approver"],
                                        extra_people={"approver": list(approval.approvers)}).recipients
        step_key = f"approval:{approval.id}"
    message = render_message(name=TEMPLATE, language=language, context=context,
                             templates_dir=runtime.settings.templates_dir)
    personalise = ack_personaliser(runtime=runtime, incident_id=incident_id, template=TEMPLATE, context=context)
    for recipient in recipients:
        send_once(runtime=runtime, incident_id=incident_id, stage=Stage.REMEDIATE, step=step_key, recipient=recipient,
                  message=message, template=TEMPLATE, flow_run_id=run_id, personalise=personalise)


@task(name="request-approval", retries=2, retry_delay_seconds=[2, 10], cache_policy=DEFAULT, persist_result=True,
      task_run_name="request-approval-{step_id}")
def request_step_approval(emergency_type: str, incident_id: str, step_id: str, requested_by: str) -> dict:
    runtime = get_runtime()
    entry = runtime.catalog.get(emergency_type)
    step = entry.step(step_id)
    language = runtime.settings.language
    with runtime.session(read_only=True) as db_session:
        prior = latest_approval(db_session=db_session, incident_id=incident_id, step_id=step_id)
        other = (prior.id, prior.flow_run_id) if prior is not None and prior.status == "pending" \
            and prior.flow_run_id != _run_id() else None
    # Asked of Prefect outside the register's write transaction.
    other_live = other is not None and run_is_live(other[1])
    with runtime.session() as db_session:
        existing = register.get_action(db_session=db_session, incident_id=incident_id, step_id=step_id)
        if existing is not None and existing.status == ActionStatus.SUCCEEDED.value:
            return {"skip": True}
        prior = latest_approval(db_session=db_session, incident_id=incident_id, step_id=step_id)
        if other is not None and prior is not None and prior.id == other[0] and prior.status == "pending":
            if other_live:
                # Another run of this incident (say a sweep's signal joined it) already waits for
                # this approval: the approvers are asked once, and that run carries the step.
                title = step.title.get(language)
                register.append_timeline(
                    db_session=db_session, incident_id=incident_id, stage=Stage.REMEDIATE.value,
                    kind="approval.waiting_elsewhere", actor="ledgerguard", flow_run_id=_run_id(),
                    message=f"{title}: already waiting for approval in run {prior.flow_run_id}; "
                            "this run leaves the step and what follows to that run",
                    data={"approval_id": prior.id, "step": step_id, "run": prior.flow_run_id})
                return {"skip": False, "approval_id": prior.id, "elsewhere": prior.flow_run_id,
                        "message": f"{title}: waiting for approval in run {prior.flow_run_id}"}
            abandon(db_session=db_session, approval_id=prior.id, flow_run_id=_run_id(),
                    reason=f"run {prior.flow_run_id} ended without a decision; run {_run_id()} asks again")
        # Everyone holding an approving role may pick themselves in the form, the requester too:
        # the run itself refuses a self-approval, and says so on the timeline.
        people = [p.id for p in runtime.contacts.people if set(p.roles) & set(step.approvers)]
        eligible = eligible_approvers(contacts=runtime.contacts, roles=list(step.approvers), requested_by=requested_by)
        approval = request_approval(db_session=db_session, incident_id=incident_id, step_id=step_id,
                                    step_title=step.title.get(language), requested_by=requested_by,
                                    approvers=eligible, wait=timedelta(minutes=step.approval_minutes),
                                    flow_run_id=_run_id())
        if approval.status != "pending":
            # This run asked and had its answer before (a replay that missed the task cache):
            # the answer stands; nobody is asked again.
            title = step.title.get(language)
            return {"skip": False, "approval_id": approval.id, "people": people or [requested_by],
                    "wait_seconds": 0, "decided": {
                        "status": approval.status, "by": approval.decided_by or "", "reason": approval.reason or "",
                        "message": f"{title}: {approval.status} by {approval.decided_by or 'nobody'}"
                                   + (f" — {approval.reason}" if approval.reason else "")}}
        register.start_action(db_session=db_session, incident_id=incident_id, step_id=step_id,
                              title=step.title.get(language), kind=StepKind.APPROVAL.value
                              if step.kind == StepKind.APPROVAL else StepKind.AUTOMATIC.value, flow_run_id=_run_id())
        register.finish_action(db_session=db_session, incident_id=incident_id, step_id=step_id,
                               status=ActionStatus.OPEN, output={"waiting": "awaiting approval",
                                                                 "approval_id": approval.id})
        db_session.expunge(approval)
    if not eligible:
        get_run_logger().error("nobody may approve %s: roles %s hold no one but the requester", step_id, step.approvers)
    _notify(runtime=runtime, entry=entry, incident_id=incident_id, step=step, approval=approval, timed_out=False)
    return {"skip": False, "approval_id": approval.id, "people": people or [requested_by],
            "wait_seconds": step.approval_minutes * 60}


@task(name="decide-approval", retries=2, retry_delay_seconds=[2, 10], cache_policy=DEFAULT, persist_result=True)
def decide_step_approval(emergency_type: str, incident_id: str, step_id: str, approval_id: str, attempt: int,
                         approver: str, decision: str, reason: str) -> dict:
    runtime = get_runtime()
    step = runtime.catalog.get(emergency_type).step(step_id)
    title = step.title.get(runtime.settings.language)
    with runtime.session() as db_session:
        try:
            row = decide(db_session=db_session, approval_id=approval_id, by=approver, decision=decision, reason=reason,
                         via="ui", step_title=title, flow_run_id=_run_id())
        except ApprovalRefused as exc:
            get_run_logger().warning("approval of %s refused: %s", step_id, exc)
            return {"status": "refused", "why": exc.reason, "message": str(exc)}
        _close_step(db_session=db_session, incident_id=incident_id, step=step, status=row.status, by=approver,
                    reason=row.reason)
    return {"status": row.status, "by": approver, "reason": row.reason,
            "message": f"{title}: {row.status} by {approver}" + (f" — {row.reason}" if row.reason else "")}


@task(name="approval-timed-out", retries=2, retry_delay_seconds=[2, 10], cache_policy=DEFAULT, persist_result=True)
def step_approval_timed_out(emergency_type: str, incident_id: str, step_id: str, approval_id: str) -> dict:
    runtime = get_runtime()
    entry = runtime.catalog.get(emergency_type)
    step = entry.step(step_id)
    title = step.title.get(runtime.settings.language)
    with runtime.session() as db_session:
        row = time_out(db_session=db_session, approval_id=approval_id, step_title=title, flow_run_id=_run_id())
        _close_step(db_session=db_session, incident_id=incident_id, step=step, status=row.status, by="", reason="")
        db_session.expunge(row)
    _notify(runtime=runtime, entry=entry, incident_id=incident_id, step=step, approval=row, timed_out=True)
    return {"status": row.status, "message": f"{title}: nobody approved within {step.approval_minutes:g} min"}


def _close_step(*, db_session, incident_id: str, step, status: str, by: str, reason: str) -> None:
    """An approval step is done when approved; any gated step is `rejected` when refused or
    timed out (a person still has to decide it). An approved destructive step runs next."""
    if status == "approved" and step.kind != StepKind.APPROVAL:
        return
    register.finish_action(db_session=db_session, incident_id=incident_id, step_id=step.id,
                           status=ActionStatus.SUCCEEDED if status == "approved" else ActionStatus.REJECTED,
                           output={"approval": status, "by": by, "reason": reason},
                           error=None if status == "approved" else f"approval {status}" + (f": {reason}" if reason else ""))


def _can_suspend() -> bool:
    """A deployed top-level run can be suspended (its process exits, its runner slot is free);
    a run started in-process (tests, the demo, `ledgerguard run`) pauses where it stands."""
    from prefect.context import FlowRunContext

    run = FlowRunContext.get().flow_run
    return bool(run.deployment_id) and not run.parent_task_run_id


@task(name="schedule-approval-deadline", retries=2, retry_delay_seconds=[2, 10], cache_policy=DEFAULT,
      persist_result=True)
def schedule_approval_deadline(approval_id: str, wait_seconds: float) -> str | None:
    """The timer of a suspended approval: a run at the deadline that wakes this run (once)."""
    from datetime import datetime, timezone

    return start_round(deployment=DEADLINE_DEPLOYMENT, parameters={"approval_id": approval_id,
                                                                    "flow_run_id": _run_id()},
                       at=datetime.now(timezone.utc) + timedelta(seconds=wait_seconds),
                       key=f"approval-deadline:{approval_id}", tags=["approval", f"approval:{approval_id}"],
                       logger=get_run_logger())


@task(name="wake-at-deadline", retries=2, retry_delay_seconds=[2, 10], cache_policy=NO_CACHE)
def wake_at_deadline(approval_id: str, flow_run_id: str) -> str:
    """Nobody decided in time: wake the suspended run, which records the time-out itself."""
    from ledgerguard.approvals.service import get_approval

    runtime = get_runtime()
    with runtime.session() as db_session:
        status = get_approval(db_session=db_session, approval_id=approval_id).status
    if status != "pending":
        return f"already {status}"
    return "woken" if wake_run(flow_run_id, message="the approval's wait is over") else "not suspended"


def approve_step(*, emergency_type: str, incident_id: str, step, requested_by: str) -> StepResult | None:
    """Stop the run until a person decides ``step``; called from the flow, never from a task.

    Returns None when the step may run (approved, or done before), else the step's result:
    ``succeeded`` for an approved approval step, ``rejected`` for a refusal or a time-out.
    A self-approval (or one by someone without an approving role) is refused and the run goes
    on waiting, for what is left of the wait, for another person.

    A deployed run *suspends* (no process waits; an `approval-deadline` run wakes it when the
    wait is over); a run started in-process pauses in place for the same time.
    """
    plan = request_step_approval(emergency_type, incident_id, step.id, requested_by)
    if plan["skip"]:
        return None
    if plan.get("elsewhere"):
        return StepResult(step_id=step.id, kind=step.kind.value, status="waiting", summary=plan["message"])
    form = approval_form(people=plan["people"])
    suspend = _can_suspend()
    if suspend and not plan.get("decided"):
        schedule_approval_deadline(plan["approval_id"], plan["wait_seconds"])
    deadline = time.monotonic() + plan["wait_seconds"]
    attempt = 0
    outcome = plan.get("decided")
    while outcome is None:
        key = f"approval-{plan['approval_id']}-{attempt}"
        if suspend:
            # Each attempt of a resumed run counts its wait again from here; the deadline run is
            # what bounds the whole wait.
            answer = suspend_for_person(form, key=key, timeout_seconds=plan["wait_seconds"]
                                        + FORM_GRACE.total_seconds())
        else:
            answer = wait_for_person(form, timeout_seconds=max(1.0, deadline - time.monotonic()), key=key)
        if answer is None:
            outcome = step_approval_timed_out(emergency_type, incident_id, step.id, plan["approval_id"])
            break
        outcome = decide_step_approval(emergency_type, incident_id, step.id, plan["approval_id"], attempt,
                                       answer.approver, answer.decision, answer.reason)
        if outcome["status"] != "refused" or (not suspend and time.monotonic() >= deadline):
            break
        outcome, attempt = None, attempt + 1
    if outcome["status"] == "refused":  # the last answer came too late to wait for another
        outcome = step_approval_timed_out(emergency_type, incident_id, step.id, plan["approval_id"])
    if suspend:
        close_runs(tags=[f"approval:{plan['approval_id']}"], states=("SCHEDULED",), message=outcome["message"])
    if outcome["status"] == "approved":
        return StepResult(step_id=step.id, kind=step.kind.value, status="succeeded", summary=outcome["message"]) \
            if step.kind == StepKind.APPROVAL else None
    return StepResult(step_id=step.id, kind=step.kind.value, status="rejected", summary=outcome["message"])
