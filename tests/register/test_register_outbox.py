"""Revision 0002: intake requests, the outbox of Prefect events, and accept_signal — SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from ledgerguard.models import Signal
from ledgerguard.register import service
from ledgerguard.register.db import VERSION_TABLE, current_revision, downgrade, make_engine, session_factory, \
    session_scope, upgrade
from ledgerguard.register.models import Base, OutboxItem, SignalRecord, utcnow


def _event(n: int = 0) -> dict:
    return {"occurred": "2025-03-03T02:00:00+00:00", "event": "ledgerguard.signal.firing",
            "resource": {"prefect.resource.id": f"ledgerguard.signal.ledger_loss.k{n}"}, "payload": {"n": n}}


def test_0002_upgrades_and_downgrades_and_matches_the_models(empty_url):
    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0001")
        with engine.begin() as conn:  # a signal written before the intake existed survives 0002
            conn.execute(text(
                "INSERT INTO signals (id, source, emergency_type, resource, labels, dedup_key, observed_at, "
                "received_at, drill, summary, payload) VALUES ('s0', 't', 'a', 'b', '{}', 'a:b', "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, false, '', '{}')"))
        upgrade(engine, "0002")
        assert current_revision(engine) == "0002"
        insp = inspect(engine)
        assert {"intake_requests", "outbox"} <= set(insp.get_table_names())
        assert {"action", "status", "fingerprint", "group_key"} <= {c["name"] for c in insp.get_columns("signals")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT status FROM signals")).scalar() is None
        downgrade(engine, "0001")
        assert current_revision(engine) == "0001"
        assert "outbox" not in inspect(engine).get_table_names()
        assert "status" not in {c["name"] for c in inspect(engine).get_columns("signals")}
        upgrade(engine, "0002")
        assert current_revision(engine) == "0002"
    finally:
        engine.dispose()


def test_enqueue_claim_deliver(engine):
    with session_scope(engine) as s:
        sig = service.record_signal(db_session=s, signal=Signal(source="t", emergency_type="ledger_loss",
                                                                 resource="ledger:C1"))
        first = service.enqueue_outbox(db_session=s, signal_id=sig.id, payload=_event(1))
        second = service.enqueue_outbox(db_session=s, payload=_event(2))
        later = service.enqueue_outbox(db_session=s, payload=_event(3), not_before=utcnow() + timedelta(hours=1))
        assert first.payload["id"] == str(uuid.UUID(hex=first.id)) and first.status == "pending"
    with session_scope(engine) as s:
        claimed = service.claim_outbox_batch(db_session=s)
        assert [c.id for c in claimed] == [first.id, second.id]  # oldest first; the delayed one waits
        assert service.claim_outbox_batch(db_session=s, limit=1)[0].id == first.id
        service.mark_outbox_delivered(db_session=s, item_id=first.id)
    with session_scope(engine) as s:
        row = s.get(OutboxItem, first.id)
        assert row.status == "delivered" and row.delivered_at is not None and row.attempts == 1
        assert [c.id for c in service.claim_outbox_batch(db_session=s)] == [second.id]
        assert [c.id for c in service.claim_outbox_batch(db_session=s, now=utcnow() + timedelta(hours=2))] == [
            second.id, later.id]
        stats = service.outbox_stats(db_session=s)
        assert (stats["pending"], stats["delivered"], stats["due"], stats["total"]) == (2, 1, 1, 3)
        assert stats["oldest_undelivered_age_seconds"] >= 0


def test_failed_rows_back_off_and_park_after_max_attempts(engine):
    with session_scope(engine) as s:
        item = service.enqueue_outbox(db_session=s, payload=_event())
    with session_scope(engine) as s:
        row = service.mark_outbox_failed(db_session=s, item_id=item.id, error="HTTP 503", retry_in_seconds=60)
        assert (row.status, row.attempts, row.last_error) == ("failed", 1, "HTTP 503")
        assert service.claim_outbox_batch(db_session=s) == []
        assert [c.id for c in service.claim_outbox_batch(db_session=s, now=utcnow() + timedelta(seconds=61))] == [
            item.id]
        for _ in range(3):
            row = service.mark_outbox_failed(db_session=s, item_id=item.id, error="x", retry_in_seconds=0,
                                             max_attempts=4)
        assert row.status == "parked" and row.attempts == 4
        assert service.claim_outbox_batch(db_session=s, now=utcnow() + timedelta(days=1)) == []
        assert service.outbox_stats(db_session=s)["parked"] == 1
    with session_scope(engine) as s:
        other = service.enqueue_outbox(db_session=s, payload=_event())
        service.mark_outbox_delivered(db_session=s, item_id=other.id)
        assert service.mark_outbox_failed(db_session=s, item_id=other.id, error="late", retry_in_seconds=1).status \
            == "delivered"
        with pytest.raises(service.NotFound):
            service.mark_outbox_delivered(db_session=s, item_id="missing")


@pytest.mark.postgres
def test_two_relays_never_claim_the_same_row_on_postgresql(engine, backend):
    if backend != "postgresql":
        pytest.skip("SKIP LOCKED is PostgreSQL's; SQLite serialises relays with BEGIN IMMEDIATE")
    with session_scope(engine) as s:
        ids = {service.enqueue_outbox(db_session=s, payload=_event(n)).id for n in range(4)}
    a, b = session_factory(engine)(), session_factory(engine)()
    try:
        got_a = {r.id for r in service.claim_outbox_batch(db_session=a, limit=2)}
        got_b = {r.id for r in service.claim_outbox_batch(db_session=b, limit=10)}
        assert len(got_a) == 2 and len(got_b) == 2 and got_a | got_b == ids and not got_a & got_b
    finally:
        a.rollback(), b.rollback(), a.close(), b.close()


def test_intake_request_signature_is_unique(engine):
    with session_scope(engine) as s:
        service.record_intake_request(db_session=s, source="alertmanager", token_id="prom", body_sha256="0" * 64,
                                      status="accepted", http_status=202, signature="ab" * 32)
        assert service.signature_seen(db_session=s, signature="ab" * 32)
    with pytest.raises(IntegrityError):
        with session_scope(engine) as s:
            service.record_intake_request(db_session=s, source="alertmanager", token_id="prom",
                                          body_sha256="0" * 64, status="accepted", http_status=202,
                                          signature="ab" * 32)


def test_accept_signal_queues_joins_and_resolves(engine):
    signal = Signal(source="sweep", emergency_type="ledger_loss", resource="ledger:C0001", summary="rows gone")
    with session_scope(engine) as s:
        first = service.accept_signal(db_session=s, signal=signal, actor="nightly-sweep")
        assert first.status == "queued" and first.outbox.payload["payload"]["request"]["client_id"] == "C0001"
        assert first.outbox.payload["payload"]["request"]["requested_by"] == "nightly-sweep"
        again = service.accept_signal(db_session=s, signal=signal)
        assert again.status == "coalesced" and again.outbox is None
        incident, _ = service.open_or_join_incident(db_session=s, signal=signal, title="t")
        service.mark_outbox_delivered(db_session=s, item_id=first.outbox.id)
        joined = service.accept_signal(db_session=s, signal=signal)
        assert joined.status == "queued" and joined.incident_id == incident.id
        kinds = [e.kind for e in service.get_timeline(db_session=s, incident_id=incident.id)]
        assert kinds == ["opened", "signal_joined"]
        done = service.accept_signal(db_session=s, signal=signal, action="resolve", actor="prometheus")
        assert done.incident_status == "resolved" and done.outbox.payload["event"] == "ledgerguard.signal.resolved"
        unrouted = service.accept_signal(db_session=s, signal=signal, routed=False)
        assert unrouted.status == "unrouted" and unrouted.outbox is None
        with pytest.raises(ValueError):
            service.accept_signal(db_session=s, signal=signal, action="explode")
