"""The filing tracker with tax due and two months of history (healthy).

The generator writes the current period's tracker; this rewrites it with a ``tax_due`` column
(realistic monthly amounts per client) and the two periods before it (all filed, within their
windows). Healthy means: the current period's unfiled returns (if any) are only those of a
deadline more than ``HEALTHY_MARGIN_HOURS`` away; past or near the deadline everything is filed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from ledgerguard.calendar import CalendarError
from ledgerguard.detectors.filings import DEFAULT_WARN_HOURS, sample_tax_due
from ledgerguard.sources import filings as src

NAME = "filings"
HEALTHY_MARGIN_HOURS = max(DEFAULT_WARN_HOURS) + 24
HISTORY_PERIODS = 2


def _previous(period: str, n: int) -> str:
    year, month = int(period[:4]), int(period[5:])
    index = year * 12 + month - 1 - n
    return f"{index // 12}-{index % 12 + 1:02d}"


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    rng = ctx.rng(NAME)
    path = src.tracker_path(agency)
    current = src.read_tracker(path) if path.exists() else pd.DataFrame(columns=src.COLUMNS)
    period = src.current_period(ctx.now, agency.tz)
    calendar = src.calendar_for()
    try:
        deadline = src.period_deadline(calendar, period)
        near = src.time_left(deadline, ctx.now) <= HEALTHY_MARGIN_HOURS
    except CalendarError:
        deadline, near = None, True
    taxes = sorted(set(current["tax"])) or ["vat", "surtax", "iit"]
    vat_by_client = {cid: sample_tax_due(rng, "vat") for cid in agency.client_ids}
    rows: list[dict[str, Any]] = []
    for back in range(HISTORY_PERIODS, 0, -1):
        p = _previous(period, back)
        try:
            p_deadline = src.period_deadline(calendar, p)
        except CalendarError:
            continue
        p_taxes = [t for t in taxes if t != "cit"] + (["cit"] if int(p[5:]) in (3, 6, 9, 12) else [])
        for cid in agency.client_ids:
            vat = sample_tax_due(rng, "vat")
            for tax in p_taxes:
                filed = p_deadline - timedelta(days=rng.randint(1, 12), hours=rng.randint(0, 10))
                rows.append({"client_id": cid, "period": p, "tax": tax, "status": "filed",
                             "filed_at": pd.Timestamp(filed).tz_convert("UTC"),
                             "tax_due": sample_tax_due(rng, tax, vat)})
    unfiled = 0
    for r in current.itertuples():
        status, filed_at = r.status, r.filed_at
        if r.period == period and status == "unfiled" and near:
            status = "filed"
            filed_at = pd.Timestamp(min(ctx.now, deadline) - timedelta(hours=rng.randint(1, 72))).tz_convert("UTC") \
                if deadline is not None else pd.Timestamp(ctx.now)
        unfiled += status == "unfiled"
        rows.append({"client_id": r.client_id, "period": r.period, "tax": r.tax, "status": status,
                     "filed_at": filed_at,
                     "tax_due": sample_tax_due(rng, r.tax, vat_by_client.get(r.client_id))})
    src.write_tracker(path, pd.DataFrame(rows, columns=src.COLUMNS))
    return {"path": str(path), "returns": len(rows), "periods": HISTORY_PERIODS + 1,
            "unfiled_current": unfiled, "deadline": deadline.isoformat() if deadline else None}
