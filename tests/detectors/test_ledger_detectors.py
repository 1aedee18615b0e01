from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from ledgerguard import backups as bk
from ledgerguard.agency import UnknownClientError
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.detectors.base import COMMON_FACTS
from ledgerguard.ledgers import ledger_stats

LEDGER_DETECTORS = ["ledger.row_count_drop", "ledger.trial_balance"]


def detect(agency, detector_id, client_id, scratch, **params):
    ctx = DetectionContext(agency=agency, resource=f"ledger:{client_id}", params=params,
                           now=datetime.now(timezone.utc), scratch_dir=scratch)
    return get_detector(detector_id).detect(ctx)


def inject(agency, injector_id, client_id, **kwargs):
    ctx = InjectionContext(agency=agency, resource=f"ledger:{client_id}", seed=3)
    return get_injector(injector_id).inject(ctx, **kwargs)


def vip_client(agency):
    return next(c for c in agency.client_ids if agency.is_vip(c))


@pytest.mark.parametrize("detector_id", LEDGER_DETECTORS)
def test_quiet_on_every_healthy_ledger(agency, scratch, detector_id):
    for cid in agency.client_ids:
        result = detect(agency, detector_id, cid, scratch)
        assert result.finding is None, result.finding
        assert cid in result.clear_reason


def test_unknown_client_is_a_clear_error(agency, scratch):
    with pytest.raises(UnknownClientError):
        detect(agency, "ledger.row_count_drop", "C9999", scratch)


def test_delete_vouchers_fires_row_count_drop(agency, scratch):
    cid = vip_client(agency)
    before = bk.newest_good_backup(agency).file_for(cid)
    report = inject(agency, "ledger.delete_vouchers", cid, count=5, pick="oldest")
    assert report.changes["vouchers_deleted"] == 5
    f = detect(agency, "ledger.row_count_drop", cid, scratch).finding
    assert f is not None and f.detector == "ledger.row_count_drop"
    for name in COMMON_FACTS:
        assert name in f.facts
    assert f.facts["vouchers_before"] == before.vouchers
    assert f.facts["vouchers_lost"] == 5
    assert f.facts["lines_lost"] == report.changes["lines_deleted"]
    assert f.facts["vouchers_now"] == ledger_stats(agency.ledger_path(cid)).vouchers
    assert sorted(f.facts["missing_voucher_nos"]) == sorted(report.changes["voucher_nos"])
    assert f.facts["ledger_missing"] is False
    assert f.facts["clients_affected"] == 1 and f.facts["affected_clients"] == [cid]
    assert f.facts["vip"] is True
    assert f.facts["restorable_within_rpo"] is True and f.facts["backup_age_hours"] < 24
    assert f.facts["pii_lost"] is False
    json.dumps(f.facts)  # facts are plain JSON for the register and the rules
    assert f.model_dump_json()
    # the books still balance: the trial balance detector stays quiet
    assert detect(agency, "ledger.trial_balance", cid, scratch).finding is None
    # a threshold above the drop keeps the detector quiet
    pct = f.facts["drop_pct"]
    assert detect(agency, "ledger.row_count_drop", cid, scratch, min_drop_pct=pct + 1).finding is None


def test_delete_lines_fires_trial_balance(agency, scratch):
    cid = agency.client_ids[0]
    report = inject(agency, "ledger.delete_lines", cid, count=2)
    f = detect(agency, "ledger.trial_balance", cid, scratch).finding
    assert f is not None
    assert f.facts["trial_balance_difference_cents"] == -report.changes["debit_cents_removed"]
    assert f.facts["integrity_ok"] is True
    assert f.facts["vip"] is agency.is_vip(cid)
    assert f.facts["affected_clients"] == [cid]


def test_delete_file_fires_both(agency, scratch):
    cid = agency.client_ids[1]
    inject(agency, "ledger.delete_file", cid)
    f = detect(agency, "ledger.row_count_drop", cid, scratch).finding
    assert f is not None and f.facts["ledger_missing"] is True and f.facts["vouchers_now"] == 0
    assert f.facts["vouchers_lost"] == f.facts["vouchers_before"] > 0
    t = detect(agency, "ledger.trial_balance", cid, scratch).finding
    assert t is not None and t.facts["integrity_ok"] is False and t.facts["ledger_missing"] is True


def test_corrupt_file_fires_trial_balance_integrity(agency, scratch):
    cid = agency.client_ids[2]
    inject(agency, "ledger.corrupt_file", cid)
    t = detect(agency, "ledger.trial_balance", cid, scratch).finding
    assert t is not None and t.facts["integrity_ok"] is False and t.facts["ledger_missing"] is False
    assert t.facts["integrity_error"]
    r = detect(agency, "ledger.row_count_drop", cid, scratch)
    assert r.finding is None and "trial_balance" in r.clear_reason


def test_not_restorable_within_rpo_when_backups_are_stale(agency, scratch):
    cid = agency.client_ids[0]
    get_injector("backup.stale").inject(InjectionContext(agency=agency, resource="backups:nightly"), hours_old=80)
    inject(agency, "ledger.delete_vouchers", cid, count=3, pick="oldest")
    f = detect(agency, "ledger.row_count_drop", cid, scratch).finding
    assert f.facts["restorable_within_rpo"] is False and f.facts["control_failure"] is True
    assert f.facts["backup_age_hours"] > 79


def test_new_vouchers_since_the_backup_do_not_hide_a_deletion(agency, scratch):
    from ledgerguard.ledgers import VoucherLine, add_vouchers, connect

    cid = agency.client_ids[3]
    conn = connect(agency.ledger_path(cid))
    add_vouchers(conn, [("记-12-901", "2026-12-30", "收到货款", "tester",
                         [VoucherLine("1002", debit_cents=100), VoucherLine("1122", credit_cents=100)])])
    conn.commit()
    conn.close()
    report = inject(agency, "ledger.delete_vouchers", cid, count=2, pick="oldest")
    f = detect(agency, "ledger.row_count_drop", cid, scratch).finding
    assert f is not None
    assert f.facts["vouchers_before"] - f.facts["vouchers_now"] < 2  # the counts alone show less
    assert f.facts["vouchers_lost"] == 2
    assert sorted(f.facts["missing_voucher_nos"]) == sorted(report.changes["voucher_nos"])
