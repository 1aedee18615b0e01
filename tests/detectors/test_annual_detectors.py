from __future__ import annotations

import shutil
from datetime import datetime, timezone

import pytest

from ledgerguard.agency import load_agency
from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import SHANGHAI
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.sources import annual as src

SCENARIO_E = datetime(2026, 6, 25, 9, 0, tzinfo=SHANGHAI)


def detect(agency, scratch, resource, now, **params):
    ctx = DetectionContext(agency=agency, resource=resource, now=now, scratch_dir=scratch,
                           params={"items": list(src.ITEMS), "warn_days": 15, **params})
    return get_detector("annual.unfiled_count").detect(ctx)


def inject(agency, resource, now, **kwargs):
    return get_injector("annual.inject_unfiled").inject(
        InjectionContext(agency=agency, resource=resource, now=now, seed=4), **kwargs)


def test_quiet_on_a_healthy_agency(agency, scratch):
    now = datetime.now(timezone.utc)
    year = now.astimezone(SHANGHAI).year
    for y in (year - 1, year):
        result = detect(agency, scratch, f"annual:{y}", now)
        assert result.finding is None and f"annual items {y}" in result.clear_reason


def test_fires_after_injection_with_facts(agency, scratch):
    now = datetime(2026, 6, 20, 10, 0, tzinfo=SHANGHAI)
    report = inject(agency, "annual:2026", now, count=3)
    assert report.changes["count"] == 3
    f = detect(agency, scratch, "annual:2026", now).finding
    assert f is not None
    for name in COMMON_FACTS:
        assert name in f.facts
    assert f.facts["deadline_name"] == "business_annual_report"
    assert f.facts["items_unfiled"] == 3 and f.facts["clients_affected"] == 3
    assert sorted(f.facts["affected_clients"]) == report.changes["clients"]
    # 22, 23, 24, 25, 26, 29, 30 June are working days (no holiday in between)
    assert f.facts["working_days_to_deadline"] == 7
    assert f.facts["listing_risk"] is True and f.facts["deadline_passed"] is False
    # outside the warning window: clear, with the counts in the reason
    early = datetime(2026, 5, 1, 10, 0, tzinfo=SHANGHAI)
    result = detect(agency, scratch, "annual:2026", early)
    assert result.finding is None and "business_annual_report: 3 open" in result.clear_reason
    # after the deadline it still fires, and the consequence is statutory now
    late = detect(agency, scratch, "annual:2026", datetime(2026, 7, 3, 10, tzinfo=SHANGHAI)).finding
    assert late.facts["deadline_passed"] is True and late.facts["days_overdue"] == 3
    assert late.facts["statutory_consequence"] is True


def test_restore_and_eit_item(agency, scratch):
    now = datetime(2026, 5, 27, 10, 0, tzinfo=SHANGHAI)   # before 汇算清缴 on 05-31
    injector = get_injector("annual.inject_unfiled")
    ctx = InjectionContext(agency=agency, resource="annual:2026", now=now, seed=2)
    report = injector.inject(ctx, count=2, item="eit_annual_reconciliation")
    f = detect(agency, scratch, "annual:2026", now).finding
    assert f.facts["deadline_name"] == "eit_annual_reconciliation" and f.facts["listing_risk"] is False
    injector.restore(ctx, report)
    assert detect(agency, scratch, "annual:2026", now).finding is None


def test_bad_input(agency, scratch):
    with pytest.raises(ValueError, match="annual:<year>"):
        detect(agency, scratch, "annual:26", SCENARIO_E)
    path = src.items_path(agency)
    path.write_text("client_id,year,item,status,submitted_at\nC0001,2026,tax_party,pending,\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="line 2") as exc:
        detect(agency, scratch, "annual:2026", SCENARIO_E)
    assert exc.value.field == "item" and "annual-items.csv" in str(exc.value)
    path.write_text("client_id,year,item,status,submitted_at\nC0777,2026,business_annual_report,pending,\n",
                    encoding="utf-8")
    with pytest.raises(AgencyDataError, match="clients.csv"):
        detect(agency, scratch, "annual:2026", SCENARIO_E)


# -- scenario E: 2026-06-25, 14 of 180 clients have not submitted their 工商年报 → 二级 -----------
@pytest.fixture(scope="module")
def agency_180(tmp_path_factory):
    from ledgerguard.sample import generate_agency

    root = tmp_path_factory.mktemp("scenario-e") / "agency"
    generate_agency(root, clients=180, nights=1, seed=25, now=SCENARIO_E)
    return root


def test_scenario_e_annual_report_backlog(agency_180, tmp_path):
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.response.detection import run_detectors

    root = tmp_path / "agency"
    shutil.copytree(agency_180, root)
    agency = load_agency(root)
    catalog = load_catalog()
    entry = catalog.get("annual_deadline")
    scratch = tmp_path / "scratch"
    healthy = run_detectors(entry=entry, agency=agency, resource="annual:2026", scratch_dir=scratch, now=SCENARIO_E)
    assert healthy.findings == [] and healthy.clear_reasons

    inject(agency, "annual:2026", SCENARIO_E, count=14, item="business_annual_report")
    detection = run_detectors(entry=entry, agency=agency, resource="annual:2026", scratch_dir=scratch,
                              now=SCENARIO_E)
    facts = detection.facts
    assert facts["clients_affected"] == 14 and facts["clients_total"] == 180 and facts["items_unfiled"] == 14
    assert facts["working_days_to_deadline"] == 3          # 26, 29, 30 June
    a = classify(entry=entry, rubric=catalog.rubric, facts=facts, detected_at=SCENARIO_E,
                 calendar=catalog.calendar, language="zh-CN")
    assert a.level.value == 2
    rules = {line.rule for line in a.fired}
    assert {"clients_10_plus", "deadline_5_working_days", "listing_risk"} <= rules
    assert a.impact.value == "H" and a.urgency.value == "M"
    obligations = {o.id: o for o in a.obligations}
    assert "business_annual_report" in obligations and "eit_annual_reconciliation" not in obligations
    assert obligations["business_annual_report"].deadline.astimezone(SHANGHAI).date().isoformat() == "2026-06-30"
