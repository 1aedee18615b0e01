"""Idempotent notifications, runbook actions, and tz-aware datetimes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard.models import ActionStatus, Signal, idempotency_key
from ledgerguard.register import service
from ledgerguard.register.db import session_scope
from ledgerguard.register.models import SignalRecord


def _incident(session) -> str:
    signal = Signal(source="test", emergency_type="ransomware", resource="fileserver:share")
    incident, _ = service.open_or_join_incident(db_session=session, signal=signal, title="勒索软件")
    session.commit()
    return incident.id


def _claim(session, key: str, incident_id: str, flow_run_id: str | None = None):
    return service.claim_notification(
        db_session=session, key=key, incident_id=incident_id, stage="notify", recipient="zhang.san",
        channel="email", step="0", template="notify_incident", subject="[一级] 勒索软件", flow_run_id=flow_run_id,
    )


def test_claim_returns_none_after_sent(engine):
    with session_scope(engine) as s:
        incident_id = _incident(s)
        key = idempotency_key(incident_id=incident_id, stage="notify", recipient="zhang.san", step="0")
        row = _claim(s, key, incident_id, flow_run_id="run-1")
        assert row is not None and row.attempts == 1 and row.status == "pending" and row.flow_run_id == "run-1"
    with session_scope(engine) as s:
        sent = service.mark_notification_sent(db_session=s, key=key)
        assert sent.status == "sent" and sent.sent_at is not None
    with session_scope(engine) as s:
        assert _claim(s, key, incident_id) is None
        [row] = service.list_notifications(db_session=s, incident_id=incident_id, status="sent")
        assert row.attempts == 1


def test_claim_after_failed_returns_the_row_again(engine):
    with session_scope(engine) as s:
        incident_id = _incident(s)
        row = _claim(s, "k-1", incident_id)
        assert row.attempts == 1
    with session_scope(engine) as s:
        failed = service.mark_notification_failed(db_session=s, key="k-1", error="SMTP 421")
        assert failed.status == "failed" and failed.last_error == "SMTP 421"
        assert [n.idempotency_key for n in service.list_notifications(db_session=s, status="failed")] == ["k-1"]
    with session_scope(engine) as s:
        again = _claim(s, "k-1", incident_id)
        assert again is not None and again.attempts == 2 and again.status == "pending"
        assert again.id == row.id
    with session_scope(engine) as s:
        service.mark_notification_sent(db_session=s, key="k-1")
        assert _claim(s, "k-1", incident_id) is None
        assert len(service.list_notifications(db_session=s)) == 1


def test_notification_without_incident_and_unknown_key(session):
    row = service.claim_notification(db_session=session, key="report-2030-01", incident_id=None, stage="record",
                                     recipient="owner", channel="email", step="report", template="report",
                                     subject="月报")
    assert row is not None and row.incident_id is None
    with pytest.raises(service.NotFound, match="no-such-key"):
        service.mark_notification_sent(db_session=session, key="no-such-key")


def test_runbook_actions(session):
    incident_id = _incident(session)
    assert service.get_action(db_session=session, incident_id=incident_id, step_id="isolate") is None
    a = service.start_action(db_session=session, incident_id=incident_id, step_id="isolate", title="隔离主机",
                             kind="automatic", flow_run_id="run-1")
    assert (a.attempts, a.status, a.flow_run_id) == (1, "pending", "run-1") and a.started_at is not None
    service.finish_action(db_session=session, incident_id=incident_id, step_id="isolate",
                          status=ActionStatus.FAILED, error="timeout")
    again = service.start_action(db_session=session, incident_id=incident_id, step_id="isolate", title="隔离主机",
                                 kind="automatic")
    assert again.id == a.id and again.attempts == 2 and again.error is None and again.finished_at is None
    done = service.finish_action(db_session=session, incident_id=incident_id, step_id="isolate",
                                 status="succeeded", output={"hosts": ["fs01"], "at": datetime(2030, 1, 1)})
    assert done.status == "succeeded" and done.output == {"hosts": ["fs01"], "at": "2030-01-01T00:00:00"}

    manual = service.start_action(db_session=session, incident_id=incident_id, step_id="call_police", title="报警",
                                  kind="manual")
    assert manual.status == "open"
    session.commit()
    assert [x.step_id for x in service.list_actions(db_session=session, incident_id=incident_id)] == [
        "isolate", "call_police"]
    with pytest.raises(service.NotFound):
        service.finish_action(db_session=session, incident_id=incident_id, step_id="never", status="succeeded")


def test_tz_aware_datetimes_round_trip(engine):
    shanghai = timezone(timedelta(hours=8))
    observed = datetime(2030, 3, 15, 23, 59, 58, 123456, tzinfo=shanghai)
    naive = datetime(2030, 3, 15, 15, 59, 58, 123456)  # taken to be UTC
    with session_scope(engine) as s:
        a = service.record_signal(db_session=s,
                                  signal=Signal(source="t", emergency_type="x", resource="r", observed_at=observed))
        b = service.record_signal(db_session=s,
                                  signal=Signal(source="t", emergency_type="x", resource="r", observed_at=naive))
        ids = (a.id, b.id)
    with session_scope(engine) as s:
        ra, rb = (s.get(SignalRecord, i) for i in ids)
        for value in (ra.observed_at, rb.observed_at, ra.received_at):
            assert value.tzinfo is not None and value.utcoffset() == timedelta(0)
        assert ra.observed_at == observed
        assert ra.observed_at.microsecond == 123456
        assert rb.observed_at == naive.replace(tzinfo=timezone.utc) == observed
