"""Annual-deadline action: the list of clients whose annual items are still open (resource
``annual:<year>``), for the chase campaign."""

from __future__ import annotations

import csv
from typing import Any

from ledgerguard.calendar import working_days_between
from ledgerguard.masking import mask_text
from ledgerguard.remediation.base import ActionContext, ActionResult, register_action
from ledgerguard.sources import annual as src
from ledgerguard.sources.filings import calendar_for

COLUMNS = ["item", "item_zh", "deadline", "working_days_left", "client_id", "client_name", "vip",
           "accountant_id", "legal_rep", "phone", "consequence"]


@register_action("annual.status_list")
def status_list(ctx: ActionContext) -> ActionResult:
    """CSV of every open annual item of the year: nearest deadline first, VIP clients first within it.
    Phone numbers are masked (the accountant looks the full number up in the client file)."""
    year = src.year_from_resource(ctx.resource)
    items = list(ctx.params.get("items") or src.ITEMS)
    calendar = calendar_for(ctx.params)
    _, df = src.read_items(ctx.agency)
    open_ = df[(df["year"] == year) & (df["status"] == "pending") & df["item"].isin(items)]
    rows: list[dict[str, Any]] = []
    for r in open_.itertuples():
        deadline = calendar.annual_deadline(r.item, year)
        info = src.ITEMS[r.item]
        row = {"item": r.item, "item_zh": info["zh"], "deadline": deadline.date().isoformat(),
               "working_days_left": working_days_between(ctx.now, deadline), "client_id": r.client_id,
               "consequence": info["consequence_zh"]}
        if r.client_id == src.AGENCY_ID:
            row.update(client_name=ctx.agency.config.name, vip=False, accountant_id="", legal_rep="", phone="")
        else:
            c = ctx.agency.client(r.client_id)
            row.update(client_name=c.name, vip=c.vip, accountant_id=c.accountant_id, legal_rep=c.legal_rep,
                       phone=mask_text(c.phone))
        rows.append(row)
    rows.sort(key=lambda x: (x["deadline"], not x["vip"], x["client_id"]))
    target = ctx.incident_dir / f"annual-status-{year}.csv"
    by_accountant: dict[str, int] = {}
    for row in rows:
        by_accountant[row["accountant_id"] or "agency"] = by_accountant.get(row["accountant_id"] or "agency", 0) + 1
    output = {"status_list": str(target), "open_items": len(rows), "by_accountant": by_accountant,
              "clients": sorted({r["client_id"] for r in rows})}
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would list {len(rows)} open items", {**output, "dry_run": True})
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return ActionResult(True, f"{len(rows)} annual items of {year} still open, listed in {target.name}", output)


__all__ = ["status_list"]
