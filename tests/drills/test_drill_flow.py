"""Drills under Prefect: the real ledger-loss and ransomware flows on a sandbox copy of the agency.

Production stays byte-for-byte as it was, every message is drill-marked and goes to the drill
recipients, the score and its measures land in the register and the evaluation report at the
SMTP sink; a drill that misses its RTO scores lower and opens an improvement item."""

from __future__ import annotations

import email
import email.policy
import shutil

import pytest
import yaml

pytestmark = pytest.mark.prefect


def new_mails(sink, before: set[str]) -> list:
    out = []
    for path in sorted(sink.directory.glob("*.eml")):
        if path.name not in before:
            out.append(email.message_from_bytes(path.read_bytes(), policy=email.policy.default))
    return out


def mail_names(sink) -> set[str]:
    return {p.name for p in sink.directory.glob("*.eml")}


def run_drill(emergency_type: str, **kwargs):
    from flows import drill
    from ledgerguard.drills.models import DrillRequest

    return drill(DrillRequest(emergency_type=emergency_type, **kwargs), return_state=True).result()


@pytest.mark.parametrize("emergency_type", ["ledger_loss", "ransomware"])
def test_a_drill_runs_the_real_flow_on_a_sandbox_and_is_scored(live_unattended, emergency_type):
    from ledgerguard.catalog.models import DRILL_MEASURES
    from ledgerguard.channels.contacts import drill_recipients
    from ledgerguard.drills import service as drills
    from ledgerguard.register import service as register
    from ledgerguard.runtime import get_runtime

    sink = live_unattended["sink"]
    production = live_unattended["agency_dir"]
    before_sums = drills.checksums(production)
    before_mail = mail_names(sink)

    outcome = run_drill(emergency_type)

    assert drills.checksums(production) == before_sums  # production untouched, byte for byte
    assert outcome.production_untouched is True
    runtime = get_runtime()
    with runtime.session() as db_session:
        row = drills.get_drill(db_session=db_session, drill_id=outcome.drill_id)
        incident = register.get_incident(db_session=db_session, incident_id=row.incident_id)
        timeline = [e.kind for e in register.get_timeline(db_session=db_session, incident_id=incident.id)]
        assert row.status == "scored" and row.score == outcome.score and row.score is not None
        assert set(row.measures) == set(DRILL_MEASURES)
        assert row.measures["detected"]["value"] == 1 and row.measures["level_matched"]["value"] == 1
        assert row.measures["acknowledged"]["value"] == 1  # the stand-in took it over
        assert incident.drill is True and incident.status == "closed"
        assert incident.dedup_key.startswith(f"drill:{outcome.drill_id}:")
        assert "drill.scored" in timeline and "notification.sent" in timeline
        assert register.list_incidents(db_session=db_session, drill=False) == []  # no real incident
    assert (row.sandbox and str(production) not in row.sandbox)

    mails = new_mails(sink, before_mail)
    assert mails
    for message in mails:  # every message of the drill carries the drill mark
        assert "【演练】" in message["Subject"], message["Subject"]
    drill_box = {r.address for r in drill_recipients(runtime.contacts)}
    assert drill_box
    staff = [m for m in mails if "演练评估" not in m["Subject"]]
    assert staff and all(set(a.strip() for a in m["To"].split(",")) <= drill_box for m in staff)
    reports = [m for m in mails if "演练评估" in m["Subject"]]
    assert reports, [m["Subject"] for m in mails]
    body = reports[0].get_body(preferencelist=("html",)).get_content()
    assert f"{outcome.score:.1f}" in body and "改进事项" in body


def test_a_drill_that_misses_its_rto_scores_lower_and_opens_an_improvement_item(live_unattended, tmp_path,
                                                                                  monkeypatch):
    from ledgerguard.config import PROJECT_ROOT, reset_settings
    from ledgerguard.drills import service as drills
    from ledgerguard.improvements import service as improvements
    from ledgerguard.runtime import get_runtime, reset_runtime

    on_time = run_drill("ledger_loss")
    assert on_time.measures["rto_met"]["value"] == 1

    catalog = tmp_path / "catalog"
    shutil.copytree(PROJECT_ROOT / "catalog", catalog)
    path = catalog / "ledger_loss.yaml"
    entry = yaml.safe_load(path.read_text(encoding="utf-8"))
    entry["sla"]["rto_hours"] = 0.0001  # 0.36 s: no real restore is that fast
    path.write_text(yaml.safe_dump(entry, allow_unicode=True, sort_keys=False), encoding="utf-8")
    monkeypatch.setenv("LEDGERGUARD_CATALOG_DIR", str(catalog))
    reset_settings()
    reset_runtime()

    late = run_drill("ledger_loss")
    assert late.measures["rto_met"]["value"] == 0 and late.measures["recovered"]["value"] == 1
    assert late.score < on_time.score
    item = next(i for i in late.improvements if i["measure"] == "rto_met")
    with get_runtime().session() as db_session:
        row = improvements.get_item(db_session=db_session, item_id=item["id"])
        assert row.status == "open" and row.source == "drill" and row.owner and row.due_at
        assert row.source_key == "drill:ledger_loss:deleted_and_restored:rto_met"
        assert drills.get_drill(db_session=db_session, drill_id=late.drill_id).score == late.score


def test_the_monthly_drill_plays_this_months_type_of_the_rotation(live_unattended):
    from flows import monthly_drill
    from ledgerguard.drills.service import pick_monthly
    from ledgerguard.models import utcnow
    from ledgerguard.runtime import get_runtime

    runtime = get_runtime()
    expected = pick_monthly(policy=runtime.catalog.drills, type_ids=list(runtime.catalog.entries),
                            on=utcnow().astimezone(runtime.agency.tz))
    outcome = monthly_drill(return_state=True).result()
    assert outcome.emergency_type == expected and outcome.score is not None
    assert outcome.production_untouched is True
