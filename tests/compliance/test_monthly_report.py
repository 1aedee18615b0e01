"""The monthly compliance report against real runs: a ledger loss and a stale backup go through
their real flows, a drill runs beside them, a person acknowledges and resolves; the report of the
month (real Prefect API, real register) is checked figure by figure against values worked out
here from the register and from Prefect's API, its email at the SMTP sink carries the charts
inline and attached, and a re-run (in English, through the CLI) sends nothing twice."""

from __future__ import annotations

import base64
import email
import email.policy
import json
import statistics
from datetime import timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.prefect

CHARTS = {"mtta_mttr_by_type.png", "sla_met_missed.png", "delivery_by_channel.png", "runs_by_state.png"}


def monthly_mails(sink) -> list:
    out = []
    for path in sorted(sink.directory.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if "月度合规报告" in str(message["subject"]) or "Monthly compliance" in str(message["subject"]):
            out.append(message)
    return out


def minutes(a, b) -> float:
    return (b - a).total_seconds() / 60


def r1(value):
    return None if value is None else round(value, 1)


def expected_from_register(runtime, window, as_of) -> dict:
    """The figures worked out from the register's rows with plain Python (no pandas)."""
    from sqlalchemy import select

    from ledgerguard.register.models import Incident, Notification, ObligationRecord

    with runtime.session(read_only=True) as s:
        incidents = [i for i in s.scalars(select(Incident)) if window.start <= i.opened_at < window.end]
        real = [i for i in incidents if not i.drill]
        drill_ids = {i.id for i in s.scalars(select(Incident)) if i.drill}
        obligations = [o for o in s.scalars(select(ObligationRecord))
                       if window.start <= o.deadline < window.end and o.incident_id not in drill_ids]
        # as of the report's reading of the register: its own emails come after
        notifications = [n for n in s.scalars(select(Notification))
                         if window.start <= n.created_at < window.end and n.created_at <= as_of]
        by_type: dict[str, list[float]] = {}
        ack, resolve = {"met": 0, "missed": 0, "pending": 0}, {"met": 0, "missed": 0, "pending": 0}
        for i in real:
            if i.acknowledged_at:
                by_type.setdefault(i.emergency_type, []).append(minutes(i.opened_at, i.acknowledged_at))
            sla = i.assessment["sla"]
            for tally, done, target in ((ack, i.acknowledged_at, sla["ack_minutes"]),
                                        (resolve, i.resolved_at or i.closed_at, sla["resolve_hours"] * 60)):
                if done is not None:
                    tally["met" if minutes(i.opened_at, done) <= target else "missed"] += 1
                else:
                    tally["missed" if minutes(i.opened_at, as_of) > target else "pending"] += 1
        outcome = {"met_on_time": 0, "met_late": 0, "missed": 0, "open": 0, "waived": 0}
        for o in obligations:
            if o.status == "met":
                outcome["met_on_time" if o.met_at <= o.deadline else "met_late"] += 1
            elif o.status == "missed" or (o.status == "open" and o.deadline < as_of):
                outcome["missed"] += 1
            else:
                outcome[o.status] += 1
        channels: dict[str, dict[str, int]] = {}
        for n in notifications:
            c = channels.setdefault(n.channel, {"sent": 0, "failed": 0, "deferred": 0, "pending": 0, "attempts": 0})
            c[n.status] += 1
            c["attempts"] += n.attempts
        resolved = [minutes(i.opened_at, i.resolved_at or i.closed_at) for i in real if i.resolved_at or i.closed_at]
        return {
            "real": len(real), "drills": len(incidents) - len(real),
            "mtta_by_type": {t: r1(statistics.median(v)) for t, v in by_type.items()},
            "mtta_mean": r1(statistics.mean([m for v in by_type.values() for m in v])) if by_type else None,
            "mttr_median": r1(statistics.median(resolved)) if resolved else None,
            "ack": ack, "resolve": resolve, "obligations": outcome, "channels": channels,
        }


def expected_from_prefect(window) -> dict:
    """Emergency runs of the month per flow and final state, read from Prefect's API here."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterExpectedStartTime

    runs, offset = [], 0
    with get_client(sync_client=True) as client:
        while True:  # the API pages by 200; a whole suite's worker holds more runs than that
            page = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                expected_start_time=FlowRunFilterExpectedStartTime(after_=window.start, before_=window.end)),
                limit=200, offset=offset)
            runs += page
            offset += 200
            if len(page) < 200:
                break
        flow_names = {}
        for run in runs:
            if run.flow_id not in flow_names:
                flow_names[run.flow_id] = client.read_flow(run.flow_id).name
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        if run.expected_start_time >= window.end or not any(t.startswith("emergency:") for t in run.tags):
            continue
        if "drill" in run.tags:
            continue
        state = run.state.type.value if run.state.type.value in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") \
            else "IN_PROGRESS"
        key = (flow_names[run.flow_id], state)
        counts[key] = counts.get(key, 0) + 1
    return counts


@pytest.fixture
def month_of_incidents(live):
    """Two real incidents through their real flows, a drill, and what people did about them."""
    from flows import backup_failure, drill, ledger_loss
    from ledgerguard.acknowledgement.service import acknowledge
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.drills.models import DrillRequest
    from ledgerguard.models import IncidentStatus
    from ledgerguard.register import service as register
    from ledgerguard.response.models import BackupFailureRequest, LedgerLossRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    person = runtime.contacts.people[0].id
    client = runtime.agency.client_ids[0]
    get_injector("ledger.delete_vouchers").inject(
        InjectionContext(agency=runtime.agency, resource=f"ledger:{client}"), count=3)
    ledger = ledger_loss(LedgerLossRequest(client_id=client, source="test"), return_state=True).result()
    get_injector("backup.stale").inject(InjectionContext(agency=runtime.agency, resource="backups:nightly",
                                                         scratch_dir=runtime.settings.scratch_dir), hours_old=75)
    backup = backup_failure(BackupFailureRequest(source="test"), return_state=True).result()
    drilled = drill(DrillRequest(emergency_type="ledger_loss"), return_state=True).result()
    assert ledger.incident_id and backup.incident_id and drilled.drill_id

    with runtime.session() as s:
        li = register.get_incident(db_session=s, incident_id=ledger.incident_id)
        bi = register.get_incident(db_session=s, incident_id=backup.incident_id)
        ledger_ack = li.assessment["sla"]["ack_minutes"]
        backup_ack = bi.assessment["sla"]["ack_minutes"]
        opened_l, opened_b = li.opened_at, bi.opened_at
        # The duty lead took the ledger loss over after 7 minutes (within its target) and the
        # backup failure 5 minutes after its target had passed; the backup was resolved at 90 min.
        acknowledge(db_session=s, incident_id=ledger.incident_id, by=person, via="cli",
                    at=opened_l + timedelta(minutes=7))
        acknowledge(db_session=s, incident_id=backup.incident_id, by=person, via="cli",
                    at=opened_b + timedelta(minutes=backup_ack + 5))
        register.set_status(db_session=s, incident_id=backup.incident_id, status=IncidentStatus.RESOLVED,
                            actor=person, at=opened_b + timedelta(minutes=90))
        obligations = register.list_obligations(db_session=s, incident_id=ledger.incident_id)
        if obligations:
            register.set_obligation_status(db_session=s, incident_id=ledger.incident_id,
                                           obligation_id=obligations[0].obligation_id, status="met")
    return {"ledger": ledger, "backup": backup, "drill": drilled, "ledger_ack": ledger_ack, "backup_ack": backup_ack,
            "opened": opened_l}


def test_the_monthly_report_of_real_runs(month_of_incidents, live, monkeypatch):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.monthly_report import monthly_report
    from ledgerguard.channels.contacts import management_recipients
    from ledgerguard.cli import app
    from ledgerguard.compliance.monthly import current_month, month_window
    from ledgerguard.config import reset_settings
    from ledgerguard.runtime import get_runtime, reset_runtime

    runtime = get_runtime()
    tz = runtime.agency.tz
    month = current_month(tz=tz, now=month_of_incidents["opened"])
    window = month_window(month=month, tz=tz)
    ids = {month_of_incidents[k].incident_id for k in ("ledger", "backup")}
    sink = live["sink"]
    before = len(monthly_mails(sink))

    outcome = monthly_report(month=month)
    f = outcome.figures
    print(json.dumps(f.model_dump(mode="json", include={"sla", "obligations", "delivery", "runs", "mtta", "mttr"}),
                     ensure_ascii=False)[:3000])

    want = expected_from_register(runtime, window, f.as_of)
    assert f.incidents.total == want["real"] == 2
    assert f.incidents.drills == want["drills"] == 1  # the drill's incident, counted apart
    assert {c.key for c in f.incidents.by_type} == {"ledger_loss", "backup_failure"}
    assert {s.key: s.median_minutes for s in f.mtta.by_type} == want["mtta_by_type"] == {
        "ledger_loss": 7.0, "backup_failure": float(month_of_incidents["backup_ack"] + 5)}
    assert f.mtta.overall.mean_minutes == want["mtta_mean"]
    assert f.mttr.overall.median_minutes == want["mttr_median"]
    assert {s.key: s.median_minutes for s in f.mttr.by_type}["backup_failure"] == 90.0
    assert f.sla.ack.model_dump(exclude={"no_target"}) == want["ack"] == {"met": 1, "missed": 1, "pending": 0}
    assert f.sla.resolve.model_dump(exclude={"no_target"}) == want["resolve"]
    assert f.sla.resolve.met >= 1  # the backup, resolved in 90 min
    ob = f.obligations
    assert {k: getattr(ob, k) for k in want["obligations"]} == want["obligations"]
    assert {c.channel: {k: getattr(c, k) for k in ("sent", "failed", "deferred", "pending", "attempts")}
            for c in f.delivery} == want["channels"]
    assert f.delivery and all(c.delivery_rate == round(100 * c.sent / (c.sent + c.failed), 1)
                              for c in f.delivery if c.sent + c.failed)
    assert f.drills.total == 1 and f.drills.live == 1 and f.drills.items[0].id == month_of_incidents["drill"].drill_id
    assert f.drills.items[0].score == month_of_incidents["drill"].score

    runs = expected_from_prefect(window)
    got = {(r.flow_name, state): n for r in f.runs.by_flow for state, n in (
        ("COMPLETED", r.completed), ("FAILED", r.failed), ("CRASHED", r.crashed), ("CANCELLED", r.cancelled),
        ("IN_PROGRESS", r.in_progress)) if n}
    assert got == runs
    assert f.runs.total == sum(runs.values()) and f.runs.drill_runs >= 1
    assert {"ledger-loss", "backup-failure"} <= {r.flow_name for r in f.runs.by_flow}

    assert f.consistency is not None and f.consistency["checked_incidents"] >= 3
    assert not [p for p in f.consistency["problems"] if p["incident_id"] in ids and p["severity"] == "error"]

    # files
    folder = Path(outcome.report_dir)
    assert folder == runtime.settings.reports_dir / "monthly" / month
    assert {p.name for p in (folder / "charts").iterdir()} == CHARTS
    assert json.loads((folder / "figures.json").read_text(encoding="utf-8"))["incidents"]["total"] == 2
    assert "月度合规报告" in (folder / "report.html").read_text(encoding="utf-8")

    # the email: one per management address, charts attached and inline, byte for byte
    recipients = management_recipients(runtime.contacts)
    mails = monthly_mails(sink)[before:]
    assert len(mails) == len(recipients) and sorted(outcome.sent) == sorted(r.address for r in recipients)
    for message in mails:
        attached = {part.get_filename(): part.get_content() for part in message.iter_attachments()}
        assert set(attached) == CHARTS
        html = message.get_body(preferencelist=("html",)).get_content()
        for name, data in attached.items():
            assert data.startswith(b"\x89PNG")
            assert "data:image/png;base64," + base64.b64encode(data).decode("ascii") in html, name
        assert "MTTA" in html and "【月度合规报告】" in str(message["subject"])

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(
            any_=[f"monthly-report-{month}", f"monthly-figures-{month}"])))
    assert {a.key for a in artifacts} == {f"monthly-report-{month}", f"monthly-figures-{month}"}
    assert any("月度合规报告" in str(a.data) for a in artifacts if a.type == "markdown")

    # a re-run of the same month, in English and through the CLI: filed again, sent to nobody twice
    monkeypatch.setenv("LEDGERGUARD_LANGUAGE", "en")
    reset_settings()
    reset_runtime()
    result = CliRunner().invoke(app, ["report", "monthly", "--month", month, "--json"])
    assert result.exit_code == 0, result.output
    again = json.loads(result.output)
    assert again["sent"] == [] and sorted(again["skipped"]) == sorted(outcome.sent)
    assert len(monthly_mails(sink)) == before + len(recipients)
    assert again["figures"]["incidents"]["total"] == 2
    english = (folder / "report.html").read_text(encoding="utf-8")
    assert "monthly compliance report" in english and "月度合规报告" not in english

    bad = CliRunner().invoke(app, ["report", "monthly", "--month", "2026-13"])
    assert bad.exit_code == 2 and "--month" in bad.output and "2026-13" in bad.output
