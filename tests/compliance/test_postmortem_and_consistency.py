"""Post-mortems and the consistency check on three real incidents, read from the real Prefect API.

Three incidents go through the real flows (two ledger losses, one wrong filing); each post-mortem
is checked against the register and against what Prefect's API says about the same runs; a
person's review becomes a revision and improvement items; deleting a flow run from Prefect and a
failed emergency run that recorded nothing are both reported by the consistency check."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta
from uuid import UUID

import pytest
from typer.testing import CliRunner

from tests.support.history import task_runs_settled

pytestmark = pytest.mark.prefect


def mails(sink) -> list:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(sink.directory.glob("*.eml"))]


def postmortem_mails(sink, incident_id: str) -> list:
    return [m for m in mails(sink) if "[复盘]" in str(m["subject"]) and incident_id in _body(m)]


def _body(message) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    return part.get_content() if part is not None else ""


@pytest.fixture
def three_incidents(live):
    from flows import ledger_loss, wrong_filing
    from ledgerguard.detectors import InjectionContext, get_injector
    from ledgerguard.models import utcnow
    from ledgerguard.response.models import LedgerLossRequest, WrongFilingRequest
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    clients = runtime.agency.client_ids
    live["started"] = utcnow()  # the test harness's server also holds earlier tests' runs
    outcomes = []
    for client in clients[:2]:
        get_injector("ledger.delete_vouchers").inject(
            InjectionContext(agency=runtime.agency, resource=f"ledger:{client}"), count=3)
        outcomes.append(ledger_loss(LedgerLossRequest(client_id=client, source="test"), return_state=True).result())
    today = utcnow().astimezone(runtime.agency.tz).date()
    period = f"{(today.replace(day=1) - timedelta(days=1)):%Y-%m}"
    get_injector("filing.inject_invoice_gap").inject(
        InjectionContext(agency=runtime.agency, resource=f"returns:{period}"),
        client=clients[2], amount_yuan=24615.38, tax_rate=0.13)
    outcomes.append(wrong_filing(WrongFilingRequest(period=period, source="test"), return_state=True).result())
    assert all(o.incident_id for o in outcomes), [o.status for o in outcomes]
    assert len({o.incident_id for o in outcomes}) == 3
    task_runs_settled([o.flow_run_id for o in outcomes])  # both readers must see the same history
    return outcomes


def run_postmortem(incident_id: str, **kwargs):
    from flows.postmortem import PostmortemRequest, postmortem

    return postmortem(PostmortemRequest(incident_id=incident_id, **kwargs), return_state=True).result()


def prefect_truth(run_ids: list[str]) -> dict[str, tuple[str, int]]:
    """Straight from Prefect's API: each run's state name and task-run count."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    out = {}
    with get_client(sync_client=True) as client:
        for run_id in run_ids:
            run = client.read_flow_run(UUID(run_id))
            tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
            out[run_id] = (run.state.name, len(tasks))
    return out


def test_post_mortems_match_prefect_and_the_register_state_the_exposure_and_take_a_review(three_incidents, live):
    """One run of the three incidents for the post-mortem checks (each incident costs seconds)."""
    check_post_mortems_against_prefect_and_the_register(three_incidents, live)
    check_wrong_filing_exposure(three_incidents, live)
    check_a_persons_review(three_incidents, live)
    check_the_monthly_report_of_the_three(three_incidents, live)


