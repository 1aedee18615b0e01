"""The ledger-loss flow end to end under Prefect: real ledger, real backups, real SMTP."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.prefect


def _break_ledger(client_id: str, count: int = 5) -> None:
    from ledgerguard.detectors import get_injector
    from ledgerguard.detectors.base import InjectionContext
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=runtime.agency, resource=f"ledger:{client_id}", scratch_dir=runtime.settings.scratch_dir), count=count)


def _non_vip_client() -> str:
    from ledgerguard.runtime import get_runtime

    clients = get_runtime().agency.clients
    return str(clients[~clients["vip"].astype(bool)].iloc[0]["client_id"])


def test_broken_ledger_is_detected_graded_notified_restored_and_reported(live):
    from flows import ledger_loss
    from ledgerguard.ledgers import ledger_stats
    from ledgerguard.register import service as register
    from ledgerguard.response.models import LedgerLossRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    client_id = _non_vip_client()
    healthy = ledger_stats(runtime.agency.ledger_path(client_id))
    _break_ledger(client_id, count=5)
    assert ledger_stats(runtime.agency.ledger_path(client_id)).vouchers == healthy.vouchers - 5

    state = ledger_loss(LedgerLossRequest(client_id=client_id, source="test"), return_state=True)
    outcome = state.result()

    assert outcome.incident_created and outcome.incident_id
    assert outcome.level == 4, outcome.rationale  # scenario C: one client, restorable, deadline far
    # Automatic steps done; the manual reconciliation stays open for a person.
    assert outcome.status == "mitigated"
    entry = runtime.catalog.get("ledger_loss")
    verify_step = next(s.id for s in entry.runbook if s.action == "verify.redetect")
    assert {s.step_id: s.status for s in outcome.steps}[verify_step] == "succeeded"
    # Restored to the last good backup; vouchers entered after it are the manual step's job.
    from ledgerguard.backups import newest_good_backup

    backed_up = newest_good_backup(runtime.agency).file_for(client_id)
    restored = ledger_stats(runtime.agency.ledger_path(client_id))
    assert restored.vouchers == backed_up.vouchers and restored.lines == backed_up.lines
    assert restored.balanced and restored.integrity_ok
    assert list(runtime.agency.ledgers_path.glob(f"{client_id}.sqlite.broken-*")), "broken copy kept as evidence"

    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=outcome.incident_id)
        assert incident.level == 4 and incident.status == "mitigated"
        notes = register.list_notifications(db_session=db_session, incident_id=outcome.incident_id)
        assert notes and all(n.status == "sent" for n in notes)
        actions = {a.step_id: a.status for a in register.list_actions(db_session=db_session,
                                                                      incident_id=outcome.incident_id)}
        assert "open" in actions.values() and "failed" not in actions.values()

    messages = live["sink"].messages()
    reports = [m for m in messages if "运行报告" in str(m["subject"])]
    assert len(reports) >= 1
    report = reports[0]
    attachments = [part.get_filename() for part in report.iter_attachments()]
    assert any(name and name.endswith(".md") for name in attachments), attachments
    html = report.get_body(preferencelist=("html",)).get_content()
    assert "四级" in html and outcome.incident_id in html
    approval_requests = [m for m in messages if "[待审批]" in str(m["subject"])]
    staff = [m for m in messages if m not in reports and m not in approval_requests]
    assert staff and all("四级" in str(m["subject"]) for m in staff)

    # The swap-in waited for a second person, who approved it in the run's form.
    (given,) = live["approvals"]
    assert approval_requests, "the approvers were asked by email"
    with runtime.session() as db_session:
        from ledgerguard.approvals.service import list_approvals

        (approval,) = list_approvals(db_session=db_session, incident_id=outcome.incident_id)
        assert approval.step_id == "swap_in" and approval.status == "approved"
        assert approval.decided_by == given["input"]["approver"] and approval.via == "ui"
        kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=outcome.incident_id)]
        assert kinds.index("approval.requested") < kinds.index("approval.approved") < kinds.index("step.succeeded",
                                                                                                 kinds.index("approval.approved"))


def test_second_run_sends_nothing_twice(live):
    from flows import ledger_loss
    from ledgerguard.response.models import LedgerLossRequest

    client_id = _non_vip_client()
    _break_ledger(client_id, count=3)
    first = ledger_loss(LedgerLossRequest(client_id=client_id, remediate=False, source="test"))
    sent_after_first = len(live["sink"].messages())
    assert sent_after_first >= 2 and first.status == "open"

    second = ledger_loss(LedgerLossRequest(client_id=client_id, remediate=False, source="test"))
    assert second.incident_id == first.incident_id and not second.incident_created
    assert len(live["sink"].messages()) == sent_after_first


def test_flow_run_is_tagged_and_has_artifacts(live):
    from prefect import get_client

    from flows import ledger_loss
    from ledgerguard.response.models import LedgerLossRequest

    client_id = _non_vip_client()
    _break_ledger(client_id, count=2)
    state = ledger_loss(LedgerLossRequest(client_id=client_id, source="test"), return_state=True)
    outcome = state.result()
    with get_client(sync_client=True) as client:
        parent = client.read_flow_run(state.state_details.flow_run_id)
        assert "emergency:ledger_loss" in parent.tags and "level:4" in parent.tags
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[f"postmortem-{outcome.incident_id}", f"timeline-{outcome.incident_id}"])))
        assert {a.key for a in found} == {f"postmortem-{outcome.incident_id}", f"timeline-{outcome.incident_id}"}


def test_healthy_ledger_records_no_incident_and_says_why(live):
    from flows import ledger_loss
    from ledgerguard.register import service as register
    from ledgerguard.response.models import LedgerLossRequest
    from ledgerguard.runtime import get_runtime

    outcome = ledger_loss(LedgerLossRequest(client_id=_non_vip_client(), source="test"))
    assert outcome.status == "no_incident" and outcome.incident_id is None
    assert outcome.clear_reasons
    with get_runtime().session() as db_session:
        assert register.list_incidents(db_session=db_session) == []
    from ledgerguard.channels.contacts import management_recipients

    reports = live["sink"].messages()
    assert len(reports) == len(management_recipients(get_runtime().contacts)) >= 1
    assert all("未发现事件" in str(m["subject"]) for m in reports)


def test_same_flow_with_the_register_on_postgresql(pg_register, live):
    from flows import ledger_loss
    from ledgerguard.register import service as register
    from ledgerguard.register.audit import verify_chain
    from ledgerguard.response.models import LedgerLossRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    assert runtime.engine.dialect.name == "postgresql"
    client_id = _non_vip_client()
    _break_ledger(client_id, count=4)
    outcome = ledger_loss(LedgerLossRequest(client_id=client_id, source="test"))
    assert outcome.level == 4 and outcome.status == "mitigated"
    with runtime.session() as db_session:
        assert register.get_incident(db_session=db_session, incident_id=outcome.incident_id).level == 4
        assert verify_chain(db_session=db_session) == []
    again = ledger_loss(LedgerLossRequest(client_id=client_id, source="test"))
    assert again.incident_id == outcome.incident_id
