"""Scenario A (shared/domain/scenarios.md): e-tax outage on the October 2026 deadline day.

Planted into a generated 210-client agency: 37 clients still have VAT to file for 2026-09, and from
13:40 the provincial e-tax bureau answers 502 and time-outs on 5-minute probes for 3 h. At 16:40
the detectors (one live probe against a real local server answering 502) and the classifier must
grade it 一级, with no security obligations, and the late-filing duties (征管法 Arts. 62 and 32).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import yaml

from ledgerguard.calendar import SHANGHAI
from ledgerguard.catalog import load_catalog
from ledgerguard.classification.service import classify
from ledgerguard.config import PROJECT_ROOT
from ledgerguard.detectors import InjectionContext, get_injector
from ledgerguard.models import Level, Rating, RegulatoryGrade
from ledgerguard.response.detection import run_detectors
from ledgerguard.sample import generate_agency
from ledgerguard.sample.datasets.probes import plant_etax_outage
from ledgerguard.sources import probes as src
from tests.support.http_stub import HttpStub

NOW = datetime(2026, 10, 26, 16, 40, tzinfo=SHANGHAI)
OUTAGE_START = datetime(2026, 10, 26, 13, 40, tzinfo=SHANGHAI)
PERIOD = "2026-09"


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(PROJECT_ROOT / "catalog")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenario-a") / "agency"
    agency = generate_agency(root, clients=210, nights=1, seed=26, now=NOW.astimezone(timezone.utc))
    plant = plant_etax_outage(agency, now=NOW, unfiled=37, minutes=180, interval_minutes=5)
    assert plant["period"] == PERIOD
    return agency, plant["portal"], plant["unfiled_clients"], plant["injection"]


def test_the_calendar_agrees_october_26_is_the_deadline(catalog):
    assert src.period_deadline(catalog.calendar, PERIOD) == datetime(2026, 10, 26, 23, 59, 59, tzinfo=SHANGHAI)
    assert catalog.calendar.next_monthly_deadline(NOW) == datetime(2026, 10, 26, 23, 59, 59, tzinfo=SHANGHAI)


def test_scenario_a_is_detected_from_the_data_and_graded_level_one(planted, catalog, tmp_path):
    agency, portal, unfiled, report = planted
    assert len(agency.client_ids) == 210 and report["changes"]["failed_probes"] == 2 * 37
    with HttpStub([502]) as server:
        path = src.targets_path(agency)
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        for t in spec["targets"]:
            if t["kind"] == "etax" and t["portal"] == portal and t["endpoint"] == "login":
                t.update(url=f"http://127.0.0.1:{server.port}/sso/login", live=True, timeout_s=3)
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
        entry = catalog.get("etax_outage")
        detection = run_detectors(entry=entry, agency=agency, resource=f"etax:{portal}",
                                  scratch_dir=tmp_path / "scratch", now=NOW)
    assert server.hits == 1  # the live login probe ran once, at 16:40

    assert [f.detector for f in detection.findings] == ["etax.probe"]
    assert any(r.startswith("etax.filing_errors:") for r in detection.clear_reasons)
    facts = detection.facts
    assert facts["probe_failed_minutes"] == 180
    assert datetime.fromisoformat(facts["first_failure_at"]) == OUTAGE_START
    assert datetime.fromisoformat(facts["last_ok_at"]) == OUTAGE_START - timedelta(minutes=5)
    assert set(facts["error_kinds"]) == {"http_502", "timeout"}
    assert facts["failures"] == 2 * 37 + 1  # both endpoints every 5 min, plus the live probe
    assert facts["outage_external"] is True
    assert facts["filing_period"] == PERIOD
    assert facts["clients_unfiled"] == 37 and facts["clients_affected"] == 37
    assert sorted(facts["affected_clients"]) == unfiled and facts["unfiled_taxes"] == ["vat"]
    assert facts["clients_total"] == 210
    assert facts["hours_to_deadline"] == pytest.approx(7.33, abs=0.01)
    assert facts["official_extension"] is False
    evidence = [e for e in detection.findings[0].evidence if e.kind == "http"]
    failed = [e for e in evidence if not e.data["ok"] and e.data["target"].startswith(f"etax-{portal}")]
    assert len(failed) == 2 * 37 + 1

    a = classify(entry=entry, rubric=catalog.rubric, facts=facts, detected_at=NOW, calendar=catalog.calendar,
                 language="zh-CN")
    assert (a.impact, a.urgency, a.level) == (Rating.H, Rating.H, Level.ONE)
    fired = {line.rule for line in a.fired}
    assert {"clients_10_plus", "deadline_24h", "long_outage", "unfiled_near_deadline"} <= fired
    assert a.regulatory_grade == RegulatoryGrade.GENERAL
    ids = {o.id for o in a.obligations}
    assert not ids & {"pipl_57", "pipl_57_entrusted", "cac_report_4h", "cac_report_1h", "police_report"}
    by_id = {o.id: o for o in a.obligations}
    assert "62" in by_id["file_on_time"].law and "32" in by_id["late_payment_risk"].law
    assert "extension_application" in by_id  # Art. 27: apply for 延期申报 with the evidence
    assert "late_payment_surcharge" not in by_id  # the deadline has not passed yet
    deadline = datetime(2026, 10, 26, 23, 59, 59, tzinfo=SHANGHAI)
    assert by_id["file_on_time"].deadline == deadline and by_id["late_payment_risk"].deadline == deadline
    entry_roles = set(entry.roles_for(1))
    assert {"manager", "accountants"} <= entry_roles and entry.routing.notify_clients(1)


def test_after_the_deadline_the_surcharge_obligation_applies(planted, catalog, tmp_path):
    agency, portal, unfiled, _ = planted
    later = datetime(2026, 10, 27, 9, 0, tzinfo=SHANGHAI)
    get_injector("etax.inject_outage").inject(InjectionContext(agency=agency, resource=f"etax:{portal}", now=later),
                                              minutes=30, endpoints=["filing"])
    detection = run_detectors(entry=catalog.get("etax_outage"), agency=agency, resource=f"etax:{portal}",
                              scratch_dir=tmp_path, now=later, params_override={"etax.probe": {"live": False}})
    assert detection.facts["hours_to_deadline"] < 0 and detection.facts["clients_unfiled"] == 37
    a = classify(entry=catalog.get("etax_outage"), rubric=catalog.rubric, facts=detection.facts, detected_at=later,
                 calendar=catalog.calendar)
    assert "late_payment_surcharge" in {o.id for o in a.obligations}
