"""The monthly report's figures (pandas) on hand-built rows, Prefect-free: every number below is
worked out by hand from the rows; edge cases: no incidents at all, an incident never
acknowledged, drill incidents and drill runs kept out, the month's edges in the agency's zone."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard.compliance.models import FlowRunRecord, RunHistory
from ledgerguard.compliance.monthly import (
    DrillRow,
    ImprovementRow,
    IncidentRow,
    NotificationRow,
    ObligationRow,
    RegisterRows,
    compute_figures,
    month_window,
    parse_month,
    previous_month,
    read_register,
)

UTC = timezone.utc
NOV = month_window(month="2026-11", tz="Asia/Shanghai")
AS_OF = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)  # 20:00 local on the 30th: the running month


def at(day: int, hour: int = 2, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def incident(id_: str, etype: str, level: int, opened: datetime, *, ack: float | None = None,
             resolved: float | None = None, closed: float | None = None, drill: bool = False,
             targets: tuple[float, float] | None = (480, 72), status: str = "open") -> IncidentRow:
    return IncidentRow(
        id=id_, emergency_type=etype, level=level, status=status, drill=drill, opened_at=opened,
        acknowledged_at=opened + timedelta(minutes=ack) if ack is not None else None,
        resolved_at=opened + timedelta(minutes=resolved) if resolved is not None else None,
        closed_at=opened + timedelta(minutes=closed) if closed is not None else None,
        ack_target_minutes=targets[0] if targets else None, resolve_target_hours=targets[1] if targets else None)


def run(id_: str, flow: str, state: str, seconds: float, *, tags: list[str], day: int = 3) -> FlowRunRecord:
    return FlowRunRecord(id=id_, name=f"run-{id_}", flow_name=flow, state_type=state, state_name=state.title(),
                         expected_start_time=at(day), start_time=at(day), run_seconds=seconds, tags=tags)


@pytest.fixture
def rows() -> RegisterRows:
    incidents = [
        # ledger_loss 四级: ack after 30 min (target 480) and resolved after 600 min (target 72 h)
        incident("A", "ledger_loss", 4, at(3), ack=30, resolved=600, status="resolved"),
        # ledger_loss 四级: acknowledged late (600 > 480), never resolved, 25 days open > 72 h
        incident("B", "ledger_loss", 4, at(5), ack=600, status="acknowledged"),
        # backup_failure 三级: never acknowledged (target 120 passed), closed after 120 min (< 24 h)
        incident("C", "backup_failure", 3, at(10), closed=120, targets=(120, 24), status="closed"),
        # backup_failure 四级, opened 2 h before the report: nothing due yet
        incident("D", "backup_failure", 4, AS_OF - timedelta(hours=2)),
        # a drill incident, acknowledged within a minute: must not improve anyone's MTTA
        incident("E", "ledger_loss", 4, at(6), ack=1, resolved=5, drill=True, status="closed"),
    ]
    obligations = [
        ObligationRow(incident_id="A", obligation_id="archives", emergency_type="ledger_loss", deadline=at(20),
                      status="met", met_at=at(19)),
        ObligationRow(incident_id="B", obligation_id="archives", emergency_type="ledger_loss", deadline=at(8),
                      status="met", met_at=at(9)),
        ObligationRow(incident_id="C", obligation_id="archives", emergency_type="backup_failure", deadline=at(20),
                      status="open"),
        ObligationRow(incident_id="D", obligation_id="archives", emergency_type="backup_failure",
                      deadline=AS_OF + timedelta(hours=3), status="open"),
        ObligationRow(incident_id="D", obligation_id="pipl", emergency_type="backup_failure", deadline=at(29),
                      status="waived"),
        ObligationRow(incident_id="C", obligation_id="notify", emergency_type="backup_failure", deadline=at(25),
                      status="missed"),
        ObligationRow(incident_id="E", obligation_id="archives", emergency_type="ledger_loss", deadline=at(7),
                      status="open", drill=True),
    ]
    drills = [
        DrillRow(id="d1", emergency_type="ledger_loss", scenario_id="s", mode="live", status="scored",
                 started_at=at(6), score=80.0, passed=True),
        DrillRow(id="d2", emergency_type="ransomware", scenario_id="s", mode="tabletop", status="scored",
                 started_at=at(12), score=55.0, passed=False),
        DrillRow(id="d3", emergency_type="backup_failure", scenario_id="s", mode="live", status="failed",
                 started_at=at(13)),
    ]
    improvements = [
        ImprovementRow(id="i1", source="drill", title="t1", owner="p", opened_at=at(1), due_at=at(20), status="open"),
        ImprovementRow(id="i2", source="readiness", title="t2", owner="p", opened_at=at(2),
                       due_at=datetime(2026, 12, 15, tzinfo=UTC), status="open"),
        ImprovementRow(id="i3", source="drill", title="t3", owner="p", opened_at=at(1), due_at=at(5),
                       status="closed", closed_at=at(10)),
        ImprovementRow(id="i4", source="drill", title="t4", owner="p", opened_at=AS_OF + timedelta(hours=1),
                       due_at=at(1), status="open"),
    ]
    notifications = [
        NotificationRow(id="n1", channel="email", status="sent", attempts=1, created_at=at(3)),
        NotificationRow(id="n2", channel="email", status="sent", attempts=2, created_at=at(3)),
        NotificationRow(id="n3", channel="email", status="failed", attempts=3, created_at=at(5)),
        NotificationRow(id="n4", channel="email", status="deferred", attempts=0, created_at=at(5)),
        NotificationRow(id="n5", channel="wecom", status="sent", attempts=1, created_at=at(5)),
        NotificationRow(id="n6", channel="wecom", status="pending", attempts=0, created_at=at(5)),
    ]
    return RegisterRows(window=NOV, incidents=incidents, obligations=obligations, drills=drills,
                        improvements=improvements, notifications=notifications)


@pytest.fixture
def history() -> RunHistory:
    return RunHistory(read_at=AS_OF, runs=[
        run("r1", "ledger-loss", "COMPLETED", 20, tags=["emergency:ledger_loss"]),
        run("r2", "ledger-loss", "FAILED", 5, tags=["emergency:ledger_loss"]),
        run("r3", "backup-failure", "COMPLETED", 10, tags=["emergency:backup_failure"]),
        run("r4", "escalation", "PAUSED", 1, tags=["emergency:ledger_loss", "escalation"]),
        run("r5", "ledger-loss", "CRASHED", 3, tags=["emergency:ledger_loss", "drill"]),
        run("r6", "readiness", "FAILED", 2, tags=[]),  # not an emergency run
        # expected in October (local): outside the month even if a reader handed it over
        FlowRunRecord(id="r7", name="run-r7", flow_name="ledger-loss", state_type="FAILED",
                      expected_start_time=NOV.start - timedelta(seconds=1), tags=["emergency:ledger_loss"]),
    ])


def test_the_figures_of_a_month_match_the_rows_worked_out_by_hand(rows, history):
    f = compute_figures(rows=rows, history=history, as_of=AS_OF)

    assert f.incidents.total == 4 and f.incidents.drills == 1
    assert {c.key: c.count for c in f.incidents.by_type} == {"ledger_loss": 2, "backup_failure": 2}
    assert {c.key: c.count for c in f.incidents.by_level} == {"3": 1, "4": 3}
    assert {(r["emergency_type"], r["level"]): r["count"] for r in f.incidents.by_type_and_level} == {
        ("backup_failure", "3"): 1, ("backup_failure", "4"): 1, ("ledger_loss", "4"): 2}

    # MTTA over A (30) and B (600); the drill's 1 minute is not among them
    assert (f.mtta.overall.median_minutes, f.mtta.overall.mean_minutes, f.mtta.overall.measured) == (315.0, 315.0, 2)
    assert f.mtta.not_reached == 2  # C and D never acknowledged
    mtta = {s.key: s for s in f.mtta.by_type}
    assert (mtta["ledger_loss"].median_minutes, mtta["ledger_loss"].incidents) == (315.0, 2)
    assert mtta["backup_failure"].median_minutes is None and mtta["backup_failure"].measured == 0
    # MTTR: A resolved after 600, C closed (never "resolved") after 120
    assert (f.mttr.overall.median_minutes, f.mttr.overall.mean_minutes) == (360.0, 360.0)
    assert {s.key: s.median_minutes for s in f.mttr.by_type} == {"backup_failure": 120.0, "ledger_loss": 600.0}
    assert {s.key: s.median_minutes for s in f.mttr.by_level} == {"3": 120.0, "4": 600.0}

    # SLA: ack A met, B late, C never (past 120), D not due; resolve A, C met, B past 72 h, D not due
    assert f.sla.ack.model_dump() == {"met": 1, "missed": 2, "pending": 1, "no_target": 0}
    assert f.sla.resolve.model_dump() == {"met": 2, "missed": 1, "pending": 1, "no_target": 0}
    assert {(m.incident_id, m.target, m.actual_minutes) for m in f.sla.misses} == {
        ("B", "ack", 600.0), ("C", "ack", None), ("B", "resolve", None)}
    level3 = next(level for level in f.sla.by_level if level.level == "3")
    assert (level3.ack.missed, level3.resolve.met) == (1, 1)

    # obligations of real incidents due in the month (the drill's is left out)
    ob = f.obligations
    assert (ob.total, ob.met_on_time, ob.met_late, ob.missed, ob.open, ob.waived) == (6, 1, 1, 2, 1, 1)
    assert {(o.incident_id, o.obligation_id): o.outcome for o in ob.items}[("C", "archives")] == "missed"

    d = f.drills
    assert (d.total, d.live, d.tabletop, d.scored, d.passed, d.not_passed, d.broken, d.mean_score) == (
        3, 2, 1, 2, 1, 1, 1, 67.5)

    # improvement items at the report's moment: i1 (overdue), i2; i3 closed, i4 not opened yet
    assert (f.improvements.open, f.improvements.overdue) == (2, 1)
    assert [i.id for i in f.improvements.overdue_items] == ["i1"] and f.improvements.at == AS_OF

    by_channel = {c.channel: c for c in f.delivery}
    assert by_channel["email"].model_dump() == {"channel": "email", "total": 4, "sent": 2, "failed": 1,
                                                "deferred": 1, "pending": 0, "attempts": 6, "delivery_rate": 66.7}
    assert (by_channel["wecom"].delivery_rate, by_channel["wecom"].pending) == (100.0, 1)
    assert (f.delivery_total.total, f.delivery_total.delivery_rate) == (6, 75.0)

    runs = f.runs
    assert (runs.total, runs.drill_runs) == (4, 1)  # r6 is no emergency run, r7 is October's
    assert {c.key: c.count for c in runs.by_state} == {"COMPLETED": 2, "FAILED": 1, "IN_PROGRESS": 1}
    flows = {r.flow_name: r for r in runs.by_flow}
    assert (flows["ledger-loss"].total, flows["ledger-loss"].failed, flows["ledger-loss"].median_seconds,
            flows["ledger-loss"].max_seconds) == (2, 1, 12.5, 20.0)
    assert flows["escalation"].in_progress == 1 and flows["escalation"].median_seconds is None
    assert (runs.median_seconds, runs.mean_seconds) == (10.0, 11.7)
    assert [b.flow_run_id for b in runs.bad_runs] == ["r2"] and [b.flow_run_id for b in runs.drill_bad_runs] == ["r5"]


def test_a_month_without_incidents_has_zero_figures_and_still_renders(tmp_path):
    from ledgerguard.compliance.charts import render_charts
    from ledgerguard.compliance.report import render_report, write_report

    f = compute_figures(rows=RegisterRows(window=NOV), history=RunHistory(read_at=AS_OF), as_of=AS_OF)
    assert f.incidents.total == 0 and f.incidents.by_type == [] and f.mtta.overall.median_minutes is None
    assert f.sla.ack.model_dump() == {"met": 0, "missed": 0, "pending": 0, "no_target": 0}
    assert f.obligations.total == 0 and f.delivery == [] and f.delivery_total.delivery_rate is None
    assert f.runs.total == 0 and f.runs.by_flow == [] and f.consistency is None
    charts = render_charts(f, language="en", type_names={})
    assert [c.name for c in charts] == ["mtta_mttr_by_type", "sla_met_missed", "delivery_by_channel", "runs_by_state"]
    message = render_report(figures=f, charts=charts, language="en", agency_name="Test Agency", type_names={})
    assert message.subject.startswith("[Monthly compliance] Test Agency November 2026: 0 incident(s)")
    assert "No incidents this month." in message.html and "No notification this month." in message.html
    files = write_report(folder=tmp_path / "2026-11", message=message, charts=charts, figures=f)
    assert files.figures.is_file() and len(files.charts) == 4


def test_only_the_incidents_sla_targets_and_no_target_is_said(rows):
    rows.incidents = [incident("X", "ledger_loss", 4, at(3), ack=10, targets=None)]
    f = compute_figures(rows=rows, history=RunHistory(read_at=AS_OF), as_of=AS_OF)
    assert f.sla.ack.no_target == 1 and f.sla.ack.met == 0


def test_english_rendering_inlines_and_attaches_the_same_png_charts(rows, history, tmp_path):
    from ledgerguard.compliance.charts import render_charts
    from ledgerguard.compliance.report import render_report, write_report

    f = compute_figures(rows=rows, history=history, as_of=AS_OF)
    names = {"en": {"ledger_loss": "Ledger deleted or corrupted", "backup_failure": "Backup failure"}}
    charts = render_charts(f, language="en", type_names=names)
    message = render_report(figures=f, charts=charts, language="en", agency_name="Test Agency",
                            type_names=names["en"], timezone_name="Asia/Shanghai")
    assert "MTTA (median / mean): <b>315.0 min</b>" in message.html
    assert "Ledger deleted or corrupted" in message.html and "账套" not in message.html
    assert "lgchart:" not in message.html  # every placeholder became an image
    for chart in charts:
        uri = "data:image/png;base64," + base64.b64encode(chart.png).decode("ascii")
        assert uri in message.html, chart.name  # byte for byte: masking never touched the payload
        assert chart.png.startswith(b"\x89PNG\r\n\x1a\n")
    files = write_report(folder=tmp_path / "2026-11", message=message, charts=charts, figures=f)
    md = files.markdown.read_text(encoding="utf-8")
    assert "![Notification delivery per channel](charts/delivery_by_channel.png)" in md
    assert [p.read_bytes() for p in files.charts] == [c.png for c in charts]


def test_chinese_chart_labels_need_a_cjk_font_and_fall_back_to_english(monkeypatch):
    from ledgerguard.compliance import charts as charts_module

    font = charts_module.find_cjk_font()
    if font:
        assert charts_module.chart_language("zh-CN") == "zh-CN"
        assert charts_module._has_glyphs(
            next(f.fname for f in charts_module.font_manager.fontManager.ttflist if f.name == font), "月度合规")
    monkeypatch.setattr(charts_module, "find_cjk_font", lambda: None)
    assert charts_module.chart_language("zh-CN") == "en"  # English labels, never boxes
    assert charts_module.chart_language("en") == "en"


def test_months_are_calendar_months_in_the_agency_zone_and_bad_ones_name_the_field(tmp_path):
    from ledgerguard.register.db import make_engine, session_scope, upgrade
    from ledgerguard.register.models import Incident

    assert NOV.start == datetime(2026, 10, 31, 16, 0, tzinfo=UTC) and NOV.end == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert month_window(month="2026-12", tz="Asia/Shanghai").end == datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    # 1 December 07:59 local is 30 November in UTC: the report of the 1st covers November
    assert previous_month(tz="Asia/Shanghai", now=datetime(2026, 11, 30, 23, 59, tzinfo=UTC)) == "2026-11"
    assert previous_month(tz="Asia/Shanghai", now=datetime(2026, 1, 1, 1, 0, tzinfo=UTC)) == "2025-12"
    for bad in ("2026-13", "2026/11", "11-2026", "", "2026-1"):
        with pytest.raises(ValueError, match="month"):
            parse_month(bad)

    engine = make_engine(f"sqlite:///{tmp_path / 'register.sqlite'}")
    upgrade(engine)
    with session_scope(engine) as s:
        for key, opened in (("last-of-oct", NOV.start - timedelta(seconds=1)), ("first-of-nov", NOV.start),
                            ("last-of-nov", NOV.end - timedelta(seconds=1)), ("first-of-dec", NOV.end)):
            s.add(Incident(dedup_key=key, open_dedup_key=key, emergency_type="ledger_loss", resource=key,
                           opened_at=opened, level=4, assessment={"sla": {"ack_minutes": 480, "resolve_hours": 72}}))
    with session_scope(engine, read_only=True) as s:
        got = read_register(db_session=s, window=NOV)
    engine.dispose()
    assert sorted(i.opened_at for i in got.incidents) == [NOV.start, NOV.end - timedelta(seconds=1)]
    assert all(i.ack_target_minutes == 480 and i.sla_source == "assessment" for i in got.incidents)
