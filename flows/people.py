"""People in the loop: the escalation of an unacknowledged incident, the checklist of its
manual steps, and the deadline of an approval. Each round is one short run: it does its work, schedules the next round in Prefect
as its timer, then suspends with its form (no process waits). Answer the form → the run resumes
and records it; no answer → the next round closes the form and carries on.
"""

from __future__ import annotations

from prefect import flow
from prefect.flow_runs import suspend_flow_run

from ledgerguard.masking import install_log_masking
from tasks.escalate import (
    checklist_round,
    escalation_round,
    record_checklist,
    record_form_acknowledgement,
    schedule_checklist_round,
    schedule_escalation_round,
    start_missing_escalations,
)
from tasks.approve import wake_at_deadline
from tasks.people import FORM_GRACE, acknowledgement_form, checklist_form, seconds_until

PREFECT_LOGGERS = ("", "prefect", "prefect.flow_runs", "prefect.task_runs")


@flow(name="escalation", flow_run_name="escalation-{incident_id}-L{level}-r{round}", persist_result=True,
      validate_parameters=True)
def escalation(incident_id: str, level: int, round: int = 0) -> dict:
    """升级 — notify this round's roles, then wait for someone to take the incident over."""
    install_log_masking(PREFECT_LOGGERS)
    plan = escalation_round(incident_id, level, round)
    if plan["stop"]:
        return plan
    schedule_escalation_round(incident_id, level, round + 1, plan["wait_minutes"])
    answer = suspend_flow_run(
        wait_for_input=acknowledgement_form(people=plan["people"]), key="acknowledge",
        timeout=int(plan["wait_minutes"] * 60 + FORM_GRACE.total_seconds()))
    return record_form_acknowledgement(incident_id, answer.responder, answer.note)


@flow(name="checklist", flow_run_name="checklist-{incident_id}-r{round}", persist_result=True,
      validate_parameters=True)
def checklist(incident_id: str, round: int = 0) -> dict:
    """人工步骤清单 — the incident's open manual steps, ticked by the responder in the UI."""
    from datetime import datetime

    install_log_masking(PREFECT_LOGGERS)
    plan = checklist_round(incident_id, round)
    if plan["stop"]:
        return plan
    # The timer: at the resolve deadline the next round records what is still open.
    next_round = schedule_checklist_round(incident_id, round + 1, plan["deadline"])
    answer = suspend_flow_run(
        wait_for_input=checklist_form(people=plan["people"], steps=[tuple(s) for s in plan["steps"]]),
        key="checklist",
        timeout=int(seconds_until(datetime.fromisoformat(plan["deadline"])) + FORM_GRACE.total_seconds()))
    return record_checklist(incident_id, answer.model_dump(), next_round)


@flow(name="escalation-sweep", validate_parameters=True)
def escalation_sweep() -> dict:
    """升级巡检 — start the escalation of open incidents that have none (opened where the
    escalation deployment was not served); their held-back notifications go out with it."""
    install_log_masking(PREFECT_LOGGERS)
    return start_missing_escalations()


@flow(name="approval-deadline", flow_run_name="approval-deadline-{approval_id}", validate_parameters=True)
def approval_deadline(approval_id: str, flow_run_id: str) -> str:
    """审批期限 — nobody decided in time: wake the suspended run to record the miss and go on."""
    install_log_masking(PREFECT_LOGGERS)
    return wake_at_deadline(approval_id, flow_run_id)
