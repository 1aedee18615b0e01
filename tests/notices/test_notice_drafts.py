"""Notice drafts from a real insider-exfiltration run: drafted for a person's approval, nothing reaches a
client before it, approval only by an approving role and bound to the file's bytes, sent exactly once,
and versioned when — and only when — the incident's facts change."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.notices.conftest import drafts, mails, obligation_status, run_insider, timeline_kinds

pytestmark = pytest.mark.prefect

runner = CliRunner()


def cli(*args):
    from ledgerguard.cli import app

    return runner.invoke(app, ["notices", *args])


def test_a_real_run_drafts_pipl_client_and_police_notices_and_sends_nothing_outside(insider):
    from ledgerguard.notices.drafting import load_runtime_policy
    from ledgerguard.notices.service import missing_contents
    from ledgerguard.response.reporting import pipl57_notice_path

    runtime, outcome, sink = insider["runtime"], insider["outcome"], insider["sink"]
    incident = outcome.incident_id
    rows = drafts(runtime, incident)
    affected = runtime.agency.client_ids  # the injected export touched every client of the small agency
    assert sorted((r["kind"], r["audience"]) for r in rows) == sorted(
        [("pipl57", "individuals"), ("police", "police")] + [("client", c) for c in affected])
    assert all(r["status"] == "drafted" and r["version"] == 1 for r in rows)
    policy = load_runtime_policy(runtime)
    for r in rows:
        data = Path(r["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["content_sha256"]
        assert missing_contents(kind=policy.kind(r["kind"]), language="zh-CN", text=data.decode()) == [], r["path"]
    # the PIPL Art. 57 draft is still at the path drills and the report read, with the same text
    pipl = next(r for r in rows if r["kind"] == "pipl57")
    assert pipl57_notice_path(runtime.settings.reports_dir, incident).read_bytes() == Path(pipl["path"]).read_bytes()
    client = next(r for r in rows if r["audience"] == affected[0])
    text = Path(client["path"]).read_text(encoding="utf-8")
    assert runtime.agency.client(affected[0]).name in text and "身份证号码" in text
    assert "【演练】" not in text  # a real incident's notice carries no drill mark
    assert timeline_kinds(runtime, incident).count("notice.drafted") == 1

    # nothing reached a client (nor the accountants who pass client notices on) before approval
    subjects = [str(m["Subject"]) for m in mails(sink)]
    assert subjects and not [s for s in subjects if "告知函" in s], subjects
    with runtime.session(read_only=True) as db_session:
        from ledgerguard.register import service as register

        stages = {n.stage for n in register.list_notifications(db_session=db_session, incident_id=incident)}
    assert "notice" not in stages
    assert obligation_status(runtime, incident)["pipl_57_entrusted"] == "open"

    listed = cli("list", "--incident", incident[:8])
    assert listed.exit_code == 0 and listed.output.count("drafted") == len(rows), listed.output


def test_approval_needs_an_approving_role_is_bound_to_the_file_and_sends_exactly_once(insider):
    runtime, outcome, sink = insider["runtime"], insider["outcome"], insider["sink"]
    incident = outcome.incident_id
    client_id = runtime.agency.client_ids[1]
    notice = next(r for r in drafts(runtime, incident, kind="client") if r["audience"] == client_id)
    accountant = runtime.contacts.person(runtime.agency.client(client_id).accountant_id)
    plain = next(p for p in runtime.contacts.people if set(p.roles) == {"accountants"})
    manager = runtime.contacts.with_role("manager")[0]

    refused = cli("approve", notice["id"], "--by", plain.id)
    assert refused.exit_code == 1 and "may not approve a client notice" in refused.output, refused.output
    assert "approving roles: owner, manager, data_protection" in refused.output
    unknown = cli("approve", notice["id"], "--by", "nobody")
    assert unknown.exit_code == 1 and "unknown person 'nobody'" in unknown.output
    early = cli("send", notice["id"], "--by", manager.id)
    assert early.exit_code == 1 and "approve it first" in early.output

    approved = cli("approve", notice["id"][:10], "--by", manager.id)
    assert approved.exit_code == 0, approved.output
    assert not [m for m in mails(sink) if "告知函" in str(m["Subject"])]  # approved is not sent

    # one byte changed in the draft file after approval: nothing goes out, the file is named
    path = Path(notice["path"])
    original = path.read_bytes()
    path.write_bytes(original.replace("事件情况".encode(), "事件情况 ".encode(), 1))
    changed = cli("send", notice["id"])
    assert changed.exit_code == 1 and str(path) in changed.output, changed.output
    assert "changed after drafting" in changed.output
    assert not [m for m in mails(sink) if "告知函" in str(m["Subject"])]

    # a person re-drafts: the recorded text is restored (no new version), then it is sent once
    restored = cli("draft", incident, "--by", manager.id)
    assert restored.exit_code == 0 and "unchanged v1" in restored.output, restored.output
    assert path.read_bytes() == original and "notice.restored" in timeline_kinds(runtime, incident)
    sent = cli("send", notice["id"])
    assert sent.exit_code == 0 and "sent" in sent.output, sent.output
    out = [m for m in mails(sink) if "告知函" in str(m["Subject"])]
    assert len(out) == 1 and str(out[0]["To"]) == accountant.email
    body = out[0].get_body(preferencelist=("plain",)).get_content()
    assert runtime.agency.client(client_id).name in body and "身份证号码" in body
    again = cli("send", notice["id"])
    assert again.exit_code == 0 and "nothing sent again" in again.output
    assert len([m for m in mails(sink) if "告知函" in str(m["Subject"])]) == 1

    row = next(r for r in drafts(runtime, incident, kind="client") if r["id"] == notice["id"])
    assert row["status"] == "sent" and row["decided_by"] == manager.id and row["sent_to"][0]["via"] == accountant.id
    kinds = timeline_kinds(runtime, incident)
    assert kinds.count("notice.approved") == 1 and kinds.count("notice.sent") == 1
    # the entrusted processor's duty to inform is met only when every affected client has been told
    assert obligation_status(runtime, incident)["pipl_57_entrusted"] == "open"
    for other in drafts(runtime, incident, kind="client"):
        if other["status"] == "drafted":
            result = cli("approve", other["id"], "--by", manager.id, "--send")
            assert result.exit_code == 0, result.output
    assert obligation_status(runtime, incident)["pipl_57_entrusted"] == "met"
    assert len([m for m in mails(sink) if "告知函" in str(m["Subject"])]) == len(runtime.agency.client_ids)


def test_the_same_facts_add_no_version_and_new_facts_supersede_what_has_not_gone_out(insider):
    from ledgerguard.detectors import InjectionContext, get_injector

    runtime, outcome = insider["runtime"], insider["outcome"]
    incident = outcome.incident_id
    before = drafts(runtime, incident, include_superseded=True)

    assert run_insider().incident_id == incident  # the record stage again, same facts
    assert drafts(runtime, incident, include_superseded=True) == before
    assert timeline_kinds(runtime, incident).count("notice.drafted") == 1

    owner = runtime.contacts.with_role("owner")[0]
    pipl = next(r for r in before if r["kind"] == "pipl57")
    police = next(r for r in before if r["kind"] == "police")
    assert cli("approve", pipl["id"], "--by", owner.id).exit_code == 0
    assert cli("approve", police["id"], "--by", owner.id, "--send").exit_code == 0
    assert cli("filed", police["id"], "--by", owner.id, "--ref", "深公网安 2026-118").exit_code == 0

    # another colleague's bulk export: the findings change, so the notices that state them get a new
    # version (the first exporter's account is disabled by now)
    from ledgerguard.register import service as register

    with runtime.session(read_only=True) as db_session:
        first = {u for f in register.list_findings(db_session=db_session, incident_id=incident)
                 for u in (f.facts or {}).get("users", [])}
    other = next(p.id for p in runtime.contacts.with_role("accountants") if p.id not in first)
    get_injector("dlp.inject_bulk_export").inject(
        InjectionContext(agency=runtime.agency, resource="user:all", scratch_dir=runtime.settings.scratch_dir),
        user=other, rows=12000, minutes_ago=5)
    run_insider()
    after = {(r["kind"], r["audience"], r["version"]): r for r in drafts(runtime, incident, include_superseded=True)}
    assert after[("pipl57", "individuals", 1)]["status"] == "superseded"  # approved, never sent: replaced
    assert after[("pipl57", "individuals", 2)]["status"] == "drafted"
    assert after[("police", "police", 1)]["status"] == "sent"               # filed: stays what it was
    assert after[("police", "police", 2)]["status"] == "drafted"
    assert Path(after[("police", "police", 1)]["path"]).read_bytes() != Path(after[("police", "police", 2)]["path"]).read_bytes()
    superseded = cli("approve", pipl["id"], "--by", owner.id)
    assert superseded.exit_code == 1 and "superseded" in superseded.output
    assert timeline_kinds(runtime, incident).count("notice.drafted") == 2
