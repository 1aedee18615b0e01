from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import SHANGHAI
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.sources import filings as src

DEADLINE_DAY = datetime(2026, 10, 26, 10, 0, tzinfo=SHANGHAI)     # scenario A: October deadline day


def detect(agency, scratch, resource="filings:current", now=None, **params):
    ctx = DetectionContext(agency=agency, resource=resource, params={"warn_hours": [48, 24], **params},
                           now=now or datetime.now(timezone.utc), scratch_dir=scratch)
    return get_detector("filing.tracker_backlog").detect(ctx)


def inject(agency, now, **kwargs):
    ctx = InjectionContext(agency=agency, resource="filings:current", now=now, seed=5)
    return get_injector("filing.inject_backlog").inject(ctx, **kwargs)


def test_quiet_on_a_healthy_agency(agency, scratch):
    result = detect(agency, scratch)
    assert result.finding is None
    assert src.current_period(datetime.now(timezone.utc), agency.tz) in result.clear_reason


def test_backlog_on_deadline_day(agency, scratch):
    report = inject(agency, DEADLINE_DAY, count=3, tax="vat")
    assert report.changes["period"] == "2026-09" and report.changes["returns"] == 3
    f = detect(agency, scratch, now=DEADLINE_DAY).finding
    assert f is not None
    for name in COMMON_FACTS:
        assert name in f.facts
    facts = f.facts
    assert facts["unfiled_returns"] == facts["returns_unfiled"] == 3
    assert facts["clients_affected"] == 3 and sorted(facts["affected_clients"]) == report.changes["clients"]
    assert facts["taxes"] == ["vat"]
    assert facts["deadline"].startswith("2026-10-26T23:59:59")
    assert 13 < facts["hours_to_deadline"] <= 14
    assert facts["warn_stage_hours"] == 24
    assert facts["deadline_passed"] is False and "late_fee_so_far_yuan" not in facts
    assert facts["tax_due_yuan"] > 0
    # the explicit period resource is the same thing
    assert detect(agency, scratch, resource="filings:2026-09", now=DEADLINE_DAY).finding.facts["unfiled_returns"] == 3


def test_outside_warning_window_is_clear_with_reason(agency, scratch):
    inject(agency, DEADLINE_DAY, count=2)
    early = DEADLINE_DAY - timedelta(days=5)
    result = detect(agency, scratch, resource="filings:2026-09", now=early)
    assert result.finding is None and "2 of" in result.clear_reason and "h away" in result.clear_reason
    inside = detect(agency, scratch, resource="filings:2026-09", now=datetime(2026, 10, 25, 8, 0, tzinfo=SHANGHAI)).finding
    assert inside is not None and inside.facts["warn_stage_hours"] == 48


def test_late_fee_after_the_deadline(agency, scratch):
    inject(agency, DEADLINE_DAY, count=2)
    later = datetime(2026, 10, 30, 9, 0, tzinfo=SHANGHAI)
    f = detect(agency, scratch, resource="filings:2026-09", now=later).finding
    _, df = src.load(agency)
    due = df[(df["period"] == "2026-09") & (df["status"] == "unfiled")]["tax_due"].sum()
    assert f.facts["days_late"] == 4 and f.facts["late_fee_from"] == "2026-10-27"
    assert f.facts["late_fee_so_far_yuan"] == pytest.approx(round(due * 0.0005 * 4, 2), abs=0.02)
    assert f.facts["cost_accruing_daily"] is True and f.facts["statutory_consequence"] is True
    assert "滞纳金" in f.summary


def test_abnormal_taxpayer_run(agency, scratch):
    cid = agency.client_ids[1]
    _, df = src.load(agency)
    # The client's taxes, from whichever periods the tracker holds (it keeps the current period
    # and two before it, so the months named here may already have rolled out of it).
    taxes = sorted(set(df[df["client_id"] == cid]["tax"]))
    assert taxes
    for period, when in (("2026-08", datetime(2026, 9, 14, tzinfo=SHANGHAI)), ("2026-09", DEADLINE_DAY)):
        for tax in taxes:
            inject(agency, when, clients=[cid], tax=tax, period=period)
    f = detect(agency, scratch, resource="filings:2026-09", now=DEADLINE_DAY - timedelta(days=6)).finding
    assert f is not None            # far from the deadline, but two months without any filing
    assert f.facts["months_unfiled"] == 2 and f.facts["abnormal_risk_clients"] == [cid]


def test_restore_undoes_the_injection(agency, scratch):
    ctx = InjectionContext(agency=agency, resource="filings:2026-09", now=DEADLINE_DAY, seed=1)
    injector = get_injector("filing.inject_backlog")
    report = injector.inject(ctx, count=2)
    injector.restore(ctx, report)
    assert detect(agency, scratch, resource="filings:2026-09", now=DEADLINE_DAY).finding is None


def test_bad_resource_and_bad_tracker(agency, scratch):
    with pytest.raises(ValueError, match="filings:<YYYY-MM>"):
        detect(agency, scratch, resource="ledger:C0001")
    with pytest.raises(ValueError, match="not YYYY-MM"):
        detect(agency, scratch, resource="filings:2026-9")
    agency.filing_tracker_path.write_text("client_id,period,tax,status\nC0001,2026-09,vat,done?\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="row 2, column status"):
        detect(agency, scratch)


# -- scenario A: 2026-10-26 deadline day, 37 of 210 clients still have VAT returns to file → 一级 --
def test_scenario_a_backlog_on_deadline_day(tmp_path):
    from ledgerguard.agency import load_agency
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.response.detection import run_detectors
    from ledgerguard.sample import generate_agency

    now = datetime(2026, 10, 26, 13, 40, tzinfo=SHANGHAI)
    generate_agency(tmp_path / "agency", clients=210, nights=1, seed=26, now=now)
    agency = load_agency(tmp_path / "agency")
    catalog = load_catalog()
    entry = catalog.get("filing_backlog")
    scratch = tmp_path / "scratch"
    report = get_injector("filing.inject_backlog").inject(
        InjectionContext(agency=agency, resource="filings:current", now=now, seed=1), count=37, tax="vat")
    assert report.changes["period"] == "2026-09" and len(report.changes["clients"]) == 37
    detection = run_detectors(entry=entry, agency=agency, resource="filings:current", scratch_dir=scratch, now=now)
    facts = detection.facts
    assert facts["clients_affected"] == 37 and facts["returns_unfiled"] == 37 and facts["clients_total"] == 210
    a = classify(entry=entry, rubric=catalog.rubric, facts=facts, detected_at=now, calendar=catalog.calendar,
                 language="zh-CN")
    assert a.level.value == 1
    assert {"clients_10_plus", "deadline_24h", "backlog_near_deadline"} <= {line.rule for line in a.fired}
    assert "file_on_time" in {o.id for o in a.obligations}
