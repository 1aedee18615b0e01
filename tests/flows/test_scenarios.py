"""Scenarios A, B, E and F of shared/domain/scenarios.md, end to end under Prefect.

Each is planted into a generated sample agency through the drill injectors
(`ledgerguard.sample.scenarios`), then the type's flow runs as of the scenario's moment: the
detectors must find it in the files, the classifier grade it, the notifications reach the
people the catalog routes that level to (emails in a real SMTP sink), and the obligations land
in the register.
"""

from __future__ import annotations

import email
import email.policy

import pytest

pytestmark = pytest.mark.prefect


@pytest.fixture
def scenario_home(prefect_server, lg_home, smtp_sink):
    from tests.support.people import approving

    # A person with an approving role approves the destructive steps (the ransomware swap-in).
    with approving():
        yield lg_home, smtp_sink


def run_scenario(scenario_id: str, home):
    from flows import EMERGENCY_FLOWS
    from ledgerguard.config import reset_settings
    from ledgerguard.runtime import get_runtime, reset_runtime
    from ledgerguard.sample.scenarios import plant_scenario
    from tests.conftest import without_quiet_hours

    planted = plant_scenario(scenario_id, home / "agency")
    without_quiet_hours(home / "agency")   # what is sent must not depend on the hour the test runs
    reset_settings()
    reset_runtime()
    outcome = EMERGENCY_FLOWS[planted.emergency_type](planted.request, return_state=True).result()
    return planted, outcome, get_runtime()


def register_view(runtime, incident_id: str) -> dict:
    from ledgerguard.register import service as register

    with runtime.session() as db_session:
        incident = register.get_incident(db_session=db_session, incident_id=incident_id)
        return {
            "level": incident.level,
            "affected": list(incident.affected_clients or []),
            "obligations": {o.obligation_id for o in register.list_obligations(db_session=db_session,
                                                                                 incident_id=incident_id)},
            "sent_to": {n.recipient for n in register.list_notifications(db_session=db_session,
                                                                          incident_id=incident_id)
                        if n.status == "sent"},
        }


def mails(sink) -> list:
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
            for p in sorted(sink.directory.glob("*.eml"))]


def staff_emails(runtime, *roles: str) -> set[str]:
    """Who the roles reach now: the person on call for a role on the roster's rotation, else
    everyone holding the role."""
    from ledgerguard.response.notifying import on_call_now

    on_call = on_call_now(runtime=runtime, roles=list(roles))
    people = [p for role in roles for p in ([runtime.contacts.person(on_call[role])] if role in on_call
                                            else runtime.contacts.with_role(role))]
    return {p.email for p in people if p.email}


def assert_emailed(sink, addresses: set[str], level_label: str) -> None:
    """Every address got a notification whose subject carries the level."""
    got = {}
    for message in mails(sink):
        for address in str(message["To"]).split(","):
            got.setdefault(address.strip(), []).append(str(message["Subject"]))
    for address in addresses:
        assert any(level_label in subject for subject in got.get(address, [])), (address, got.get(address))


def test_scenario_a_etax_outage_on_deadline_day(scenario_home):
    home, sink = scenario_home
    planted, outcome, runtime = run_scenario("A", home)

    assert outcome.incident_created and outcome.level == 1, outcome.rationale
    view = register_view(runtime, outcome.incident_id)
    assert view["level"] == 1 and len(view["affected"]) == 37
    # not a security incident: no PIPL, CAC or police duty; the late-filing duties are there
    assert not {o for o in view["obligations"] if o.startswith(("pipl", "cac", "police"))}, view["obligations"]
    assert {"file_on_time", "late_payment_risk"} <= view["obligations"]
    assert_emailed(sink, staff_emails(runtime, "manager", "accountants", "duty_lead"), "一级")


def test_scenario_b_ransomware(scenario_home):
    home, sink = scenario_home
    planted, outcome, runtime = run_scenario("B", home)

    assert outcome.incident_created and outcome.level == 1, outcome.rationale
    assert outcome.regulatory_grade == "一般"  # 4,100 people: far below 1,000,000
    view = register_view(runtime, outcome.incident_id)
    assert len(view["affected"]) == 85
    assert {"pipl_57_entrusted", "police_report"} <= view["obligations"]
    assert not {o for o in view["obligations"] if o.startswith("cac")}, view["obligations"]
    assert_emailed(sink, staff_emails(runtime, "owner", "it", "data_protection"), "一级")
    notice = runtime.settings.reports_dir / outcome.incident_id / f"notice-pipl57-{outcome.incident_id}.md"
    text = notice.read_text(encoding="utf-8")
    assert "4100" in text and "身份证号码" in text
    # the runbook restored every encrypted ledger from the clean (72 h old) backup
    from ledgerguard.sources.fileshare import ledger_headers

    steps = {s.step_id: s for s in outcome.steps}
    for step in ("isolate_hosts", "find_clean_backup", "restore_to_staging", "verify_staging", "swap_in"):
        assert steps[step].status == "succeeded", (step, steps[step].summary)
    assert all(h.ok for h in ledger_headers(runtime.agency))
    assert steps["reenter_vouchers"].status == "open"  # 72 h of vouchers: a person's job


def test_scenario_e_annual_report_backlog(scenario_home):
    home, sink = scenario_home
    planted, outcome, runtime = run_scenario("E", home)

    assert outcome.incident_created and outcome.level == 2, outcome.rationale
    view = register_view(runtime, outcome.incident_id)
    assert len(view["affected"]) == 14
    assert "business_annual_report" in view["obligations"]
    assert_emailed(sink, staff_emails(runtime, "manager"), "二级")


def test_scenario_f_urgent_claim_books_supported_and_refuses_the_rest(scenario_home):
    from ledgerguard.ledgers import ledger_stats

    home, sink = scenario_home
    planted, outcome, runtime = run_scenario("F", home)

    assert outcome.incident_created and outcome.level == 4, outcome.rationale
    view = register_view(runtime, outcome.incident_id)
    assert "supported_claims_only" in view["obligations"]
    client = planted.planted["client"]
    accountant = runtime.agency.client(client).accountant_id
    accountant_email = next(p.email for p in runtime.contacts.people if p.id == accountant)
    assert_emailed(sink, {accountant_email} | staff_emails(runtime, "manager"), "四级")
    # booked only the 42 supported claims, with the trail; the 6 refused in writing
    import json

    from ledgerguard.sources import claims as claims_source

    booked = next(s for s in outcome.steps if s.step_id.startswith("book"))
    assert booked.status == "succeeded", booked.summary
    trail = json.loads(claims_source.trail_path(runtime.agency, planted.request.request_id).read_text(encoding="utf-8"))
    assert (trail["booked"], trail["refused"]) == (42, 6)
    refused = [d for d in trail["decisions"] if d["decision"] == "refused"]
    assert len(refused) == 6 and all(d["reason_text"] for d in refused)
    letter = claims_source.letters_dir(runtime.agency) / f"{planted.request.request_id}-refusal.txt"
    assert all(d["claim_id"] in letter.read_text(encoding="utf-8") for d in refused)
    stats = ledger_stats(runtime.agency.ledger_path(client))
    assert stats.balanced