def check_post_mortems_against_prefect_and_the_register(three_incidents, live):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime
    from tasks.postmortem import incident_run_ids

    runtime = get_runtime()
    sink = live["sink"]
    for outcome in three_incidents:
        incident_id = outcome.incident_id
        pm = run_postmortem(incident_id)
        with runtime.session() as db_session:
            run_ids = incident_run_ids(db_session=db_session, incident_id=incident_id)
            incident = register.get_incident(db_session=db_session, incident_id=incident_id)
            obligations = register.list_obligations(db_session=db_session, incident_id=incident_id)
            notifications = register.list_notifications(db_session=db_session, incident_id=incident_id)
            actions = register.list_actions(db_session=db_session, incident_id=incident_id)
            timeline = register.get_timeline(db_session=db_session, incident_id=incident_id)
        truth = prefect_truth(run_ids)
        assert pm.runs == len(run_ids) >= 1 and pm.runs_missing == []
        zh = next(p for p in pm.files if p.endswith(".zh-CN.md"))
        en = next(p for p in pm.files if p.endswith(".en.md"))
        zh_text = open(zh, encoding="utf-8").read()
        en_text = open(en, encoding="utf-8").read()
        assert zh_text.startswith("# 事件复盘报告") and en_text.startswith("# Post-mortem")
        # Every run, with the state and the task-run count Prefect reports for it.
        for run_id, (state, task_count) in truth.items():
            section = zh_text.split(f"运行编号 `{run_id}`", 1)[1].split("\n###", 1)[0]
            assert f"状态 **{state}**" in section
            assert f"任务 {task_count} 个" in section
        # The register's side: level, every obligation's law, every action, the delivery table.
        assert f"| 事件编号 | `{incident_id}` |" in zh_text
        # The chain head it states is the incident's head when it was built (its own entries follow).
        built = max(i for i, e in enumerate(timeline) if e.kind == "postmortem.built")
        assert f"`{timeline[built - 1].hash}`（{built} 条）" in zh_text
        assert incident.timeline_count > built
        for ob in obligations:
            assert ob.law in zh_text
        for action in actions:
            assert action.title in zh_text
        by_channel: dict[str, list] = {}
        for n in notifications:
            if not n.step.startswith("postmortem:"):  # its own distribution comes after it is built
                by_channel.setdefault(n.channel, []).append(n)
        for channel, rows in by_channel.items():
            sent = sum(1 for n in rows if n.status == "sent")
            failed = sum(1 for n in rows if n.status == "failed")
            assert re.search(rf"\| {re.escape(channel)} \| {len(rows)} \| {sent} \| {failed} \|", zh_text), channel
        # The artifact Prefect keeps is the post-mortem itself.
        with get_client(sync_client=True) as client:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"postmortem-{incident_id}"])))
        assert any(a.data == zh_text for a in artifacts)
        # Sent once to every management address, with both languages attached.
        sent_mails = postmortem_mails(sink, incident_id)
        assert len(sent_mails) == len(pm.sent) >= 1
        names = sorted(part.get_filename() for part in sent_mails[0].iter_attachments())
        assert names == sorted(p.rsplit("/", 1)[-1] for p in pm.files)
        html = sent_mails[0].get_body(preferencelist=("html",)).get_content()
        assert "<table>" in html and incident_id in html

    # Re-running a post-mortem that changed nothing sends nothing again.
    first = three_incidents[0].incident_id
    before = len(postmortem_mails(sink, first))
    run_postmortem(first)
    assert len(postmortem_mails(sink, first)) == before


def check_wrong_filing_exposure(three_incidents, live):
    from ledgerguard.compliance.postmortem import load_penalties, obligation_outcome
    from ledgerguard.models import utcnow
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    incident_id = three_incidents[2].incident_id
    pm = run_postmortem(incident_id, send=False)
    penalties = load_penalties(runtime.settings.catalog_dir)
    with runtime.session() as db_session:
        obligations = register.list_obligations(db_session=db_session, incident_id=incident_id)
        findings = register.list_findings(db_session=db_session, incident_id=incident_id)
    gap = next(f.facts["tax_gap_yuan"] for f in findings if "tax_gap_yuan" in f.facts)
    en = open(next(p for p in pm.files if p.endswith(".en.md")), encoding="utf-8").read()
    with_rules = [o for o in obligations if o.obligation_id in penalties]
    assert with_rules, [o.obligation_id for o in obligations]
    for ob in with_rules:
        outcome = obligation_outcome({"status": ob.status, "deadline": ob.deadline, "met_at": ob.met_at,
                                      "immediate": ob.immediate}, now=utcnow())
        label = {"open": "open", "met_on_time": "met on time", "missed": "missed", "met_late": "met late"}[outcome]
        assert f"| `{ob.obligation_id}` | {penalties[ob.obligation_id].law} | {label} |" in en
    # 0.05 % a day on the tax gap: the daily surcharge the timely correction avoids.
    assert f"¥{gap * 0.0005:,.2f} per day" in en
    assert pm.sent == []


def check_a_persons_review(three_incidents, live):
    from ledgerguard.compliance.postmortem import PostmortemReviewInput
    from ledgerguard.improvements import service as improvements
    from ledgerguard.models import utcnow
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    people = [p.id for p in runtime.contacts.people]
    incident_id = three_incidents[0].incident_id
    due = (utcnow() + timedelta(days=20)).date()
    review = PostmortemReviewInput(
        entered_by=people[0], root_cause="An accountant deleted the month's vouchers while cleaning up drafts",
        contributing_factors=["no recycle bin on the bookkeeping server"], lessons="restore drills pay off",
        action_items=[{"title": "Enable the recycle bin on the ledger server", "owner": people[1], "due": due}])
    pm = run_postmortem(incident_id, review=review)
    assert pm.revision == 1 and pm.sent
    with runtime.session() as db_session:
        items = [i for i in improvements.list_items(db_session=db_session, source="postmortem")
                 if i.incident_id == incident_id]
    assert len(items) == 1 and items[0].owner == people[1] and items[0].due_at.date() == due
    zh = open(next(p for p in pm.files if p.endswith(".zh-CN.md")), encoding="utf-8").read()
    assert "**根本原因**：An accountant deleted" in zh and items[0].id in zh and "第 1 版" in zh
    # A second revision by CLI: the mail for the new revision goes out, the first stays the first.
    result = CliRunner().invoke(__import__("ledgerguard.cli", fromlist=["app"]).app, [
        "postmortem", "review", incident_id[:8], "--by", people[0], "--root-cause",
        "Vouchers deleted during a draft clean-up; the script had no dry run",
        "--action", f"Add a dry run to the clean-up script|{people[0]}|{due.isoformat()}"])
    assert result.exit_code == 0, result.output
    assert "2" in result.output
    unknown = CliRunner().invoke(__import__("ledgerguard.cli", fromlist=["app"]).app, [
        "postmortem", "review", incident_id, "--by", "nobody", "--root-cause", "whatever it was"])
    assert unknown.exit_code == 1 and "nobody" in unknown.output


