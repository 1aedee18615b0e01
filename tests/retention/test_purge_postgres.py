"""The purge on PostgreSQL (the scale-out register): the same refusals, the same tombstones, the chain
verifies; a concurrent append waits for the purge's lock instead of forking the chain."""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from typer.testing import CliRunner

from tests.retention.conftest import build_incident, years_ago
from tests.retention.test_purge import _day, _export, _fill, _rows_of

runner = CliRunner()


def test_purge_on_postgresql(pg_register, runtime, person, tmp_path):
    from ledgerguard.cli import app
    from ledgerguard.register import service as register
    from ledgerguard.register.audit import verify_chain
    from ledgerguard.register.models import PurgeRecord, TimelineEntry, TimelineTombstone
    from ledgerguard.retention.service import purge

    assert runtime.engine.dialect.name == "postgresql"
    closed = years_ago(11)
    returns = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=closed)
    _fill(runtime, returns.incident_id, person)
    ledger = build_incident(runtime, emergency_type="ledger_loss", resource="ledger:C0001", closed=closed)
    keep = build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    archive = tmp_path / "archive"
    _export(runtime, archive, closed, closed)
    with runtime.session(read_only=True) as s:
        entries = [(e.seq, e.hash) for e in s.scalars(select(TimelineEntry).where(
            TimelineEntry.incident_id == returns.incident_id).order_by(TimelineEntry.seq))]

    # the purge holds the timeline lock: an append started meanwhile waits, then links to the live head
    appended: list[int] = []
    with runtime.session() as s:
        done = purge(db_session=s, catalog=runtime.catalog, before=years_ago(0), by=person, reason="保管期满",
                     archive=archive, reports_dir=runtime.settings.reports_dir)
        assert [p["incident_id"] for p in done.purges] == [returns.incident_id]
        refused = {i.incident_id: i.reason for i in done.refused}
        assert "30 years" in refused[ledger.incident_id] and refused[keep.incident_id].startswith("still open")

        def append() -> None:
            with runtime.session() as other:
                appended.append(register.append_timeline(db_session=other, incident_id=keep.incident_id,
                                                         stage="record", kind="note", message="meanwhile").seq)

        writer = threading.Thread(target=append)
        writer.start()
        writer.join(timeout=1.0)
        assert writer.is_alive() and not appended  # waiting for the purge's transaction
    writer.join(timeout=30)
    assert appended

    assert not any(_rows_of(runtime, returns.incident_id).values())
    with runtime.session(read_only=True) as s:
        assert [(t.seq, t.hash) for t in s.scalars(select(TimelineTombstone).order_by(TimelineTombstone.seq))] == entries
        assert s.scalar(select(func.count()).select_from(PurgeRecord)) == 1
        assert verify_chain(db_session=s) == []
    assert runner.invoke(app, ["audit", "verify"]).exit_code == 0
    assert runner.invoke(app, ["export", "verify", str(archive)]).exit_code == 0

    result = runner.invoke(app, ["purge", "--incident", ledger.incident_id, "--archive", str(archive), "--by", person,
                                 "--reason", "x", "--execute"], env={"LEDGERGUARD_LANGUAGE": "en", "COLUMNS": "250"})
    assert result.exit_code == 1
    assert f"kept until {int(_day(runtime, closed)[:4]) + 31}-01-01" in " ".join(result.output.split())
