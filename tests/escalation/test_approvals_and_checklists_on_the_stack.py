"""Issue 5 on the running stack: approvals that suspend their run and the deadline that wakes
it, and the checklist of manual steps (ticked, or still open at the resolve deadline).

A module of its own so it runs beside the escalation tests (each module has its stack).
"""

from __future__ import annotations

import pytest

from tests.escalation.conftest import UNATTENDED
from tests.support.served import wait_for

pytestmark = pytest.mark.prefect


def _kinds(people, incident_id: str) -> list[str]:
    return [e.kind for e in people.timeline(incident_id)]


def test_the_checklist_form_ticks_the_manual_step_and_resolves_the_incident(people):
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    people.break_ledger("C0001")
    people.run_ledger_loss("C0001", dedup_key="checklist:one", remediate=True)
    incident = people.incident("checklist:one")

    def checklist_form():
        response = people.served.flow_runs(flow_name="checklist")
        return [r for r in response if f"incident:{incident.id}" in r["tags"] and r["state_type"] == "PAUSED"]

    (form_run,) = wait_for(checklist_form, timeout=180, what="the checklist form after the automatic steps")
    reconciled = people.reload(incident.id)
    assert reconciled.status == "mitigated"   # restored and verified; the reconciliation is a person's
    accountant = people.person_with("accountants")
    with temporary_settings({PREFECT_API_URL: people.served.api_url}):
        resume_flow_run(form_run["id"], run_input={"responder": accountant.id, "reconcile_with_client": True,
                                                   "note": "已与客户核对银行流水"})

    resolved = wait_for(lambda: (i := people.reload(incident.id)).status == "resolved" and i, timeout=90,
                        what="the incident resolved by the ticked checklist")
    assert resolved.resolved_at is not None
    from ledgerguard.register import service as register

    with people.served.runtime().session() as db_session:
        action = register.get_action(db_session=db_session, incident_id=incident.id, step_id="reconcile_with_client")
        assert action.status == "succeeded" and action.output["done_by"] == accountant.id
        assert action.output["via"] == "ui"
    assert people.wait_mail(incident.id, "运行报告")


def test_a_suspended_approval_holds_no_process_and_its_deadline_wakes_the_run(people):
    people.break_ledger("C0003", count=2)
    run_id = people.run_ledger_loss("C0003", dedup_key="approval:deadline", remediate=True, requested_by=UNATTENDED)

    def run():
        return next(r for r in people.served.flow_runs(deployment="ledger-loss") if r["id"] == run_id)

    waiting = wait_for(lambda: (r := run())["state_type"] == "PAUSED" and r, timeout=180,
                       what="the ledger-loss run to wait for its approval")
    assert waiting["state_name"] == "Suspended"   # the process exited: no runner slot is held
    assert waiting["state"]["state_details"]["pause_key"].startswith("approval-")

    done = wait_for(lambda: (r := run())["state_type"] in ("COMPLETED", "FAILED", "CRASHED") and r, timeout=180,
                    what="the deadline to wake the run and the run to finish")
    assert done["state_type"] == "COMPLETED", done["state"]
    incident = people.incident("approval:deadline")
    from ledgerguard.approvals.service import list_approvals
    from ledgerguard.register import service as register

    with people.served.runtime().session() as db_session:
        (approval,) = list_approvals(db_session=db_session, incident_id=incident.id)
        assert approval.status == "timed_out"
        assert register.get_action(db_session=db_session, incident_id=incident.id, step_id="swap_in").status == "rejected"
        kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident.id)]
    # One detection, one grading, one first notification: the woken run replayed them from its cache.
    assert kinds.count("classified") == 1 and kinds.count("approval.requested") == 1
    assert "approval.timed_out" in kinds
    assert people.wait_mail(incident.id, "[审批超时]")
    deadline_runs = people.served.flow_runs(deployment="approval-deadline")
    assert any(r["state_type"] == "COMPLETED" for r in deadline_runs)


def test_a_checklist_still_open_at_the_resolve_deadline_is_recorded_as_missed(people):
    from tests.support.served import api

    deployment = people.served.deployment("backup-failure", "backup-failure")
    api("POST", f"{people.served.api_url}/deployments/{deployment['id']}/create_flow_run", json={
        "parameters": {"request": {"rpo_hours": 0.01, "source": "test", "requested_by": "test"}}}).raise_for_status()
    incident = people.incident("backup_failure:backups:nightly", timeout=180)

    wait_for(lambda: "checklist.overdue" in _kinds(people, incident.id), timeout=240,
             what="the checklist to run past the resolve deadline (36 s in this catalog)")
    entry = next(e for e in people.timeline(incident.id) if e.kind == "checklist.overdue")
    assert entry.data["steps"] == ["root_cause"]
    from ledgerguard.register import service as register

    with people.served.runtime().session() as db_session:
        assert register.get_action(db_session=db_session, incident_id=incident.id, step_id="root_cause").status == "open"

    def pages():
        with people.served.runtime().session() as db_session:
            rows = [n for n in register.list_notifications(db_session=db_session, incident_id=incident.id)
                    if n.step == "checklist:overdue"]
            for n in rows:
                db_session.expunge(n)
            return rows if rows and all(n.status == "sent" for n in rows) else None

    # The duty lead on call (the roster's rotation) is paged.
    pages = wait_for(pages, timeout=60, what="the duty lead's page")
    for page in pages:
        assert people.wait_mail(incident.id, to=page.recipient.split(":", 2)[2])
    # The form is gone and nothing is left waiting: the miss is on record, the step stays open.
    runs = [r for r in people.served.flow_runs(flow_name="checklist") if f"incident:{incident.id}" in r["tags"]]
    wait_for(lambda: all(r["state_type"] in ("COMPLETED", "CANCELLED") for r in
                         [x for x in people.served.flow_runs(flow_name="checklist")
                          if f"incident:{incident.id}" in x["tags"]]), timeout=90, what="the checklist runs to end")
    assert runs
