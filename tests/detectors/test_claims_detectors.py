from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.calendar import SHANGHAI
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.sources import claims as src

SCENARIO_F = datetime(2026, 6, 29, 17, 0, tzinfo=SHANGHAI)
DETECTORS = ["claims.urgent_flag", "claims.close_window"]


def detect(agency, scratch, detector_id, request_id, now=SCENARIO_F, **params):
    ctx = DetectionContext(agency=agency, resource=f"claim:{request_id}", params=params, now=now, scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def plant(agency, request_id, client, now=SCENARIO_F, **kwargs):
    ctx = InjectionContext(agency=agency, resource=f"claim:{request_id}", now=now, seed=6)
    return get_injector("claims.inject_urgent_request").inject(ctx, client=client, **kwargs)


def plain_client(agency):
    return next(c for c in agency.client_ids if not agency.is_vip(c))


def vip_client(agency):
    return next(c for c in agency.client_ids if agency.is_vip(c))


@pytest.mark.parametrize("detector_id", DETECTORS)
def test_quiet_on_the_sample_requests(agency, scratch, detector_id):
    ids = src.list_requests(agency)
    assert ids
    for rid in ids:
        result = detect(agency, scratch, detector_id, rid, now=datetime.now(timezone.utc))
        assert result.finding is None and rid in result.clear_reason


def test_urgent_request_in_the_close_window(agency, scratch):
    cid = plain_client(agency)
    report = plant(agency, "R20260629-D", cid, claims=48, unsupported=6)
    assert len(report.changes["unsupported"]) == 6
    for detector_id in DETECTORS:
        f = detect(agency, scratch, detector_id, "R20260629-D", working_days_before_close=2).finding
        assert f is not None, detector_id
        for name in COMMON_FACTS:
            assert name in f.facts
        assert f.facts["claims_total"] == 48 and f.facts["claims_supported"] == 42
        assert f.facts["claims_unsupported"] == 6 and f.facts["unsupported_reasons"] == {"no_invoice": 6}
        assert f.facts["flagged_urgent"] is True and f.facts["affected_clients"] == [cid]
        assert f.facts["vip"] is False
        assert f.facts["working_days_to_deadline"] == 1          # 30 June
        assert 30 < f.facts["hours_to_close"] <= 31
        assert f.facts["deadline_at"].startswith("2026-06-30T23:59:59")


def test_not_urgent_and_far_from_close(agency, scratch):
    cid = plain_client(agency)
    early = datetime(2026, 6, 10, 10, 0, tzinfo=SHANGHAI)
    plant(agency, "R20260610-A", cid, now=early, claims=5, unsupported=0, urgent=False)
    for detector_id in DETECTORS:
        result = detect(agency, scratch, detector_id, "R20260610-A", now=early, working_days_before_close=2)
        assert result.finding is None
    assert "not flagged urgent" in detect(agency, scratch, "claims.urgent_flag", "R20260610-A", now=early).clear_reason


def test_missing_document_and_amount_mismatch(agency, scratch):
    cid = plain_client(agency)
    plant(agency, "R-CHECK", cid, claims=4, unsupported=0)
    path, req = src.load_request(agency, "R-CHECK")
    raw = json.loads(path.read_text(encoding="utf-8"))
    (src.documents_dir(agency) / raw["claims"][0]["documents"][0]).unlink()
    raw["claims"][1]["amount_yuan"] = raw["claims"][1]["amount_yuan"] + 100
    path.write_text(json.dumps(raw, ensure_ascii=False), encoding="utf-8")
    f = detect(agency, scratch, "claims.urgent_flag", "R-CHECK").finding
    assert f.facts["claims_unsupported"] == 2
    assert f.facts["unsupported_reasons"] == {"document_missing": 1, "amount_mismatch": 1}


def test_bad_input(agency, scratch):
    with pytest.raises(ValueError, match="claim:<request_id>"):
        detect(agency, scratch, "claims.urgent_flag", "../etc")
    with pytest.raises(AgencyDataError, match="not found"):
        detect(agency, scratch, "claims.urgent_flag", "R-NOPE")
    cid = plain_client(agency)
    plant(agency, "R-BAD", cid, claims=2, unsupported=0)
    path = src.request_path(agency, "R-BAD")
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["claims"][1]["amount_yuan"] = -5
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(AgencyDataError) as exc:
        detect(agency, scratch, "claims.close_window", "R-BAD")
    assert exc.value.field == "claims.1.amount_yuan" and "R-BAD.json" in str(exc.value)
    raw["claims"][1]["amount_yuan"] = 5
    raw["claims"][1]["documents"] = ["../../clients.csv"]
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(AgencyDataError, match="leaves"):
        detect(agency, scratch, "claims.close_window", "R-BAD")


# -- scenario F: 48 claims before the June close, 6 without invoice → 四级 (VIP: 三级) ------------
@pytest.mark.parametrize("vip,level,expected", [(False, 4, {"deadline_5_working_days", "in_close_window"}),
                                                (True, 3, {"vip", "in_close_window"})])
def test_scenario_f_detect_classify_book(agency, scratch, vip, level, expected):
    from ledgerguard.catalog.service import load_catalog
    from ledgerguard.classification.service import classify
    from ledgerguard.ledgers import ledger_stats
    from ledgerguard.remediation.base import ActionContext, get_action
    from ledgerguard.response.detection import run_detectors

    cid = vip_client(agency) if vip else plain_client(agency)
    plant(agency, "R20260629-D", cid, claims=48, unsupported=6)
    catalog = load_catalog()
    entry = catalog.get("urgent_claim")
    detection = run_detectors(entry=entry, agency=agency, resource="claim:R20260629-D", scratch_dir=scratch,
                              now=SCENARIO_F)
    assert len(detection.findings) == 2
    a = classify(entry=entry, rubric=catalog.rubric, facts=detection.facts, detected_at=SCENARIO_F,
                 calendar=catalog.calendar, language="zh-CN")
    assert a.level.value == level
    assert expected <= {line.rule for line in a.fired}
    assert "supported_claims_only" in {o.id for o in a.obligations}

    ledger = agency.ledger_path(cid)
    before = ledger_stats(ledger)
    action = get_action("claims.book_supported")
    ctx = ActionContext(agency=agency, resource="claim:R20260629-D", now=SCENARIO_F, scratch_dir=scratch,
                        incident_id="inc-f", params={"approved_by": "manager"})
    result = action(ctx)
    assert result.ok and result.output["booked_now"] == 42 and result.output["refused"] == 6
    after = ledger_stats(ledger)
    assert after.vouchers == before.vouchers + 42 and after.balanced
    booked = sum(c.amount_yuan for c in src.check_request(agency, *src.load_request(agency, "R20260629-D")) if c.supported)
    assert after.debit_cents - before.debit_cents == round(booked * 100)
    again = action(ctx)
    assert again.output["booked_now"] == 0 and ledger_stats(ledger).vouchers == after.vouchers
    # decided: the detectors are clear now
    rerun = run_detectors(entry=entry, agency=agency, resource="claim:R20260629-D", scratch_dir=scratch, now=SCENARIO_F)
    assert rerun.findings == [] and all("decided" in r for r in rerun.clear_reasons)
