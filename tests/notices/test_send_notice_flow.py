"""The `send-notice` flow (the Prefect UI's form) and drills: a person's typed decision approves and
sends once, a refused decision fails the run with its reason, and a drill's notices are drill-marked
and never reach a client."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.notices.conftest import drafts, mails, timeline_kinds

pytestmark = pytest.mark.prefect


def decide(**decision):
    from flows.notices import send_notice
    from ledgerguard.notices.models import NoticeDecision

    return send_notice(NoticeDecision(**decision), return_state=True)


def notices_mail(sink) -> list:
    return [m for m in mails(sink) if "告知函" in str(m["Subject"])]


def test_the_send_notice_form_approves_and_sends_once_and_refuses_an_unauthorised_person(insider):
    from deployments import spec

    runtime, outcome, sink = insider["runtime"], insider["outcome"], insider["sink"]
    incident = outcome.incident_id
    clients = drafts(runtime, incident, kind="client")
    owner = runtime.contacts.with_role("owner")[0]
    hr = runtime.contacts.with_role("hr")[0]

    # the deployment's form is the typed decision (what the UI renders)
    schema = spec("send-notice").flow.parameters.model_dump()
    assert "decision" in schema["properties"] and "NoticeDecision" in str(schema["definitions"])

    refused = decide(notice_id=clients[0]["id"], decision="reject", by=hr.id, reason="not ours to say")
    assert refused.is_failed() and "may not approve a client notice" in str(refused.message or refused.result(
        raise_on_failure=False))
    assert drafts(runtime, incident, kind="client")[0]["status"] == "drafted"

    state = decide(notice_id=clients[0]["id"][:8], decision="approve", by=owner.id, reason="checked with legal")
    assert state.is_completed(), state
    result = state.result()
    assert result["status"] == "sent" and result["notice"]["decided_by"] == owner.id
    assert len(notices_mail(sink)) == 1
    again = decide(notice_id=clients[0]["id"], decision="approve", by=owner.id).result()
    assert again["status"] == "already_sent" and len(notices_mail(sink)) == 1

    rejected = decide(notice_id=clients[1]["id"], decision="reject", by=owner.id, reason="wrong client").result()
    assert rejected["status"] == "rejected"
    row = next(r for r in drafts(runtime, incident, kind="client") if r["id"] == clients[1]["id"])
    assert row["status"] == "rejected" and row["reason"] == "wrong client" and row["decided_by"] == owner.id
    assert len(notices_mail(sink)) == 1
    kinds = timeline_kinds(runtime, incident)
    assert kinds.count("notice.approved") == 1 and kinds.count("notice.rejected") == 1


def test_a_drills_notices_are_drill_marked_and_go_to_the_drill_mailbox_never_to_a_client(live_unattended):
    from flows import drill
    from ledgerguard.channels.contacts import drill_recipients
    from ledgerguard.drills.models import DrillRequest
    from ledgerguard.runtime import get_runtime

    sink = live_unattended["sink"]
    outcome = drill(DrillRequest(emergency_type="insider_exfiltration"), return_state=True).result()
    runtime = get_runtime()
    rows = drafts(runtime, outcome.incident_id)
    assert {r["kind"] for r in rows} >= {"pipl57", "client"}
    for r in rows:
        first = Path(r["path"]).read_text(encoding="utf-8").splitlines()[0]
        assert "【演练】" in first, (r["kind"], first)
    assert outcome.measures["notices_complete"]["value"] == 1  # the drill still scores the PIPL draft

    client = next(r for r in rows if r["kind"] == "client")
    owner = runtime.contacts.with_role("owner")[0]
    result = decide(notice_id=client["id"], decision="approve", by=owner.id).result()
    assert result["status"] == "sent" and "drill recipients" in result["deliveries"][0]["drill"]
    [message] = notices_mail(sink)
    assert "【演练】" in str(message["Subject"])
    assert {a.strip() for a in str(message["To"]).split(",")} <= {r.address for r in drill_recipients(runtime.contacts)}
