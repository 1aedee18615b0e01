"""Purging the register after the retention period (保管期限): what is still inside its period, open,
or not in a verified archive is refused with the reason, even with --execute; what may go leaves
tombstones and a purge record, the chain still verifies and the exported archive still holds it."""

from __future__ import annotations

import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select, text
from typer.testing import CliRunner

from tests.retention.conftest import build_incident, years_ago

runner = CliRunner()


def _cli(*args: str):
    from ledgerguard.cli import app

    return runner.invoke(app, list(args), env={"LEDGERGUARD_LANGUAGE": "en", "COLUMNS": "250"})


def _day(runtime, moment, days: int = 0) -> str:
    return (moment.astimezone(ZoneInfo(runtime.settings.timezone)).date() + timedelta(days=days)).isoformat()


def _export(runtime, out, start, end) -> None:
    result = _cli("export", "--from", _day(runtime, start, -3), "--to", _day(runtime, end, 3), "--out", str(out))
    assert result.exit_code == 0, result.output


def _fill(runtime, incident_id: str, person: str) -> None:
    """A row in every table that references an incident, an outbox row for its signal and a report."""
    from ledgerguard.models import Finding
    from ledgerguard.register import service as register
    from ledgerguard.register.models import (
        AckLink,
        ApprovalRecord,
        ImprovementItem,
        NoticeDraft,
        ObligationRecord,
        PostmortemReview,
        SignalRecord,
        StaffCheckin,
        utcnow,
    )

    now = utcnow()
    with runtime.session() as s:
        register.record_finding(db_session=s, incident_id=incident_id, finding=Finding(
            detector="filings.sales_mismatch", resource="filing:C0002", summary="申报销售额与开票不符"))
        register.claim_notification(db_session=s, key=f"{incident_id}:notify:{person}", incident_id=incident_id,
                                    stage="notify", recipient=f"{person}@agency.example", channel="email",
                                    step="0", template="notify_staff", subject="申报错误")
        register.start_action(db_session=s, incident_id=incident_id, step_id="correct_return", title="更正申报",
                              kind="manual")
        register.link_flow_run(db_session=s, incident_id=incident_id, flow_run_id="run-0001", flow_name="wrong-filing")
        signal_id = s.scalars(select(SignalRecord.id).where(SignalRecord.incident_id == incident_id)).first()
        register.enqueue_outbox(db_session=s, signal_id=signal_id, payload={"event": "ledgerguard.signal.firing"})
        s.add_all([
            ObligationRecord(incident_id=incident_id, obligation_id="late_fee", law="征管法 Art. 32", action="补缴",
                             recipient="税务局", deadline=now),
            ApprovalRecord(incident_id=incident_id, step_id="correct_return", requested_by="ledgerguard",
                           deadline=now, approvers=[person]),
            AckLink(incident_id=incident_id, person_id=person, recipient=f"{person}@agency.example", expires_at=now),
            StaffCheckin(incident_id=incident_id, person_id=person, status="ok"),
            PostmortemReview(incident_id=incident_id, revision=1, root_cause="开票数据未同步", entered_by=person),
            NoticeDraft(incident_id=incident_id, kind="client", audience="C0002", language="zh-CN",
                        content_sha256="0" * 64, path="notice.md"),
            ImprovementItem(source="incident", source_key=f"incident:{incident_id}:sync",
                            open_key=f"incident:{incident_id}:sync", title="开票与申报自动核对", owner=person,
                            due_at=now, incident_id=incident_id),
        ])
    folder = runtime.settings.reports_dir / incident_id
    folder.mkdir(parents=True)
    (folder / f"report-{incident_id}.md").write_text("# 事件报告\n", encoding="utf-8")


def _snapshot(runtime) -> dict:
    from ledgerguard.register.models import Base

    with runtime.session(read_only=True) as s:
        counts = {t.name: s.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}
    files = sorted(p.relative_to(runtime.settings.reports_dir).as_posix()
                   for p in runtime.settings.reports_dir.rglob("*")) if runtime.settings.reports_dir.exists() else []
    return {"rows": counts, "files": files}


