"""Approvals in a real emergency run (Prefect test harness, real ledger, real SMTP): the swap-in
of a restored ledger pauses for a typed form; four eyes; reject; time-out."""

from __future__ import annotations

import shutil
import threading

import pytest
import yaml

pytestmark = pytest.mark.prefect


def _break(client_id: str) -> None:
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    get_injector("ledger.delete_vouchers").inject(InjectionContext(
        agency=runtime.agency, resource=f"ledger:{client_id}", scratch_dir=runtime.settings.scratch_dir), count=4)


def _approvers():
    from ledgerguard.runtime import get_runtime

    step = get_runtime().catalog.get("ledger_loss").step("swap_in")
    return [p.id for p in get_runtime().contacts.people if set(p.roles) & set(step.approvers)]


def _start(client_id: str, requested_by: str) -> tuple[threading.Thread, dict]:
    """The ledger-loss flow in a thread, as a served run would execute it."""
    from flows import ledger_loss
    from ledgerguard.response.models import LedgerLossRequest

    result: dict = {}
    request = LedgerLossRequest(client_id=client_id, requested_by=requested_by, source="test")
    import contextvars

    thread = threading.Thread(target=contextvars.copy_context().run, daemon=True, args=(
        lambda: result.update(state=ledger_loss(request, return_state=True)),))
    thread.start()
    return thread, result


def _approval(incident_id=None):
    from ledgerguard.approvals.service import list_approvals
    from ledgerguard.register.models import ApprovalRecord
    from ledgerguard.runtime import get_runtime
    from sqlalchemy import select

    with get_runtime().session() as db_session:
        rows = (list_approvals(db_session=db_session, incident_id=incident_id) if incident_id else
                list(db_session.scalars(select(ApprovalRecord))))
        for r in rows:
            db_session.expunge(r)
        return rows


def _timeline(incident_id: str) -> list:
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    with get_runtime().session() as db_session:
        entries = register.get_timeline(db_session=db_session, incident_id=incident_id)
        for e in entries:
            db_session.expunge(e)
        return entries


def test_a_self_approval_is_refused_and_another_persons_approval_resumes_the_run(live_unattended):
    from tests.support.people import answer, wait_for_paused

    requester, other = _approvers()[:2]
    _break("C0002")
    thread, result = _start("C0002", requested_by=requester)

    first = wait_for_paused(timeout=120)
    answer(first, {"approver": requester, "decision": "approve", "reason": "我自己批"})
    # The run refuses it and waits again, with a new form, for someone else.
    second = wait_for_paused(timeout=60, exclude={f"{first.id}:{first.state.state_details.pause_key}"})
    assert second.id == first.id and second.state.state_details.pause_key != first.state.state_details.pause_key
    (pending,) = _approval()
    assert pending.status == "pending" and requester not in pending.approvers
    refused = [e for e in _timeline(pending.incident_id) if e.kind == "approval.refused"]
    assert refused and refused[0].data["why"] == "self" and refused[0].actor == requester

    answer(second, {"approver": other, "decision": "approve", "reason": "暂存账套已核对，记录数与试算平衡一致"})
    thread.join(timeout=180)
    outcome = result["state"].result()
    steps = {s.step_id: s.status for s in outcome.steps}
    assert steps["swap_in"] == "succeeded" and steps["redetect"] == "succeeded"
    assert outcome.status == "mitigated"   # the reconciliation with the client is still a person's
    (approved,) = _approval(outcome.incident_id)
    assert (approved.status, approved.decided_by, approved.via) == ("approved", other, "ui")
    assert approved.reason.startswith("暂存账套已核对")
    kinds = [e.kind for e in _timeline(outcome.incident_id)]
    assert kinds.index("approval.refused") < kinds.index("approval.approved")
    # The approvers were asked by email, with a link to the run's form.
    asks = [m for m in live_unattended["sink"].messages() if "[待审批]" in str(m["subject"])]
    assert asks and "/runs/flow-run/" in asks[0].get_body(preferencelist=("plain",)).get_content()


