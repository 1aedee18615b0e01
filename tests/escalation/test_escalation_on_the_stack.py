"""Issue 5 on the running stack, with short real waits: the escalation chain, acknowledgements
(one-click link, the UI's resume form), frozen chains, quiet hours and the checklist.

Every wait polls with a deadline; a 四级 round waits 6 s in this catalog (tests/escalation/conftest.py).
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from tests.escalation.conftest import FAST, VIP_CLIENT, short_chains, write_chains
from tests.support.served import wait_for

pytestmark = pytest.mark.prefect


def _kinds(people, incident_id: str) -> list[str]:
    return [e.kind for e in people.timeline(incident_id)]


def test_no_ack_escalates_to_the_next_step_and_a_link_click_stops_the_chain(people):
    people.break_ledger("C0002")
    people.run_ledger_loss("C0002", dedup_key="esc:link")
    incident = people.incident("esc:link")
    assert incident.level == 4
    owner = people.person_with("owner")

    # Nobody acknowledges: 6 s later step 2 goes out to the owner, marked as escalation round 1.
    (round1,) = people.wait_mail(incident.id, "[升级 第1轮]", to=owner.email)
    text = round1.get_body(preferencelist=("plain",)).get_content()
    assert "无人确认接手" in text and incident.id in text
    assert "escalation.round" in _kinds(people, incident.id)

    # The owner clicks the one-click link in that message: the incident is theirs.
    answer = people.click(people.link_in(round1))
    assert answer.status_code == 200, answer.text
    acked = people.reload(incident.id)
    assert (acked.acknowledged_by, acked.acknowledged_via, acked.status) == (owner.id, "link", "acknowledged")
    assert acked.acknowledged_at > acked.opened_at

    # The chain stops: no round is left waiting, and round 2 (to HR) never goes out.
    wait_for(lambda: not [r for r in people.escalation_runs(incident.id)
                          if r["state_type"] in ("SCHEDULED", "PENDING", "RUNNING", "PAUSED")],
             timeout=60, what="the escalation runs to end")
    time.sleep(3 * FAST * 60)
    assert not people.mails(incident.id, "[升级 第2轮]")
    assert "escalation.exhausted" not in _kinds(people, incident.id)
    # A link works once.
    assert httpx.post(people.link_in(round1), timeout=30).status_code == 410


def test_an_acknowledgement_in_the_resume_form_takes_the_incident_over(people):
    from prefect.flow_runs import resume_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    people.break_ledger(VIP_CLIENT)
    people.run_ledger_loss(VIP_CLIENT, dedup_key="esc:ui")
    incident = people.incident("esc:ui")
    assert incident.level == 1, "the VIP rule of this catalog makes it 一级"
    responder = people.person_with("it")

    def suspended():
        return [r for r in people.escalation_runs(incident.id)
                if r["state_type"] == "PAUSED" and r["state"]["state_details"].get("pause_key") == "acknowledge"]

    (form_run,) = wait_for(suspended, timeout=90, what="the escalation form (a suspended round-0 run)")
    assert form_run["state_name"] == "Suspended"   # no process waits while people take their time
    with temporary_settings({PREFECT_API_URL: people.served.api_url}):
        resume_flow_run(form_run["id"], run_input={"responder": responder.id, "note": "我来处理"})

    acked = wait_for(lambda: (i := people.reload(incident.id)).acknowledged_at and i, timeout=90,
                     what="the acknowledgement from the form")
    assert (acked.acknowledged_by, acked.acknowledged_via) == (responder.id, "ui")
    entry = next(e for e in people.timeline(incident.id) if e.kind == "acknowledged")
    assert entry.actor == responder.id and entry.data["via"] == "ui" and entry.data["note"] == "我来处理"
    assert entry.data["mtta_seconds"] > 0

    def states():
        return {r["id"]: r["state_type"] for r in people.escalation_runs(incident.id)}

    final = wait_for(lambda: (s := states()) and all(v in ("COMPLETED", "CANCELLED") for v in s.values()) and s,
                     timeout=90, what="the form run to complete and the next round to be cancelled")
    assert final[form_run["id"]] == "COMPLETED"
    assert "CANCELLED" in final.values(), final   # the round that would have paged the owner
    assert not people.mails(incident.id, "[升级 第1轮]")


def test_an_edited_chain_does_not_change_an_incident_already_open(people):
    people.break_ledger("C0003")
    people.run_ledger_loss("C0003", dedup_key="esc:frozen-a")
    before = people.incident("esc:frozen-a")
    frozen = before.frozen_escalation["chains"]["4"]["rounds"]
    assert frozen[1]["roles"] == ["owner"]

    edited = short_chains()
    edited[4] = [{"notify": "routing", "wait_minutes": FAST}, {"notify": ["legal"], "wait_minutes": FAST}]
    write_chains(people.catalog, edited)
    try:
        people.run_ledger_loss("C0003", dedup_key="esc:frozen-b")
        after = people.incident("esc:frozen-b")
    finally:
        write_chains(people.catalog, short_chains())
    assert after.frozen_escalation["chains"]["4"]["rounds"][1]["roles"] == ["legal"]

    owner, legal = people.person_with("owner"), people.person_with("legal")
    people.wait_mail(before.id, "[升级 第1轮]", to=owner.email)
    people.wait_mail(after.id, "[升级 第1轮]", to=legal.email)
    assert not people.mails(before.id, "[升级 第1轮]", to=legal.email)
    assert not people.mails(after.id, "[升级 第1轮]", to=owner.email)

    # Nobody ever answers A: after its last round the miss is recorded and management is told.
    wait_for(lambda: "escalation.exhausted" in _kinds(people, before.id), timeout=120,
             what="incident A's chain to run out")
    management = people.contacts().management_list
    assert people.wait_mail(before.id, "[无人确认]", to=management[0])
    assert people.reload(before.id).acknowledged_at is None   # a miss is recorded, never papered over


def _roster(people) -> tuple:
    path = people.home / "agency" / "oncall" / "roster.yaml"
    return path, yaml.safe_load(path.read_text(encoding="utf-8"))


def test_quiet_hours_hold_a_level_4_while_a_level_1_at_the_same_moment_goes_out(people):
    path, roster = _roster(people)
    tz = ZoneInfo(roster.get("timezone") or "Asia/Shanghai")
    now = datetime.now(tz)
    # Quiet hours that end at the next whole minute at least 40 s away.
    end = (now + timedelta(seconds=40)).replace(second=0, microsecond=0) + timedelta(minutes=1)
    start = now - timedelta(hours=1)
    original = dict(roster["quiet_hours"])
    roster["quiet_hours"] = {"hours": f"{start:%H:%M}-{end:%H:%M}", "levels": [4], "non_working_days": False}
    path.write_text(yaml.safe_dump(roster, allow_unicode=True, sort_keys=False), encoding="utf-8")
    from ledgerguard.register import service as register

    def notifications(incident_id):
        with people.served.runtime().session() as db_session:
            rows = register.list_notifications(db_session=db_session, incident_id=incident_id)
            for n in rows:
                db_session.expunge(n)
            return rows

    try:
        people.break_ledger("C0004")
        people.break_ledger(VIP_CLIENT, count=2)
        people.run_ledger_loss("C0004", dedup_key="quiet:four")
        people.run_ledger_loss(VIP_CLIENT, dedup_key="quiet:one")
        four, one = people.incident("quiet:four"), people.incident("quiet:one")
        assert (four.level, one.level) == (4, 1)
        first = people.wait_mail(one.id, "^[一级]")
        assert datetime.now(tz) < end, "the 一级 went out during the quiet hours"
        # The staff notifications wait (the per-run report to management is a record, not a page).
        held = wait_for(lambda: [n for n in notifications(four.id) if n.step == "level4"], timeout=60,
                        what="the 四级's notifications")
    finally:
        roster["quiet_hours"] = original
        path.write_text(yaml.safe_dump(roster, allow_unicode=True, sort_keys=False), encoding="utf-8")
    assert first
    assert all(n.status == "deferred" for n in held), [(n.step, n.status) for n in held]
    assert {n.due_at.astimezone(tz).replace(second=0) for n in held} == {end}
    assert not people.mails(four.id, "^[四级]")

    # At the end of the quiet hours the held notifications go out, once.
    people.wait_mail(four.id, "^[四级]", timeout=end.timestamp() - time.time() + 90)
    assert datetime.now(tz) >= end
    sent = wait_for(lambda: (rows := [n for n in notifications(four.id) if n.step == "level4"])
                    and all(n.status == "sent" for n in rows) and rows, timeout=60, what="every held notification sent")
    assert all(n.sent_at.astimezone(tz) >= end for n in sent)
    arrived = wait_for(lambda: len(m := people.mails(four.id, "^[四级]")) >= len(sent) and m, timeout=30,
                       what="every held notification in the mailbox")
    assert len(arrived) == len(sent)   # each once


def test_the_sweep_starts_an_escalation_a_run_outside_the_stack_could_not(people):
    """A run where the escalation deployment was not served (`ledgerguard run`, the demo) leaves
    the incident with a frozen chain, `escalation.not_started` and a notification held for quiet
    hours; the escalation sweep starts its round 0, which delivers the held notification once."""
    from ledgerguard.channels.contacts import resolve_recipients
    from ledgerguard.classification.service import classify
    from ledgerguard.config import Settings
    from ledgerguard.escalation.service import freeze_chain
    from ledgerguard.models import Signal, Stage, idempotency_key, utcnow
    from ledgerguard.register import service as register
    from ledgerguard.response.notifying import recipient_label
    from ledgerguard.runtime import Runtime
    from tests.support.served import api

    runtime = Runtime(settings=Settings(home=people.home, catalog_dir=people.catalog))
    entry = runtime.catalog.get("ledger_loss")
    manager = people.person_with("manager")
    (recipient,) = [r for r in resolve_recipients(contacts=runtime.contacts, roles=["manager"]).recipients
                    if r.person_id == manager.id]
    with runtime.session() as db_session:
        incident, _ = register.open_or_join_incident(
            db_session=db_session, title="账套误删/损坏: ledger:C0001",
            signal=Signal(source="manual", emergency_type="ledger_loss", resource="ledger:C0001",
                          dedup_key="sweep:orphan"))
        assessment = classify(entry=entry, rubric=runtime.catalog.rubric, calendar=runtime.catalog.calendar,
                              facts={"clients_affected": 1, "affected_clients": ["C0001"]}, detected_at=utcnow())
        assert assessment.level == 4
        register.apply_assessment(db_session=db_session, incident_id=incident.id, assessment=assessment,
                                  affected_clients=["C0001"])
        freeze_chain(db_session=db_session, incident_id=incident.id, entry=entry, rubric=runtime.catalog.rubric, level=4)
        register.append_timeline(db_session=db_session, incident_id=incident.id, stage=Stage.NOTIFY.value,
                                 kind="escalation.not_started", message="escalation not started: not served")
        label = recipient_label(recipient)
        register.defer_notification(
            db_session=db_session, key=idempotency_key(incident_id=incident.id, stage="notify", recipient=label,
                                                       step="level4"),
            incident_id=incident.id, stage="notify", recipient=label, channel=recipient.channel, step="level4",
            template="notify_staff", subject="[四级] held", due_at=utcnow())
        incident_id = incident.id

    deployment = people.served.deployment("escalation-sweep", "escalation-sweep")
    api("POST", f"{people.served.api_url}/deployments/{deployment['id']}/create_flow_run", json={}).raise_for_status()

    wait_for(lambda: "escalation.started" in _kinds(people, incident_id), timeout=120,
             what="the sweep to start the missing escalation")
    (held,) = people.wait_mail(incident_id, "^[四级]", to=manager.email)
    with runtime.session() as db_session:
        (row,) = [n for n in register.list_notifications(db_session=db_session, incident_id=incident_id)
                  if n.step == "level4"]
        assert row.status == "sent" and row.attempts == 1
