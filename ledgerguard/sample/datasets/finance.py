"""Invoices, declared sales, risk prompts, tax debits and bank-account changes (healthy).

Runs after the ``filings`` data set (name order) and follows the filing tracker: a client that
filed its VAT return for a period has declared exactly what it invoiced; every filed return with
tax due was debited successfully; bank-account changes were all verified by call-back; the risk
prompts of the past are resolved.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ledgerguard.sources import filings as fsrc
from ledgerguard.sources import finance as src

NAME = "finance"
RATES = [0.01, 0.03, 0.06, 0.13]


def _card(rng: random.Random) -> str:
    """A 19-digit UnionPay-looking number with a valid Luhn digit (sample data only)."""
    body = "6222" + "".join(str(rng.randint(0, 9)) for _ in range(14))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    rng = ctx.rng(NAME)
    tz = ctx.tz
    now = pd.Timestamp(ctx.now)
    _, tracker = fsrc.load(agency)
    rates = {cid: rng.choice(RATES) for cid in agency.client_ids}
    accounts = {cid: _card(rng) for cid in agency.client_ids}

    invoices, declared = [], []
    vat = tracker[tracker["tax"] == "vat"]
    for r in vat.itertuples():
        year, month = int(r.period[:4]), int(r.period[5:])
        sales = tax = 0.0
        for k in range(rng.randint(2, 9)):
            amount = round(rng.uniform(800, 60_000), 2)
            t = round(amount * rates[r.client_id], 2)
            issued = datetime(year, month, rng.randint(1, 28), rng.randint(9, 18), tzinfo=tz)
            if pd.Timestamp(issued) > now:
                continue
            void = rng.random() < 0.03
            invoices.append({"invoice_no": f"{r.period.replace('-', '')}{r.client_id[1:]}{k:04d}",
                             "client_id": r.client_id, "period": r.period, "issued_at": pd.Timestamp(issued),
                             "amount_yuan": amount, "tax_yuan": t, "status": "void" if void else "valid"})
            if not void:
                sales, tax = sales + amount, tax + t
        if r.status == "filed":
            declared.append({"client_id": r.client_id, "period": r.period, "tax": "vat",
                             "declared_sales_yuan": round(sales, 2), "declared_tax_yuan": round(tax, 2),
                             "declared_at": r.filed_at})

    debits = []
    for r in tracker[(tracker["status"] == "filed") & (tracker["tax_due"] > 0)].itertuples():
        at = min(pd.Timestamp(r.filed_at) + timedelta(minutes=rng.randint(5, 90)), now)
        debits.append({"debit_id": f"D{r.period.replace('-', '')}{r.client_id}{r.tax.upper()}",
                       "client_id": r.client_id, "period": r.period, "tax": r.tax, "amount": float(r.tax_due),
                       "status": "success", "reason": "", "attempted_at": at, "attempts": 1,
                       "account_no": accounts[r.client_id]})

    changes = []
    for cid in rng.sample(agency.client_ids, max(1, len(agency.client_ids) // 30)):
        old, new = _card(rng), accounts[cid]
        changes.append({"request_id": f"BC{len(changes) + 1:05d}", "client_id": cid,
                        "requested_at": now - timedelta(days=rng.randint(20, 200)),
                        "requested_by": "客户财务负责人", "channel": rng.choice(["portal", "phone", "visit"]),
                        "old_account": old, "new_account": new, "verified_by_callback": True, "status": "applied",
                        "amount_yuan": float("nan"), "note": "已按客户档案预留电话回拨核实"})

    prompts = []
    periods = sorted(set(tracker["period"]))
    for cid in rng.sample(agency.client_ids, min(2, len(agency.client_ids))):
        period = periods[0]
        prompts.append({"prompt_id": f"FX{period.replace('-', '')}{cid[1:]}", "client_id": cid, "period": period,
                        "received_at": now - timedelta(days=rng.randint(20, 40)),
                        "risk_type": "invoice_declared_mismatch",
                        "description": "已核实：跨期开票，次月已申报", "tax_amount_yuan": round(rng.uniform(100, 3000), 2),
                        "status": "resolved"})

    written = {}
    for table, rows in (("invoices", invoices), ("declared", declared), ("tax_debits", debits),
                        ("bank_changes", changes), ("risk_prompts", prompts)):
        path = src.path_of(agency, table)
        src.write(path, table, pd.DataFrame(rows, columns=list(src.TABLES[table].columns)))
        written[table] = len(rows)
    return written