def test_a_second_run_of_the_incident_leaves_a_waiting_approval_to_the_first(live_unattended):
    """A sweep's signal joins the incident while its first run waits for the swap-in's approval:
    the second run must not ask the approvers again, nor wait beside the first."""
    from flows import ledger_loss
    from ledgerguard.response.models import LedgerLossRequest
    from tests.support.people import answer, wait_for_paused

    requester, other = _approvers()[:2]
    _break("C0004")
    thread, result = _start("C0004", requested_by=requester)
    paused = wait_for_paused(timeout=120)
    (pending,) = _approval()
    asked = len([m for m in live_unattended["sink"].messages() if "[待审批]" in str(m["subject"])])
    assert asked == len(pending.approvers)

    second = ledger_loss(LedgerLossRequest(client_id="C0004", requested_by="ledger-sweep", source="sweep"))
    assert second.incident_id == pending.incident_id and not second.incident_created
    steps = {s.step_id: s.status for s in second.steps}
    assert steps["swap_in"] == "waiting" and "redetect" not in steps
    assert len(_approval()) == 1
    assert len([m for m in live_unattended["sink"].messages() if "[待审批]" in str(m["subject"])]) == asked
    waiting = [e for e in _timeline(pending.incident_id) if e.kind == "approval.waiting_elsewhere"]
    assert len(waiting) == 1 and waiting[0].data["run"] == pending.flow_run_id

    answer(paused, {"approver": other, "decision": "approve", "reason": "已核对"})
    thread.join(timeout=180)
    first = {s.step_id: s.status for s in result["state"].result().steps}
    assert first["swap_in"] == "succeeded" and first["redetect"] == "succeeded"


def test_a_rejection_stops_the_runbook_at_that_step(live_unattended):
    from tests.support.people import answer, wait_for_paused

    approver = _approvers()[0]
    _break("C0003")
    thread, result = _start("C0003", requested_by="alertmanager")
    answer(wait_for_paused(timeout=120), {"approver": approver, "decision": "reject",
                                          "reason": "暂存账套少了上周的凭证，先不要替换"})
    thread.join(timeout=180)
    state = result["state"]
    assert state.is_completed(), state.message   # a decision, not a failure
    outcome = state.result()
    steps = {s.step_id: s.status for s in outcome.steps}
    assert steps["swap_in"] == "rejected" and "redetect" not in steps   # catalog: on_reject stop
    assert outcome.status == "open"                                      # nothing pretends it is fixed
    (rejected,) = _approval(outcome.incident_id)
    assert (rejected.status, rejected.decided_by) == ("rejected", approver)
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    with get_runtime().session() as db_session:
        action = register.get_action(db_session=db_session, incident_id=outcome.incident_id, step_id="swap_in")
        assert action.status == "rejected" and "先不要替换" in action.error


@pytest.fixture
def short_approval_catalog(lg_home, monkeypatch, tmp_path):
    """The catalog with a 3-second approval wait on the swap-in."""
    from ledgerguard.config import PROJECT_ROOT, reset_settings
    from ledgerguard.runtime import reset_runtime

    catalog = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", catalog)
    path = catalog / "ledger_loss.yaml"
    entry = yaml.safe_load(path.read_text(encoding="utf-8"))
    next(s for s in entry["runbook"] if s["id"] == "swap_in")["approval_minutes"] = 0.05
    path.write_text(yaml.safe_dump(entry, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("LEDGERGUARD_CATALOG_DIR", str(catalog))
    reset_settings()
    reset_runtime()
    return catalog


def test_nobody_approving_in_time_is_recorded_and_pages_the_duty_lead(short_approval_catalog, live_unattended):
    from flows import ledger_loss
    from ledgerguard.response.models import LedgerLossRequest

    _break("C0004")
    state = ledger_loss(LedgerLossRequest(client_id="C0004", source="test"), return_state=True)
    assert state.is_completed(), state.message   # the wait ended; the run did not hang or fail
    outcome = state.result()
    assert {s.step_id: s.status for s in outcome.steps}["swap_in"] == "rejected"
    (missed,) = _approval(outcome.incident_id)
    assert missed.status == "timed_out" and missed.decided_by is None
    assert "approval.timed_out" in [e.kind for e in _timeline(outcome.incident_id)]
    pages = [m for m in live_unattended["sink"].messages() if "[审批超时]" in str(m["subject"])]
    assert pages, "the duty lead was paged"