def _rows_of(runtime, incident_id: str) -> dict[str, int]:
    from ledgerguard.register.models import Base

    with runtime.session(read_only=True) as s:
        return {t.name: s.scalar(select(func.count()).select_from(t).where(t.c.incident_id == incident_id))
                for t in Base.metadata.sorted_tables
                if "incident_id" in t.c and t.name not in ("purges", "timeline_tombstones")}


def test_the_before_selection_purges_what_ended_and_refuses_the_rest_with_reasons(runtime, person, tmp_path):
    from ledgerguard.archive.service import verify_archive
    from ledgerguard.backups import sha256_file
    from ledgerguard.register.audit import verify_chain
    from ledgerguard.register.models import (
        Incident,
        OutboxItem,
        PurgeRecord,
        SignalRecord,
        TimelineEntry,
        TimelineTombstone,
    )

    closed = years_ago(11)
    returns = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=closed)
    _fill(runtime, returns.incident_id, person)
    ledger = build_incident(runtime, emergency_type="ledger_loss", resource="ledger:C0001", closed=closed)
    recent = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0003", closed=years_ago(1))
    still_open = build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    with runtime.session(read_only=True) as s:
        entries = [(e.seq, e.prev_hash, e.hash) for e in s.scalars(
            select(TimelineEntry).where(TimelineEntry.incident_id == returns.incident_id).order_by(TimelineEntry.seq))]
        signal_ids = list(s.scalars(select(SignalRecord.id).where(SignalRecord.incident_id == returns.incident_id)))
    archive = tmp_path / "archive-2015"
    _export(runtime, archive, closed, closed)
    before = _snapshot(runtime)
    today = _day(runtime, years_ago(0), 1)
    args = ["purge", "--before", today, "--archive", str(archive), "--by", person, "--reason", "保管期满，年度鉴定后清除"]

    # the dry run says what would go and what is refused, and deletes nothing
    result = _cli(*args)
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert f"WOULD PURGE {returns.incident_id} (wrong_filing): retention ended {_day(runtime, years_ago(0))[:4]}-01-01" in out
    year = int(_day(runtime, closed)[:4])
    assert (f"REFUSED {ledger.incident_id} (ledger_loss): ledger_loss holds accounting_vouchers, accounting_ledgers: "
            f"30 years") in out
    assert f"kept until {year + 31}-01-01" in out
    assert f"REFUSED {recent.incident_id} (wrong_filing): " in out and f"kept until {year + 21}-01-01" in out
    assert f"REFUSED {still_open.incident_id} (office_outage): still open (open)" in out
    assert "dry run: nothing deleted" in out
    assert _snapshot(runtime) == before

    # --execute purges the one that may go and still refuses the others
    result = _cli(*args, "--execute")
    assert result.exit_code == 1, result.output
    out = " ".join(result.output.split())
    assert f"PURGED {returns.incident_id} (wrong_filing)" in out and "purged 1, refused 3" in out
    assert f"REFUSED {ledger.incident_id} (ledger_loss)" in out

    # every row that referenced it is gone; the improvement item stays, detached; so do the others' rows
    assert not any(_rows_of(runtime, returns.incident_id).values())
    assert all(_rows_of(runtime, i.incident_id)["timeline_entries"] for i in (ledger, recent, still_open))
    with runtime.session(read_only=True) as s:
        assert s.get(Incident, returns.incident_id) is None
        assert signal_ids and s.scalar(select(func.count()).select_from(OutboxItem)
                                       .where(OutboxItem.signal_id.in_(signal_ids))) == 0
        item = s.execute(text("SELECT incident_id, title FROM improvement_items")).one()
        assert item == (None, "开票与申报自动核对")
        tombstones = [(t.seq, t.prev_hash, t.hash) for t in
                      s.scalars(select(TimelineTombstone).order_by(TimelineTombstone.seq))]
        assert tombstones == entries
        record = s.scalars(select(PurgeRecord)).one()
        assert record.incident_id == returns.incident_id and record.emergency_type == "wrong_filing"
        assert record.purged_by == person and record.reason == "保管期满，年度鉴定后清除"
        assert [k["kind"] for k in record.record_kinds] == ["tax_returns", "bank_statements", "incident_record"]
        assert record.retain_until.astimezone(ZoneInfo(runtime.settings.timezone)).date().isoformat() == \
            f"{year + 11}-01-01"
        assert record.counts["timeline_entries"] == len(entries) and record.counts["incidents"] == 1
        for table in ("signals", "findings", "notifications", "runbook_actions", "obligations", "incident_flow_runs",
                      "approvals", "ack_links", "staff_checkins", "postmortem_reviews", "notice_drafts", "outbox"):
            assert record.counts[table] == 1, table
        assert record.counts["improvement_items_detached"] == 1 and record.counts["report_files"] == 1
        assert str(archive.resolve()) in record.archive
        assert sha256_file(archive / "manifest.json") in record.archive
        assert verify_chain(db_session=s) == []
    assert not (runtime.settings.reports_dir / returns.incident_id).exists()
    assert not list(runtime.settings.reports_dir.glob(".purging-*"))
    assert verify_archive(archive) == []
    assert _cli("audit", "verify").exit_code == 0
    assert _cli("export", "verify", str(archive)).exit_code == 0
    # the archive still holds what the register no longer does
    archived = [json.loads(line) for line in (archive / "records" / "timeline_entries.jsonl").read_text().splitlines()]
    assert [(e["seq"], e["prev_hash"], e["hash"]) for e in archived if e["incident_id"] == returns.incident_id] == entries

    # asking again by id: already purged, refused, nothing else happens
    result = _cli("purge", "--incident", returns.incident_id, "--archive", str(archive), "--by", person,
                  "--reason", "again", "--execute")
    assert result.exit_code == 1 and "already purged on" in result.output


