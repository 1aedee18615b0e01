"""Incidents: one open incident per dedup key, races, status changes, assessment, findings."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from ledgerguard.models import (
    Assessment,
    EvidenceItem,
    Finding,
    IncidentStatus,
    Level,
    Obligation,
    Priority,
    Rating,
    RegulatoryGrade,
    Signal,
    SlaTargets,
)
from ledgerguard.register import service
from ledgerguard.register.db import session_factory, session_scope
from ledgerguard.register.models import Incident, SignalRecord


def make_signal(resource: str = "ledger:C0001", **kw) -> Signal:
    return Signal(source="test", emergency_type="ledger_loss", resource=resource, summary="rows vanished", **kw)


def test_second_signal_joins_and_after_resolve_a_new_incident_opens(session):
    first, opened = service.open_or_join_incident(db_session=session, signal=make_signal(), title="Ledger lost")
    assert opened and first.status == "open" and first.open_dedup_key == first.dedup_key == "ledger_loss:ledger:C0001"
    session.commit()

    second, opened2 = service.open_or_join_incident(db_session=session, signal=make_signal(), title="again")
    assert not opened2 and second.id == first.id
    assert len(service.list_signals(db_session=session, incident_id=first.id)) == 2
    kinds = [e.kind for e in service.get_timeline(db_session=session, incident_id=first.id)]
    assert kinds == ["opened", "signal_joined"]

    other, opened3 = service.open_or_join_incident(db_session=session, signal=make_signal("ledger:C0002"), title="x")
    assert opened3 and other.id != first.id

    service.set_status(db_session=session, incident_id=first.id, status=IncidentStatus.RESOLVED, actor="duty-lead")
    session.commit()
    assert first.open_dedup_key is None and first.resolved_at is not None
    assert service.find_open_incident(db_session=session, dedup_key=first.dedup_key) is None

    third, opened4 = service.open_or_join_incident(db_session=session, signal=make_signal(), title="new one")
    assert opened4 and third.id != first.id
    session.commit()
    assert session.scalar(select(func.count()).select_from(Incident)) == 3


def test_racing_opens_from_two_sessions_end_in_one_incident(engine):
    """Session A inserts and holds its transaction; B races it; A commits; B must join A's row."""
    factory = session_factory(engine)
    a = factory()
    results: dict[str, object] = {}

    def racer() -> None:
        try:
            with session_scope(engine) as b:
                incident, opened = service.open_or_join_incident(db_session=b, signal=make_signal(), title="B")
                results["b"] = (incident.id, opened)
        except Exception as exc:  # pragma: no cover - reported below
            results["error"] = exc

    try:
        incident_a, opened_a = service.open_or_join_incident(db_session=a, signal=make_signal(), title="A")
        assert opened_a
        thread = threading.Thread(target=racer)
        thread.start()
        time.sleep(0.5)  # B is now blocked (PostgreSQL: on the unique index; SQLite: on the write lock)
        a.commit()
        thread.join(timeout=60)
        assert not thread.is_alive()
    finally:
        a.close()
    assert "error" not in results, results.get("error")
    assert results["b"] == (incident_a.id, False)
    with session_scope(engine) as s:
        assert s.scalar(select(func.count()).select_from(Incident)) == 1
        assert s.scalar(select(func.count()).select_from(SignalRecord)) == 2
        from ledgerguard.register.audit import verify_chain

        assert verify_chain(db_session=s) == []


def test_many_racing_threads_open_one_incident(engine):
    barrier = threading.Barrier(6)
    outcomes: list[tuple[str, bool]] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=10)
            with session_scope(engine) as s:
                incident, opened = service.open_or_join_incident(db_session=s, signal=make_signal(), title="race")
                outcomes.append((incident.id, opened))
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len({i for i, _ in outcomes}) == 1
    assert sum(opened for _, opened in outcomes) == 1


def test_integrity_error_path_joins_the_other_incident(session, engine, monkeypatch):
    """Simulate losing the race deterministically: the lookup misses once, the insert clashes."""
    with session_scope(engine) as other:
        winner, _ = service.open_or_join_incident(db_session=other, signal=make_signal(), title="winner")

    real = service.find_open_incident
    calls = {"n": 0}

    def flaky(**kw):
        calls["n"] += 1
        return None if calls["n"] == 1 else real(**kw)

    monkeypatch.setattr(service, "find_open_incident", flaky)
    incident, opened = service.open_or_join_incident(db_session=session, signal=make_signal(), title="loser")
    assert (incident.id, opened) == (winner.id, False)
    session.commit()  # the transaction is still usable after the rolled-back SAVEPOINT
    assert session.scalar(select(func.count()).select_from(Incident)) == 1


def test_set_status_timestamps_and_timeline(session):
    incident, _ = service.open_or_join_incident(db_session=session, signal=make_signal(), title="t")
    service.set_status(db_session=session, incident_id=incident.id, status="acknowledged", actor="lead", note="on it")
    ack_at = incident.acknowledged_at
    assert ack_at is not None and ack_at.tzinfo is not None
    # same status again: nothing changes, nothing appended
    service.set_status(db_session=session, incident_id=incident.id, status="acknowledged", actor="lead")
    service.set_status(db_session=session, incident_id=incident.id, status=IncidentStatus.MITIGATED, actor="lead")
    service.set_status(db_session=session, incident_id=incident.id, status=IncidentStatus.CLOSED, actor="lead")
    session.commit()
    assert incident.status == "closed" and incident.closed_at and incident.mitigated_at
    assert incident.resolved_at is None  # skipped statuses keep no timestamp
    entries = service.get_timeline(db_session=session, incident_id=incident.id)
    assert [e.kind for e in entries] == ["opened", "status", "status", "status"]
    assert entries[1].data == {"from": "open", "to": "acknowledged", "note": "on it"}
    assert entries[1].actor == "lead" and "on it" in entries[1].message
    assert incident.timeline_count == 4 and incident.timeline_head == entries[-1].hash


