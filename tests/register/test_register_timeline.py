"""The hash-chained timeline: intact chains verify, tampering is named, the ORM refuses edits."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import delete, text, update

from ledgerguard.models import Signal
from ledgerguard.register import service
from ledgerguard.register.audit import verify_chain
from ledgerguard.register.db import session_scope
from ledgerguard.register.models import GENESIS_HASH, AppendOnlyError, TimelineEntry


def _incident_with_entries(session, n: int = 4) -> str:
    """An incident whose timeline holds ``n`` entries (seq 1..n)."""
    signal = Signal(source="test", emergency_type="backup_failure", resource="backups:nightly")
    incident, _ = service.open_or_join_incident(db_session=session, signal=signal, title="备份失败")
    for i in range(2, n + 1):
        service.append_timeline(db_session=session, incident_id=incident.id, stage="notify", kind="note",
                                message=f"第{i}条 entry", data={"i": i, "中文": ["值", 1.5, None]})
    session.commit()
    return incident.id


def test_chain_verifies_and_links(session):
    incident_id = _incident_with_entries(session, 5)
    entries = service.get_timeline(db_session=session, incident_id=incident_id)
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    assert all(e.compute_hash() == e.hash for e in entries)
    session.expire_all()
    assert verify_chain(db_session=session) == []


def test_chain_spans_incidents(session):
    a = _incident_with_entries(session, 2)
    sig = Signal(source="t", emergency_type="cert_expiry", resource="cert:tax")
    b, _ = service.open_or_join_incident(db_session=session, signal=sig, title="证书")
    service.append_timeline(db_session=session, incident_id=a, stage="record", kind="note", message="a again")
    session.commit()
    assert [e.seq for e in service.get_timeline(db_session=session, incident_id=a)] == [1, 2, 4]
    assert [e.seq for e in service.get_timeline(db_session=session, incident_id=b.id)] == [3]
    assert verify_chain(db_session=session) == []


def test_raw_sql_edit_is_reported_as_edited(session, engine):
    incident_id = _incident_with_entries(session)
    with engine.begin() as conn:
        conn.execute(text("UPDATE timeline_entries SET message = 'nothing happened' WHERE seq = 2"))
    session.expire_all()
    problems = verify_chain(db_session=session)
    assert [(p.problem, p.seq, p.incident_id) for p in problems] == [("edited", 2, incident_id)]
    assert "#2" in str(problems[0]) and "edited" in str(problems[0])


def test_raw_sql_edit_of_the_hash_breaks_the_next_link(session, engine):
    _incident_with_entries(session)
    with engine.begin() as conn:
        conn.execute(text("UPDATE timeline_entries SET hash = :h WHERE seq = 2"), {"h": "f" * 64})
    problems = verify_chain(db_session=session)
    assert {(p.problem, p.seq) for p in problems} == {("edited", 2), ("broken link", 3)}


def test_raw_sql_delete_in_the_middle_is_reported_as_deleted(session, engine):
    _incident_with_entries(session)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM timeline_entries WHERE seq = 2"))
    problems = verify_chain(db_session=session)
    assert len(problems) == 1, [str(p) for p in problems]
    assert problems[0].problem == "deleted" and problems[0].missing == (2,) and problems[0].seq == 2
    assert "#2" in str(problems[0]) and "deleted" in str(problems[0])


def test_raw_sql_delete_of_the_last_entry_is_reported(session, engine):
    incident_id = _incident_with_entries(session)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM timeline_entries WHERE seq = 4"))
    problems = verify_chain(db_session=session)
    assert [(p.problem, p.incident_id) for p in problems] == [("tail deleted", incident_id)]
    assert "tail deleted" in str(problems[0])


def test_deleting_the_first_entry_is_reported(session, engine):
    _incident_with_entries(session)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM timeline_entries WHERE seq = 1"))
    problems = verify_chain(db_session=session)
    assert [(p.problem, p.missing) for p in problems] == [("deleted", (1,))]


def test_orm_update_and_delete_of_an_entry_raise(session):
    incident_id = _incident_with_entries(session, 2)
    entry = service.get_timeline(db_session=session, incident_id=incident_id)[0]
    entry.message = "rewritten"
    with pytest.raises(AppendOnlyError):
        session.flush()
    session.rollback()

    entry = service.get_timeline(db_session=session, incident_id=incident_id)[0]
    session.delete(entry)
    with pytest.raises(AppendOnlyError):
        session.flush()
    session.rollback()

    with pytest.raises(AppendOnlyError):
        session.execute(update(TimelineEntry).values(message="x"))
    session.rollback()
    with pytest.raises(AppendOnlyError):
        session.execute(delete(TimelineEntry).where(TimelineEntry.seq == 1))
    session.rollback()
    assert verify_chain(db_session=session) == []


def test_concurrent_appends_never_fork_the_chain(engine):
    with session_scope(engine) as s:
        incident_id = _incident_with_entries(s, 1)
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def writer(n: int) -> None:
        try:
            barrier.wait(timeout=10)
            for i in range(8):
                with session_scope(engine) as s:
                    service.append_timeline(db_session=s, incident_id=incident_id, stage="remediate",
                                            kind="note", message=f"writer {n} entry {i}")
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    with session_scope(engine) as s:
        entries = service.get_timeline(db_session=s, incident_id=incident_id)
        assert [e.seq for e in entries] == list(range(1, 34))
        incident = service.get_incident(db_session=s, incident_id=incident_id)
        assert incident.timeline_count == 33 and incident.timeline_head == entries[-1].hash
        assert verify_chain(db_session=s) == []