def test_a_thirty_year_record_is_refused_even_when_asked_for_by_id_with_execute(runtime, person, tmp_path):
    from ledgerguard.register.models import Incident
    from ledgerguard.retention.service import plan_purge, purge

    closed = years_ago(11)
    ledger = build_incident(runtime, emergency_type="ledger_loss", resource="ledger:C0001", closed=closed)
    build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    archive = tmp_path / "archive"
    _export(runtime, archive, closed, closed)
    before = _snapshot(runtime)
    result = _cli("purge", "--incident", ledger.incident_id, "--archive", str(archive), "--by", person,
                  "--reason", "清理", "--execute")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    year = int(_day(runtime, closed)[:4])
    assert f"REFUSED {ledger.incident_id} (ledger_loss)" in out
    assert "accounting_vouchers" in out and "30 years" in out and f"kept until {year + 31}-01-01" in out
    assert "purged 0, refused 1" in out
    assert _snapshot(runtime) == before

    # plan_purge may look ahead; purge decides on the real clock, whatever the plan said
    with runtime.session() as s:
        ahead = plan_purge(db_session=s, catalog=runtime.catalog, incident_ids=[ledger.incident_id],
                           now=years_ago(-21), archive=archive, reports_dir=runtime.settings.reports_dir)
        assert [i.purgeable for i in ahead.items] == [True]
        done = purge(db_session=s, catalog=runtime.catalog, incident_ids=[ledger.incident_id], by=person,
                     reason="清理", archive=archive, reports_dir=runtime.settings.reports_dir)
        assert done.purges == [] and "30 years" in done.refused[0].reason
    with runtime.session(read_only=True) as s:
        assert s.get(Incident, ledger.incident_id) is not None