def test_reopen_conflicts_when_another_incident_holds_the_key(session):
    first, _ = service.open_or_join_incident(db_session=session, signal=make_signal(), title="1")
    service.set_status(db_session=session, incident_id=first.id, status="resolved", actor="x")
    second, opened = service.open_or_join_incident(db_session=session, signal=make_signal(), title="2")
    assert opened
    with pytest.raises(service.Conflict, match=second.id):
        service.set_status(db_session=session, incident_id=first.id, status="open", actor="x")
    service.set_status(db_session=session, incident_id=second.id, status="closed", actor="x")
    service.set_status(db_session=session, incident_id=first.id, status="open", actor="x")  # now allowed
    session.commit()
    assert first.open_dedup_key == first.dedup_key


def test_get_incident_not_found_names_the_id(session):
    with pytest.raises(service.NotFound, match="nope-123"):
        service.get_incident(db_session=session, incident_id="nope-123")


def _assessment(deadline: datetime, to: str = "公安机关") -> Assessment:
    return Assessment(
        impact=Rating.H, urgency=Rating.M, priority=Priority.P2, level=Level.TWO,
        regulatory_grade=RegulatoryGrade.LARGE,
        obligations=[Obligation(id="pipl_notify", law="个人信息保护法 第57条", action="通知", to=to,
                                deadline=deadline, immediate=True)],
        sla=SlaTargets(ack_minutes=15, resolve_hours=4),
    )


def test_apply_assessment_and_obligation_upsert(session):
    incident, _ = service.open_or_join_incident(db_session=session, signal=make_signal(), title="t")
    deadline = datetime(2030, 1, 2, 8, 0, tzinfo=timezone(timedelta(hours=8)))
    service.apply_assessment(db_session=session, incident_id=incident.id, assessment=_assessment(deadline),
                             affected_clients=["C0001", "C0002", "C0001"])
    session.commit()
    assert (incident.level, incident.priority, incident.impact, incident.urgency) == (2, "P2", "H", "M")
    assert incident.regulatory_grade == "较大"
    assert incident.affected_clients == ["C0001", "C0002"]
    assert Assessment.model_validate(incident.assessment).level == Level.TWO

    [ob] = service.list_obligations(db_session=session, incident_id=incident.id)
    assert ob.deadline == deadline and ob.recipient == "公安机关" and ob.status == "open" and ob.immediate
    service.set_obligation_status(db_session=session, incident_id=incident.id, obligation_id="pipl_notify",
                                  status="met")
    # re-applying updates the row in place and keeps its status
    later = deadline + timedelta(hours=1)
    service.apply_assessment(db_session=session, incident_id=incident.id, assessment=_assessment(later, "网信部门"),
                             affected_clients=["C0001"])
    session.commit()
    [ob] = service.list_obligations(db_session=session, incident_id=incident.id)
    assert ob.deadline == later and ob.recipient == "网信部门" and ob.status == "met" and ob.met_at
    assert service.list_obligations(db_session=session, status="open") == []


def test_findings_flow_runs_and_lists(session):
    incident, _ = service.open_or_join_incident(
        db_session=session, signal=make_signal(drill=True), title="t", flow_run_id="run-1", flow_name="ledger-loss"
    )
    finding = Finding(detector="row_count", resource="ledger:C0001", summary="rows dropped",
                      facts={"clients_affected": 3, "pii_leak": False},
                      evidence=[EvidenceItem(kind="row_count", description="before/after", data={"before": 10})])
    service.record_finding(db_session=session, incident_id=incident.id, finding=finding)
    service.link_flow_run(db_session=session, incident_id=incident.id, flow_run_id="run-1", flow_name="x")
    service.link_flow_run(db_session=session, incident_id=incident.id, flow_run_id="run-2", flow_name="sweep")
    session.commit()
    [f] = service.list_findings(db_session=session, incident_id=incident.id)
    assert f.facts == {"clients_affected": 3, "pii_leak": False}
    assert f.evidence[0]["data"] == {"before": 10} and f.observed_at.tzinfo is not None
    runs = service.list_flow_runs(db_session=session, incident_id=incident.id)
    assert [(r.flow_run_id, r.flow_name) for r in runs] == [("run-1", "ledger-loss"), ("run-2", "sweep")]
    assert service.get_timeline(db_session=session, incident_id=incident.id)[0].flow_run_id == "run-1"

    assert [i.id for i in service.list_incidents(db_session=session, drill=True)] == [incident.id]
    assert service.list_incidents(db_session=session, drill=False) == []
    assert len(service.list_incidents(db_session=session, status="open", emergency_type="ledger_loss")) == 1
    assert service.list_incidents(db_session=session, status=["resolved", "closed"]) == []
    assert len(service.list_incidents(db_session=session, open_only=True)) == 1
