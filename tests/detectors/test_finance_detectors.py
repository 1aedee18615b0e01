from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone

import pytest

from ledgerguard.agency import UnknownClientError
from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import SHANGHAI
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.sources import filings as fsrc
from ledgerguard.sources import finance as src

NOW = datetime.now(timezone.utc)
CARD_RUN = re.compile(r"\d{16,19}")


def detect(agency, scratch, detector_id, resource, now=None, **params):
    ctx = DetectionContext(agency=agency, resource=resource, params=params, now=now or NOW, scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def inject(agency, injector_id, resource, now=None, **kwargs):
    return get_injector(injector_id).inject(
        InjectionContext(agency=agency, resource=resource, now=now or NOW, seed=9), **kwargs)


def declared_period(agency):
    """A period with declared VAT in the sample (the one before the current one)."""
    _, dec = src.read(agency, "declared")
    return sorted(set(dec["period"]))[-1]


def test_all_quiet_on_a_healthy_agency(agency, scratch):
    _, tracker = fsrc.load(agency)
    for period in sorted(set(tracker["period"])):
        for det in ("filing.invoice_vs_declared", "etax.risk_prompt"):
            result = detect(agency, scratch, det, f"returns:{period}", tolerance_yuan=1)
            assert result.finding is None and period in result.clear_reason
    for resource in ["payments:all", *[f"payments:{c}" for c in agency.client_ids]]:
        for det in ("payment.debit_status", "payment.bank_change_requests"):
            result = detect(agency, scratch, det, resource)
            assert result.finding is None and result.clear_reason


def test_invoice_gap_before_and_after_the_deadline(agency, scratch):
    period = declared_period(agency)
    report = inject(agency, "filing.inject_invoice_gap", f"returns:{period}", amount_yuan=24_615.38, tax_rate=0.13)
    deadline = fsrc.period_deadline(fsrc.calendar_for(), period)
    before = deadline.replace(hour=10, minute=0, second=0)
    f = detect(agency, scratch, "filing.invoice_vs_declared", f"returns:{period}", now=before, tolerance_yuan=1).finding
    assert f is not None
    for name in COMMON_FACTS:
        assert name in f.facts
    assert f.facts["clients"] == [report.changes["client_id"]] and f.facts["clients_affected"] == 1
    assert f.facts["tax_gap_yuan"] == pytest.approx(3200.0, abs=0.01)
    assert f.facts["after_deadline"] is False and f.facts["deadline_at"] == deadline.isoformat()
    assert "late_fee_so_far_yuan" not in f.facts
    after = before + timedelta(days=5)
    late = detect(agency, scratch, "filing.invoice_vs_declared", f"returns:{period}", now=after, tolerance_yuan=1).finding
    assert late.facts["after_deadline"] is True and "deadline_at" not in late.facts
    assert late.facts["days_late"] == 5
    assert late.facts["late_fee_so_far_yuan"] == pytest.approx(3200 * 0.0005 * 5, abs=0.01)
    assert late.facts["cost_accruing_daily"] is True
    # a gap within the tolerance is no mismatch
    assert detect(agency, scratch, "filing.invoice_vs_declared", f"returns:{period}", now=before,
                  tolerance_yuan=30_000).finding is None


def test_risk_prompt_and_falsified(agency, scratch):
    period = declared_period(agency)
    cid = agency.client_ids[0]
    inject(agency, "etax.inject_risk_prompt", f"returns:{period}", client=cid, tax_amount_yuan=8000)
    f = detect(agency, scratch, "etax.risk_prompt", f"returns:{period}").finding
    assert f.facts["tax_gap_yuan"] == 8000 and f.facts["falsified"] is False and f.facts["affected_clients"] == [cid]
    inject(agency, "etax.inject_risk_prompt", f"returns:{period}", client=cid, risk_type="虚开发票", tax_amount_yuan=1)
    f = detect(agency, scratch, "etax.risk_prompt", f"returns:{period}").finding
    assert f.facts["falsified"] is True and f.facts["risk_prompts"] == 2


def test_debit_failure_on_deadline_afternoon(agency, scratch):
    cid = agency.client_ids[2]
    now = datetime(2026, 11, 16, 15, 0, tzinfo=SHANGHAI)
    report = inject(agency, "payment.inject_debit_failure", f"payments:{cid}", now=now, amount=12_800)
    assert report.changes["period"] == "2026-10"
    for resource in (f"payments:{cid}", "payments:all"):
        f = detect(agency, scratch, "payment.debit_status", resource, now=now).finding
        assert f.facts["debit_failed"] is True and f.facts["amount_yuan"] == 12_800
        assert f.facts["affected_clients"] == [cid] and f.facts["after_deadline"] is False
        assert 8 < f.facts["hours_to_deadline"] <= 9
        assert "余额不足" in f.summary
    other = next(c for c in agency.client_ids if c != cid)
    assert detect(agency, scratch, "payment.debit_status", f"payments:{other}", now=now).finding is None
    text = json.dumps([e.model_dump(mode="json") for e in f.evidence], ensure_ascii=False)
    assert not CARD_RUN.search(text)


def test_unverified_bank_change_is_masked(agency, scratch):
    cid = agency.client_ids[1]
    inject(agency, "payment.inject_bank_change", "payments:all", client=cid, amount_yuan=150_000)
    f = detect(agency, scratch, "payment.bank_change_requests", "payments:all").finding
    assert f is not None
    assert f.facts["bank_change_requested"] is True and f.facts["callback_verified"] is False
    assert f.facts["amount_yuan"] == 150_000 and f.facts["affected_clients"] == [cid]
    _, df = src.read(agency, "bank_changes")
    new = df.iloc[-1]["new_account"]
    text = f.summary + json.dumps([e.model_dump(mode="json") for e in f.evidence], ensure_ascii=False)
    assert new not in text and new[-4:] in text and not CARD_RUN.search(text)


def test_bad_input(agency, scratch):
    with pytest.raises(ValueError, match="returns:<YYYY-MM>"):
        detect(agency, scratch, "filing.invoice_vs_declared", "filings:2026-10")
    with pytest.raises(ValueError, match="payments:<client_id>"):
        detect(agency, scratch, "payment.debit_status", "payment:all")
    with pytest.raises(UnknownClientError):
        detect(agency, scratch, "payment.debit_status", "payments:C9999")
    path = src.path_of(agency, "tax_debits")
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace(",success,", ",bounced,")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(AgencyDataError, match="line 2, column status") as exc:
        detect(agency, scratch, "payment.debit_status", "payments:all")
    assert "tax-debits.csv" in str(exc.value)


# -- the catalog scenarios, detected from planted data and classified -----------------------------
def _classify(agency, scratch, type_id, resource, now):
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.response.detection import run_detectors

    catalog = load_catalog()
    entry = catalog.get(type_id)
    detection = run_detectors(entry=entry, agency=agency, resource=resource, scratch_dir=scratch, now=now)
    assert detection.findings
    a = classify(entry=entry, rubric=catalog.rubric, facts=detection.facts, detected_at=now,
                 calendar=catalog.calendar, language="zh-CN")
    return detection, a, {line.rule for line in a.fired}, {o.id for o in a.obligations}


def test_scenario_mismatch_before_deadline_is_level_4(agency, scratch):
    now = datetime(2026, 11, 13, 10, 0, tzinfo=SHANGHAI)
    cid = next(c for c in agency.client_ids if not agency.is_vip(c))
    inject(agency, "filing.inject_invoice_gap", "returns:2026-10", now=now, client=cid, amount_yuan=24_615.38,
           tax_rate=0.13)
    detection, a, rules, obligations = _classify(agency, scratch, "wrong_filing", "returns:2026-10", now)
    assert detection.facts["tax_gap_yuan"] == pytest.approx(3200, abs=0.01)
    assert a.level.value == 4 and "deadline_5_working_days" in rules and "after_deadline" not in rules
    assert "correct_before_deadline" in obligations and "late_payment_surcharge" not in obligations


def test_scenario_risk_prompt_after_deadline_is_level_3(agency, scratch):
    now = datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI)
    cid = next(c for c in agency.client_ids if not agency.is_vip(c))
    inject(agency, "etax.inject_risk_prompt", "returns:2026-10", now=now, client=cid, tax_amount_yuan=8000)
    detection, a, rules, obligations = _classify(agency, scratch, "wrong_filing", "returns:2026-10", now)
    assert detection.facts["after_deadline"] is True and detection.facts["days_late"] == 4
    assert a.level.value == 3 and {"after_deadline", "cost_accruing_daily"} <= rules, [(l.rule, l.value) for l in a.fired]
    assert "late_payment_surcharge" in obligations and "evasion_review" not in obligations


def test_scenario_debit_failed_on_deadline_day_is_level_2(agency, scratch):
    now = datetime(2026, 11, 16, 15, 0, tzinfo=SHANGHAI)
    cid = next(c for c in agency.client_ids if not agency.is_vip(c))
    inject(agency, "payment.inject_debit_failure", f"payments:{cid}", now=now, amount=12_800)
    detection, a, rules, obligations = _classify(agency, scratch, "payment_failure", f"payments:{cid}", now)
    assert a.level.value == 2 and {"debit_failed", "deadline_24h"} <= rules
    assert "pay_on_time" in obligations and "unverified_bank_change" not in rules


def test_invoice_gap_can_be_planted_in_a_period_without_declarations(agency, scratch):
    now = datetime(2025, 3, 10, 10, 0, tzinfo=SHANGHAI)
    report = inject(agency, "filing.inject_invoice_gap", "returns:2025-02", now=now, amount_yuan=1000, tax_rate=0.03)
    f = detect(agency, scratch, "filing.invoice_vs_declared", "returns:2025-02", now=now, tolerance_yuan=1).finding
    assert f.facts["clients"] == [report.changes["client_id"]] and f.facts["tax_gap_yuan"] == 30