def test_a_purge_needs_a_verified_archive_that_holds_the_incident(runtime, person, tmp_path):
    from ledgerguard.register import service as register

    closed = years_ago(11)
    returns = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=closed)
    later = build_incident(runtime, emergency_type="payment_failure", resource="payment:C0004",
                           closed=years_ago(11, days=-40))
    build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    before = _snapshot(runtime)

    def refused(archive, *, why: str) -> None:
        result = _cli("purge", "--incident", returns.incident_id, "--archive", str(archive), "--by", person,
                      "--reason", "保管期满", "--execute")
        assert result.exit_code == 1, result.output
        out = " ".join(result.output.split())
        assert f"REFUSED {returns.incident_id} (wrong_filing): not in a verified archive" in out and why in out, out
        assert _snapshot(runtime) == before

    # no archive there at all
    refused(tmp_path / "nowhere", why="manifest.json: missing")
    # an archive of another range: it does not hold the incident
    other = tmp_path / "other-range"
    _export(runtime, other, years_ago(11, days=-40), years_ago(11, days=-40))
    refused(other, why=f"does not hold incident {returns.incident_id}")
    assert later.incident_id  # (that archive holds the payment_failure incident only)
    # a modified archive no longer verifies
    modified = tmp_path / "modified"
    _export(runtime, modified, closed, closed)
    incidents = modified / "records" / "incidents.jsonl"
    incidents.write_text(incidents.read_text(encoding="utf-8").replace('"closed"', '"open"', 1), encoding="utf-8")
    refused(modified, why="records/incidents.jsonl: changed")
    # an archive exported before the incident's last entry: the entry would be lost
    stale = tmp_path / "stale"
    _export(runtime, stale, closed, closed)
    with runtime.session() as s:
        register.append_timeline(db_session=s, incident_id=returns.incident_id, stage="record", kind="note",
                                 message="鉴定意见：可销毁")
    build_incident(runtime, emergency_type="office_outage", resource="office:branch", closed=None)
    before = _snapshot(runtime)
    refused(stale, why="the archive lacks timeline_entries row")


def test_a_tampered_tombstone_and_a_forged_one_are_reported(runtime, person, tmp_path):
    from ledgerguard.register.audit import TOMBSTONE_MISMATCH, verify_chain
    from ledgerguard.register.models import TimelineTombstone

    closed = years_ago(11)
    returns = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=closed)
    keep = build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None, notes=3)
    archive = tmp_path / "archive"
    _export(runtime, archive, closed, closed)
    result = _cli("purge", "--incident", returns.incident_id, "--archive", str(archive), "--by", person,
                  "--reason", "保管期满", "--execute")
    assert result.exit_code == 0, result.output
    with runtime.session(read_only=True) as s:
        assert verify_chain(db_session=s) == []
        seqs = list(s.scalars(select(TimelineTombstone.seq).order_by(TimelineTombstone.seq)))
    last = seqs[-1]

    with runtime.engine.begin() as conn:
        conn.execute(text("UPDATE timeline_tombstones SET hash = :h WHERE seq = :seq"), {"h": "f" * 64, "seq": last})
    with runtime.session(read_only=True) as s:
        problems = verify_chain(db_session=s)
    assert [(p.problem, p.seq, p.incident_id) for p in problems] == [(TOMBSTONE_MISMATCH, last, returns.incident_id)]
    assert f"timeline tombstone #{last} does not fit the chain" in str(problems[0])
    result = _cli("audit", "verify")
    assert result.exit_code == 1 and f"tombstone #{last}" in result.output

    # a tombstone put in place of a live incident's entry (to hide its deletion) is named too
    with runtime.engine.begin() as conn:
        row = conn.execute(text("SELECT seq, prev_hash, hash FROM timeline_entries WHERE incident_id = :i "
                                "ORDER BY seq DESC LIMIT 1 OFFSET 1"), {"i": keep.incident_id}).one()
        purge_id = conn.execute(text("SELECT id FROM purges")).scalar_one()
        conn.execute(text("DELETE FROM timeline_entries WHERE seq = :seq"), {"seq": row.seq})
        conn.execute(text("INSERT INTO timeline_tombstones (seq, incident_id, prev_hash, hash, purge_id) "
                          "VALUES (:seq, :i, :p, :h, :purge)"),
                     {"seq": row.seq, "i": keep.incident_id, "p": row.prev_hash, "h": row.hash, "purge": purge_id})
    with runtime.session(read_only=True) as s:
        problems = verify_chain(db_session=s)
    forged = [p for p in problems if p.seq == row.seq]
    assert forged and all(p.problem == TOMBSTONE_MISMATCH for p in forged)
    assert any("still in the register" in p.detail for p in forged)
    assert any("for another incident" in p.detail for p in forged)


