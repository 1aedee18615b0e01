from __future__ import annotations

import csv
import json
from datetime import datetime

import pytest

from ledgerguard.calendar import SHANGHAI
from ledgerguard.detectors import InjectionContext, get_injector
from ledgerguard.ledgers import ledger_stats, list_vouchers
from ledgerguard.remediation.base import ActionContext, ActionFailed, get_action
from ledgerguard.sources import claims as src

NOW = datetime(2026, 6, 29, 17, 0, tzinfo=SHANGHAI)
RID = "R20260629-D"


def plant(agency, claims=10, unsupported=2):
    cid = agency.client_ids[0]
    get_injector("claims.inject_urgent_request").inject(
        InjectionContext(agency=agency, resource=f"claim:{RID}", now=NOW, seed=8), client=cid, claims=claims,
        unsupported=unsupported)
    return cid


def run(agency, scratch, action_id, dry_run=False, **params):
    return get_action(action_id)(ActionContext(agency=agency, resource=f"claim:{RID}", params=params, now=NOW,
                                               scratch_dir=scratch, incident_id="inc-c", dry_run=dry_run))


def test_booking_books_supported_refuses_rest_keeps_trail(agency, scratch):
    cid = plant(agency)
    ledger = agency.ledger_path(cid)
    before = ledger_stats(ledger)
    dry = run(agency, scratch, "claims.book_supported", dry_run=True)
    assert dry.output["to_book"] == 8 and ledger_stats(ledger).vouchers == before.vouchers
    result = run(agency, scratch, "claims.book_supported", approved_by="manager", credit_account="2241")
    assert result.output["booked_now"] == 8 and result.output["refused"] == 2
    vouchers = [v for v in list_vouchers(ledger) if v["voucher_no"].startswith(f"报-{RID}-")]
    assert len(vouchers) == 8 and all(v["date"] == "2026-06-29" for v in vouchers)
    assert ledger_stats(ledger).balanced
    trail = json.loads(src.trail_path(agency, RID).read_text(encoding="utf-8"))
    assert len(trail["decisions"]) == 10 and trail["approved_by"] == "manager"
    refused = [d for d in trail["decisions"] if d["decision"] == "refused"]
    assert len(refused) == 2 and all(d["reason"] == "no_invoice" and d["reason_text"] for d in refused)
    assert all(d["document_checked"] and d["document_sha256"] for d in trail["decisions"] if d["decision"] == "booked")
    letter = src.letters_dir(agency) / f"{RID}-refusal.txt"
    text = letter.read_text(encoding="utf-8")
    assert agency.client(cid).name in text and "未提供发票" in text
    for d in refused:
        assert f"第 {d['claim_id']} 笔" in text
    # idempotent
    again = run(agency, scratch, "claims.book_supported")
    assert again.output["booked_now"] == 0 and again.output["already_booked"] == 8
    assert len(json.loads(src.trail_path(agency, RID).read_text(encoding="utf-8"))["runs"]) == 2
    assert ledger_stats(ledger).vouchers == before.vouchers + 8


def test_english_letter_and_frozen_ledger(agency, scratch):
    cid = plant(agency)
    agency.frozen_marker(cid).write_text("{}", encoding="utf-8")
    with pytest.raises(ActionFailed, match="frozen"):
        run(agency, scratch, "claims.book_supported")
    agency.frozen_marker(cid).unlink()
    run(agency, scratch, "claims.book_supported", language="en")
    text = (src.letters_dir(agency) / f"{RID}-refusal.txt").read_text(encoding="utf-8")
    assert "no invoice" in text and "Claim" in text


def test_prioritise_moves_request_to_top(agency, scratch):
    plant(agency)
    result = run(agency, scratch, "claims.prioritise")
    with open(src.queue_path(agency), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["request_id"] == RID and rows[0]["priority"] == "urgent"
    assert rows[0]["due_at"].startswith("2026-06-30T23:59:59")
    assert len(rows) == result.output["queue_length"] + sum(r["status"] != "open" for r in rows)
    assert run(agency, scratch, "claims.prioritise").output.get("already")
