"""The four-eyes rule in the register (no Prefect): who may decide, and what is kept."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ledgerguard.approvals.service import (
    ApprovalRefused,
    abandon,
    decide,
    eligible_approvers,
    list_approvals,
    request_approval,
    time_out,
)
from ledgerguard.models import Signal
from ledgerguard.register import service as register


@pytest.fixture
def db_session(lg_home):
    from ledgerguard.runtime import get_runtime

    with get_runtime().session() as session:
        yield session


@pytest.fixture
def incident_id(db_session):
    incident, _ = register.open_or_join_incident(
        db_session=db_session, signal=Signal(source="test", emergency_type="ledger_loss", resource="ledger:C0001"),
        title="ledger")
    return incident.id


def _request(db_session, incident_id, approvers=("b", "c")):
    return request_approval(db_session=db_session, incident_id=incident_id, step_id="swap_in", step_title="swap",
                            requested_by="a", approvers=list(approvers), wait=timedelta(minutes=5))


def test_the_requester_cannot_approve_and_the_refusal_is_kept(db_session, incident_id):
    row = _request(db_session, incident_id, approvers=("a", "b"))  # even if listed by mistake
    with pytest.raises(ApprovalRefused) as refused:
        decide(db_session=db_session, approval_id=row.id, by="a", decision="approve", reason="", via="ui")
    assert refused.value.reason == "self"
    assert row.status == "pending"
    kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident_id)]
    assert kinds[-1] == "approval.refused"


def test_only_an_eligible_person_decides_once(db_session, incident_id):
    row = _request(db_session, incident_id)
    with pytest.raises(ApprovalRefused) as outsider:
        decide(db_session=db_session, approval_id=row.id, by="zz", decision="approve", reason="", via="ui")
    assert outsider.value.reason == "not_an_approver"
    with pytest.raises(ApprovalRefused) as bare:
        decide(db_session=db_session, approval_id=row.id, by="b", decision="reject", reason=" ", via="ui")
    assert bare.value.reason == "no_reason"
    decided = decide(db_session=db_session, approval_id=row.id, by="b", decision="approve", reason="ok", via="ui")
    assert (decided.status, decided.decided_by, decided.reason) == ("approved", "b", "ok")
    with pytest.raises(ApprovalRefused) as again:
        decide(db_session=db_session, approval_id=row.id, by="c", decision="reject", reason="no", via="ui")
    assert again.value.reason == "decided"
    assert time_out(db_session=db_session, approval_id=row.id).status == "approved"   # a decision stands


def test_a_time_out_is_recorded_as_a_miss(db_session, incident_id):
    row = _request(db_session, incident_id)
    assert time_out(db_session=db_session, approval_id=row.id).status == "timed_out"
    entry = register.get_timeline(db_session=db_session, incident_id=incident_id)[-1]
    assert entry.kind == "approval.timed_out" and entry.data["approvers"] == ["b", "c"]


def test_eligible_approvers_leave_out_the_requester(agency):
    contacts = agency.contacts
    manager = next(p for p in contacts.people if "manager" in p.roles)
    eligible = eligible_approvers(contacts=contacts, roles=["manager", "owner"], requested_by=manager.id)
    assert manager.id not in eligible and eligible


def test_one_run_asks_once_per_step_and_a_dead_runs_request_is_void(db_session, incident_id):
    def ask(run):
        return request_approval(db_session=db_session, incident_id=incident_id, step_id="swap_in", step_title="swap",
                                requested_by="a", approvers=["b"], wait=timedelta(minutes=5), flow_run_id=run)

    first = ask("run-1")
    assert ask("run-1").id == first.id   # a retry or a replay of the same run
    decide(db_session=db_session, approval_id=first.id, by="b", decision="approve", reason="", via="ui")
    assert ask("run-1").status == "approved"   # the answer stands for that run
    assert ask("run-2").id != first.id          # another run asks afresh
    assert len(list_approvals(db_session=db_session, incident_id=incident_id)) == 2
    kinds = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident_id)]
    assert kinds.count("approval.requested") == 2

    orphan = list_approvals(db_session=db_session, incident_id=incident_id)[-1]
    void = abandon(db_session=db_session, approval_id=orphan.id, reason="run-2 crashed")
    assert (void.status, void.reason) == ("abandoned", "run-2 crashed")
    assert abandon(db_session=db_session, approval_id=first.id, reason="x").status == "approved"  # decided stays
    assert [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident_id)][-1] == \
        "approval.abandoned"
