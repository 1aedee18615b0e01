"""Alembic migrations: upgrade head creates the schema the ORM expects; downgrade base removes it."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from ledgerguard.register.db import VERSION_TABLE, current_revision, downgrade, make_engine, upgrade
from ledgerguard.register.models import ALL_TABLES, Base

HEAD = "0007"  # the newest file under ledgerguard/register/migrations/versions


def test_upgrade_head_creates_all_tables_and_downgrade_base_drops_them(empty_url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # script_location must not depend on the working directory
    engine = make_engine(empty_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == HEAD
        tables = set(inspect(engine).get_table_names())
        assert set(ALL_TABLES) <= tables
        assert VERSION_TABLE in tables

        upgrade(engine)  # idempotent at head
        assert current_revision(engine) == HEAD

        downgrade(engine, "base")
        remaining = set(inspect(engine).get_table_names())
        assert not set(ALL_TABLES) & remaining
        assert current_revision(engine) is None

        upgrade(engine)  # and back up again
        assert set(ALL_TABLES) <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_accepts_a_url(empty_url):
    upgrade(empty_url)
    assert current_revision(empty_url) == HEAD


def test_migration_matches_the_orm_models(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "version_table": VERSION_TABLE})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_unique_constraints_exist(engine):
    insp = inspect(engine)

    def uniques(table: str) -> set[tuple[str, ...]]:
        found = {tuple(u["column_names"]) for u in insp.get_unique_constraints(table)}
        found |= {tuple(i["column_names"]) for i in insp.get_indexes(table) if i.get("unique")}
        return found

    assert ("open_dedup_key",) in uniques("incidents")
    assert ("seq",) in uniques("timeline_entries")
    assert ("idempotency_key",) in uniques("notifications")
    assert ("incident_id", "step_id") in uniques("runbook_actions")
    assert ("incident_id", "obligation_id") in uniques("obligations")
    assert insp.get_pk_constraint("incident_flow_runs")["constrained_columns"] == ["incident_id", "flow_run_id"]


def test_get_engine_is_cached_per_url_and_migrates_once(empty_url):
    from ledgerguard.register.db import dispose_engines, get_engine, session_scope
    from ledgerguard.register.models import Incident

    try:
        engine = get_engine(empty_url)
        assert get_engine(empty_url) is engine
        assert current_revision(engine) == HEAD
        with session_scope(engine) as s:
            assert s.query(Incident).count() == 0
    finally:
        dispose_engines()


def test_read_only_session_does_not_block_a_writer(engine):
    from ledgerguard.models import Signal
    from ledgerguard.register import service
    from ledgerguard.register.db import session_scope
    from ledgerguard.register.models import Incident

    with session_scope(engine, read_only=True) as reader:
        assert reader.query(Incident).count() == 0  # transaction open, no write lock taken
        with session_scope(engine) as writer:  # same thread: would wait for the lock otherwise
            service.open_or_join_incident(db_session=writer, title="t",
                                          signal=Signal(source="t", emergency_type="a", resource="b"))
    with session_scope(engine, read_only=True) as reader:
        assert reader.query(Incident).count() == 1


def test_0003_keeps_existing_obligations_and_adds_note_and_amount(empty_url):
    from sqlalchemy import text

    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO incidents (id, dedup_key, open_dedup_key, emergency_type, resource, title, status, "
                "drill, affected_clients, assessment, opened_at, updated_at, timeline_count) VALUES ('i1', 'k', 'k', 't', 'r', "
                "'x', 'open', false, '[]', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"))
            conn.execute(text(
                "INSERT INTO obligations (id, incident_id, obligation_id, law, action, \"to\", deadline, immediate, "
                "status) VALUES ('o1', 'i1', 'late_fee', 'law', 'pay', 'client', CURRENT_TIMESTAMP, false, 'open')"))
        upgrade(engine)
        assert current_revision(engine) == HEAD
        with engine.connect() as conn:
            assert conn.execute(text("SELECT note, amount_yuan FROM obligations")).one() == ("", None)
            conn.execute(text("UPDATE obligations SET amount_yuan = 123.45"))
            assert float(conn.execute(text("SELECT amount_yuan FROM obligations")).scalar()) == 123.45
        downgrade(engine, "0002")
        assert "amount_yuan" not in {c["name"] for c in inspect(engine).get_columns("obligations")}
        with engine.connect() as conn:
            assert conn.execute(text("SELECT obligation_id FROM obligations")).scalar() == "late_fee"
    finally:
        engine.dispose()


def test_head_revision_is_the_newest_migration():
    from ledgerguard.register.db import head_revision

    assert head_revision() == HEAD
