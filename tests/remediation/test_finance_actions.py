from __future__ import annotations

import re
from datetime import datetime, timezone

from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.remediation.base import ActionContext, get_action
from ledgerguard.sources import finance as src

NOW = datetime.now(timezone.utc)


def run(agency, scratch, action_id, resource, dry_run=False):
    return get_action(action_id)(ActionContext(agency=agency, resource=resource, now=NOW, scratch_dir=scratch,
                                               incident_id="inc-p", dry_run=dry_run))


def detect(agency, detector_id, resource):
    return get_detector(detector_id).detect(DetectionContext(agency=agency, resource=resource, now=NOW))


def test_retry_requeues_failed_debits_once(agency, scratch):
    cid = agency.client_ids[0]
    report = get_injector("payment.inject_debit_failure").inject(
        InjectionContext(agency=agency, resource=f"payments:{cid}", now=NOW, seed=1))
    assert run(agency, scratch, "payment.retry", f"payments:{cid}", dry_run=True).output["dry_run"]
    assert detect(agency, "payment.debit_status", f"payments:{cid}").finding is not None
    result = run(agency, scratch, "payment.retry", f"payments:{cid}")
    assert result.output["debit_ids"] == [report.changes["debit_id"]]
    _, df = src.read(agency, "tax_debits")
    row = df[df.debit_id == report.changes["debit_id"]].iloc[0]
    assert row.status == "queued" and row.attempts == 2 and "inc-p" in row.reason
    again = run(agency, scratch, "payment.retry", f"payments:{cid}")
    assert "no failed debit" in again.summary
    assert src.read(agency, "tax_debits")[1].query("status == 'queued'").shape[0] == 1
    result = detect(agency, "payment.debit_status", f"payments:{cid}")
    assert result.finding is None and "1 re-queued" in result.clear_reason


def test_hold_changes_masks_and_is_idempotent(agency, scratch):
    cid = agency.client_ids[1]
    get_injector("payment.inject_bank_change").inject(
        InjectionContext(agency=agency, resource="payments:all", now=NOW, seed=2), client=cid, status="applied")
    result = run(agency, scratch, "payment.hold_changes", "payments:all")
    assert len(result.output["requests"]) == 1 and result.output["applied_before_hold"] == 1
    assert "revert" in result.summary
    assert not re.search(r"\d{16,19}", str(result.output))
    _, df = src.read(agency, "bank_changes")
    assert (df.status == "held").sum() == 1
    assert "no unverified" in run(agency, scratch, "payment.hold_changes", "payments:all").summary
    assert detect(agency, "payment.bank_change_requests", "payments:all").finding is None
