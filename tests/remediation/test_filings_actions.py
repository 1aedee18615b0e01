from __future__ import annotations

import csv
from datetime import datetime

import pytest

from ledgerguard.calendar import SHANGHAI
from ledgerguard.detectors import DetectionContext, InjectionContext, get_detector, get_injector
from ledgerguard.remediation.base import ActionContext, ActionFailed, get_action
from ledgerguard.sources import filings as src

DEADLINE_DAY = datetime(2026, 10, 26, 10, 0, tzinfo=SHANGHAI)


def run(agency, scratch, action_id, resource, now=DEADLINE_DAY, dry_run=False, **params):
    ctx = ActionContext(agency=agency, resource=resource, params=params, now=now, scratch_dir=scratch,
                        incident_id="inc-1", dry_run=dry_run)
    return get_action(action_id)(ctx)


def backlog(agency, count=4):
    ctx = InjectionContext(agency=agency, resource="filings:2026-09", now=DEADLINE_DAY, seed=3)
    return get_injector("filing.inject_backlog").inject(ctx, count=count)


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_triage_orders_by_tax_due(agency, scratch):
    backlog(agency, 4)
    assert run(agency, scratch, "filing.triage", "filings:2026-09", dry_run=True).output["dry_run"]
    result = run(agency, scratch, "filing.triage", "filings:2026-09", order_by=["tax_due_yuan", "hours_to_deadline"])
    rows = read_csv(result.output["worklist"])
    assert len(rows) == 4 == result.output["returns"]
    dues = [float(r["tax_due_yuan"]) for r in rows]
    assert dues == sorted(dues, reverse=True) and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    _, df = src.load(agency)
    assert {r["client_id"] for r in rows} == set(df[(df.period == "2026-09") & (df.status == "unfiled")].client_id)
    assert all(r["accountant_id"] == agency.client(r["client_id"]).accountant_id for r in rows)
    with pytest.raises(ActionFailed, match="order_by"):
        run(agency, scratch, "filing.triage", "filings:2026-09", order_by=["name"])


def test_snapshot_is_idempotent(agency, scratch):
    first = run(agency, scratch, "filing.snapshot", "filings:2026-09")
    path = first.output["snapshot"]
    assert open(path, "rb").read() == src.tracker_path(agency).read_bytes()
    again = run(agency, scratch, "filing.snapshot", "filings:2026-09")
    assert again.output.get("already") and again.output["snapshot"] == path
    backlog(agency, 1)
    third = run(agency, scratch, "filing.snapshot", "filings:2026-09")
    assert third.output["snapshot"] != path and third.output["counts"]["2026-09"]["unfiled"] == 1


def test_compare_invoices(agency, scratch):
    from ledgerguard.sources import finance as fin

    _, dec = fin.read(agency, "declared")
    period = sorted(set(dec.period))[-1]
    clean = run(agency, scratch, "filing.compare_invoices", f"returns:{period}")
    assert clean.output["mismatches"] == 0 and clean.output["clients"] > 0
    ctx = InjectionContext(agency=agency, resource=f"returns:{period}", seed=2)
    cid = get_injector("filing.inject_invoice_gap").inject(ctx, amount_yuan=10_000, tax_rate=0.06).changes["client_id"]
    result = run(agency, scratch, "filing.compare_invoices", f"returns:{period}")
    assert result.output["mismatched_clients"] == [cid] and result.output["tax_gap_yuan"] == 600
    rows = {r["client_id"]: r for r in read_csv(result.output["comparison"])}
    assert rows[cid]["mismatch"] == "True" and float(rows[cid]["sales_gap_yuan"]) == 10_000


def test_annual_status_list(agency, scratch):
    now = datetime(2026, 6, 25, 9, tzinfo=SHANGHAI)
    ctx = InjectionContext(agency=agency, resource="annual:2026", now=now, seed=1)
    report = get_injector("annual.inject_unfiled").inject(ctx, count=3)
    result = run(agency, scratch, "annual.status_list", "annual:2026", now=now)
    rows = read_csv(result.output["status_list"])
    assert sorted(r["client_id"] for r in rows) == report.changes["clients"]
    assert all(r["deadline"] == "2026-06-30" and r["working_days_left"] == "3" for r in rows)
    for r in rows:
        phone = agency.client(r["client_id"]).phone
        assert phone not in r["phone"] or not phone
    vip_flags = [r["vip"] == "True" for r in rows]
    assert vip_flags == sorted(vip_flags, reverse=True)
    dctx = DetectionContext(agency=agency, resource="annual:2026", now=now, params={})
    assert get_detector("annual.unfiled_count").detect(dctx).finding.facts["items_unfiled"] == len(rows)