def check_the_monthly_report_of_the_three(three_incidents, live):
    """The month's report, from the same register and the same Prefect API, says what they say."""
    from collections import Counter

    from prefect import get_client
    from sqlalchemy import select

    from flows.monthly_report import monthly_report
    from ledgerguard.models import utcnow
    from ledgerguard.register import service as register
    from ledgerguard.register.models import Notification, as_utc
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    month = f"{utcnow().astimezone(runtime.agency.tz):%Y-%m}"
    figures = monthly_report(month=month, send=False, return_state=True).result().figures
    start, end = figures.start, figures.end
    ids = [o.incident_id for o in three_incidents]
    with runtime.session() as db_session:
        incidents = [register.get_incident(db_session=db_session, incident_id=i) for i in ids]
        obligations = [o for i in ids for o in register.list_obligations(db_session=db_session, incident_id=i)
                       if start <= as_utc(o.deadline) < end]
        notifications = list(db_session.scalars(select(Notification)))
    assert figures.incidents.total == 3
    assert {c.key: c.count for c in figures.incidents.by_type} == dict(Counter(i.emergency_type for i in incidents))
    assert {c.key: c.count for c in figures.incidents.by_level} == dict(Counter(str(i.level) for i in incidents))
    assert figures.mtta.not_reached == sum(1 for i in incidents if i.acknowledged_at is None)
    assert figures.obligations.total == len(obligations)
    in_month = [n for n in notifications if start <= as_utc(n.created_at) < end]
    for channel in figures.delivery:
        rows = [n for n in in_month if n.channel == channel.channel]
        assert (channel.total, channel.sent, channel.failed) == (
            len(rows), sum(n.status == "sent" for n in rows), sum(n.status == "failed" for n in rows))
    # Prefect's side: every emergency run of the three is counted under its flow, completed.
    with get_client(sync_client=True) as client:
        names = {o.flow_run_id: client.read_flow(client.read_flow_run(UUID(o.flow_run_id)).flow_id).name
                 for o in three_incidents}
    by_flow = {f.flow_name: f for f in figures.runs.by_flow}
    for flow_name, count in Counter(names.values()).items():
        assert by_flow[flow_name].completed >= count


def test_the_consistency_check_reports_a_deleted_run_and_a_failed_run_without_record(three_incidents, live):
    from prefect import flow, tags

    from ledgerguard.cli import app
    from ledgerguard.compliance.models import FINAL_STATES
    from ledgerguard.models import utcnow
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime
    from tasks.consistency import run_check
    from tasks.history import delete_flow_run

    runtime = get_runtime()
    start, end = live["started"], utcnow() + timedelta(minutes=5)
    clean = run_check(runtime, start, end)
    assert clean.checked_incidents == 3 and clean.checked_runs >= 3
    assert [p for p in clean.problems if p.severity == "error"] == [], [str(p) for p in clean.problems]

    # A run of the first incident disappears from Prefect (a vacuum, a careless hand).
    victim = three_incidents[0]
    assert delete_flow_run(victim.flow_run_id)
    # An emergency run that crashed before it recorded anything.

    @flow(name="ledger-loss")
    def crashed_before_recording():
        raise RuntimeError("the ledger server was unreachable")

    with tags("emergency:ledger_loss"):
        state = crashed_before_recording(return_state=True)
    assert state.type.value in FINAL_STATES and state.is_failed()

    report = run_check(runtime, start, utcnow() + timedelta(minutes=5))
    kinds = {(p.kind, p.incident_id, p.flow_run_id) for p in report.problems}
    assert ("run_missing_in_prefect", victim.incident_id, victim.flow_run_id) in kinds
    failed_run = str(state.state_details.flow_run_id)
    assert ("failed_run_without_record", None, failed_run) in kinds
    assert not report.ok
    with runtime.session() as db_session:  # the register still holds the incident and its link
        links = [link.flow_run_id for link in register.list_flow_runs(db_session=db_session,
                                                                      incident_id=victim.incident_id)]
    assert victim.flow_run_id in links

    # The post-mortem says the run is gone instead of hiding it; the CLI exits 1 naming both.
    pm = run_postmortem(victim.incident_id, send=False)
    assert victim.flow_run_id in pm.runs_missing
    result = CliRunner().invoke(app, ["consistency", "--from", start.isoformat(timespec="seconds"),
                                      "--to", (utcnow() + timedelta(minutes=5)).isoformat(timespec="seconds")])
    assert result.exit_code == 1, result.output
    assert victim.flow_run_id in result.output and failed_run in result.output