def test_bad_input_exits_2(runtime, person, tmp_path):
    build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=years_ago(11))
    archive = str(tmp_path / "a")
    base = ["--archive", archive, "--reason", "x"]
    assert _cli("purge", "--by", person, *base).exit_code == 2  # neither --before nor --incident
    assert _cli("purge", "--before", "2016-01-01", "--incident", "abc", "--by", person, *base).exit_code == 2
    result = _cli("purge", "--before", "2016-01-01", "--by", "nobody", *base)
    assert result.exit_code == 2 and "unknown person 'nobody'" in result.output
    result = _cli("purge", "--incident", "0" * 32, "--by", person, *base)
    assert result.exit_code == 2 and "not in the register" in result.output
    assert _cli("purge", "--before", "2016-01-01", "--by", person, "--archive", archive).exit_code == 2  # --reason


def test_a_drill_follows_the_drill_policy_and_its_drill_row_goes_with_it(runtime, person, tmp_path):
    from ledgerguard.register.models import DrillRecord
    from ledgerguard.retention.service import plan_purge, purge

    closed = years_ago(4)
    drill = build_incident(runtime, emergency_type="ledger_loss", resource="ledger:C0001", closed=closed, drill=True)
    real = build_incident(runtime, emergency_type="ledger_loss", resource="ledger:C0002", closed=closed)
    build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    with runtime.session() as s:
        s.add(DrillRecord(emergency_type="ledger_loss", scenario_id="vouchers_deleted", incident_id=drill.incident_id,
                          status="scored"))
    archive = tmp_path / "archive"
    _export(runtime, archive, closed, closed)
    with runtime.session() as s:
        plan = plan_purge(db_session=s, catalog=runtime.catalog, incident_ids=[drill.incident_id, real.incident_id],
                          archive=archive, reports_dir=runtime.settings.reports_dir)
        verdict = {i.incident_id: i for i in plan.items}
        assert verdict[drill.incident_id].purgeable and verdict[drill.incident_id].kinds == ["drill_record"]
        assert not verdict[real.incident_id].purgeable and verdict[real.incident_id].years == 30
        done = purge(db_session=s, catalog=runtime.catalog, incident_ids=[drill.incident_id, real.incident_id],
                     by=person, reason="演练记录保管期满", archive=archive, reports_dir=runtime.settings.reports_dir)
        assert [p["incident_id"] for p in done.purges] == [drill.incident_id]
        assert done.purges[0]["counts"]["drills"] == 1
    with runtime.session(read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(DrillRecord)) == 0


def test_the_chain_head_waits_for_a_later_entry(runtime, person, tmp_path):
    closed = years_ago(11)
    returns = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=closed)
    archive = tmp_path / "archive"
    _export(runtime, archive, closed, closed)
    args = ["purge", "--incident", returns.incident_id, "--archive", str(archive), "--by", person, "--reason", "x",
            "--execute"]
    result = _cli(*args)
    assert result.exit_code == 1 and "newest timeline entry" in " ".join(result.output.split())
    build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    result = _cli(*args)
    assert result.exit_code == 0, result.output


def test_a_rolled_back_purge_puts_the_reports_folder_back(runtime, person, tmp_path):
    from ledgerguard.register.models import Incident
    from ledgerguard.retention.service import purge

    closed = years_ago(11)
    returns = build_incident(runtime, emergency_type="wrong_filing", resource="filing:C0002", closed=closed)
    build_incident(runtime, emergency_type="office_outage", resource="office:main", closed=None)
    folder = runtime.settings.reports_dir / returns.incident_id
    folder.mkdir(parents=True)
    (folder / "report.md").write_text("报告", encoding="utf-8")
    archive = tmp_path / "archive"
    _export(runtime, archive, closed, closed)
    with pytest.raises(RuntimeError, match="boom"):
        with runtime.session() as s:
            done = purge(db_session=s, catalog=runtime.catalog, incident_ids=[returns.incident_id], by=person,
                         reason="x", archive=archive, reports_dir=runtime.settings.reports_dir)
            assert len(done.purges) == 1 and not folder.exists()
            raise RuntimeError("boom")
    assert (folder / "report.md").read_text(encoding="utf-8") == "报告"
    with runtime.session(read_only=True) as s:
        assert s.get(Incident, returns.incident_id) is not None
