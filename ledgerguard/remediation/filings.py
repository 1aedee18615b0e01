"""Filing actions: snapshot the tracker, triage the backlog into a worklist, compare invoices with
the declared sales. Outputs go to the incident folder (``scratch_dir/<incident_id>``)."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import filings as src

TRIAGE_COLUMNS = ["rank", "client_id", "client_name", "vip", "accountant_id", "tax", "tax_due_yuan", "deadline",
                  "hours_to_deadline", "days_late", "late_fee_per_day_yuan", "tracker_row"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@register_action("filing.snapshot")
def snapshot(ctx: ActionContext) -> ActionResult:
    """Copy the tracker as it is now (with its sha256 and per-period counts) into the incident folder.

    Idempotent: an identical tracker already snapshotted is not copied again."""
    path = src.tracker_path(ctx.agency)
    if not path.is_file():
        raise ActionFailed(f"filing tracker not found: {path}")
    _, df = src.load(ctx.agency)
    digest = _sha256(path)
    folder = ctx.incident_dir / "status_snapshots"
    existing = sorted(folder.glob(f"*-{digest[:12]}{path.suffix}")) if folder.is_dir() else []
    counts = {p: {s: int(n) for s, n in g["status"].value_counts().items()} for p, g in df.groupby("period")}
    if existing:
        return ActionResult(True, f"tracker unchanged since snapshot {existing[-1].name}",
                            {"snapshot": str(existing[-1]), "sha256": digest, "already": True, "counts": counts})
    stamp = ctx.now.strftime("%Y%m%dT%H%M%SZ")
    target = folder / f"{stamp}-{digest[:12]}{path.suffix}"
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would copy {path.name} to {target}", {"dry_run": True})
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    if _sha256(target) != digest:
        raise ActionFailed(f"snapshot {target} does not match the tracker's checksum")
    meta = {"source": str(path), "sha256": digest, "taken_at": ctx.now.isoformat(), "rows": len(df),
            "counts": counts, "incident_id": ctx.incident_id}
    target.with_suffix(".json").write_text(json.dumps(meta, ensure_ascii=False, indent=2), encoding="utf-8")
    return ActionResult(True, f"snapshot of {path.name} ({len(df)} returns) saved as {target.name}",
                        {"snapshot": str(target), "sha256": digest, "counts": counts})


@register_action("filing.triage")
def triage(ctx: ActionContext) -> ActionResult:
    """An ordered worklist of the period's unfiled returns (default: tax due, largest first; then
    hours to the deadline), with each client's accountant — written as CSV."""
    agency = ctx.agency
    period = src.period_from_resource(ctx.resource, ctx.now, agency.tz)
    order = list(ctx.params.get("order_by") or ["tax_due_yuan", "hours_to_deadline"])
    allowed = {"tax_due_yuan", "hours_to_deadline", "vip"}
    if set(order) - allowed:
        raise ActionFailed(f"order_by may name {', '.join(sorted(allowed))}; got {order}")
    deadline = src.period_deadline(src.calendar_for(ctx.params), period)
    _, df = src.load(agency, params=ctx.params)
    todo = df[(df["period"] == period) & (df["status"] == "unfiled")]
    left = round(src.time_left(deadline, ctx.now), 2)
    late = src.days_late(deadline, ctx.now)
    rows: list[dict[str, Any]] = []
    for r in todo.itertuples():
        client = agency.client(r.client_id)
        due = None if r.tax_due != r.tax_due else round(float(r.tax_due), 2)
        rows.append({"client_id": r.client_id, "client_name": client.name, "vip": client.vip,
                     "accountant_id": client.accountant_id, "tax": r.tax, "tax_due_yuan": due,
                     "deadline": deadline.isoformat(), "hours_to_deadline": left, "days_late": late,
                     "late_fee_per_day_yuan": None if due is None else round(due * src.LATE_FEE_RATE_PER_DAY, 2),
                     "tracker_row": int(r.row)})
    keys = {"tax_due_yuan": lambda x: -(x["tax_due_yuan"] or 0.0), "hours_to_deadline": lambda x: x["hours_to_deadline"],
            "vip": lambda x: not x["vip"]}
    rows.sort(key=lambda x: tuple(keys[k](x) for k in order) + (x["client_id"], x["tax"]))
    for i, row in enumerate(rows, start=1):
        row["rank"] = i
    target = ctx.incident_dir / f"triage-{period}.csv"
    by_accountant: dict[str, int] = {}
    for row in rows:
        by_accountant[row["accountant_id"]] = by_accountant.get(row["accountant_id"], 0) + 1
    output = {"worklist": str(target), "returns": len(rows), "by_accountant": by_accountant,
              "tax_due_yuan": round(sum(r["tax_due_yuan"] or 0 for r in rows), 2), "order_by": order}
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would write a worklist of {len(rows)} returns", {**output, "dry_run": True})
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=TRIAGE_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    top = rows[0] if rows else None
    summary = (f"worklist of {len(rows)} unfiled returns for {period} written to {target.name}"
               + (f"; first: {top['client_id']} {top['tax']} ¥{top['tax_due_yuan'] or 0:,.2f}" if top else ""))
    return ActionResult(True, summary, output)


@register_action("filing.compare_invoices")
def compare_invoices(ctx: ActionContext) -> ActionResult:
    """Per client, invoices issued vs sales/tax declared for ``returns:<YYYY-MM>``, as CSV."""
    from ledgerguard.detectors.finance import compare_invoices as compare
    from ledgerguard.detectors.finance import returns_period

    period = returns_period(ctx.resource)
    tolerance = float(ctx.params.get("tolerance_yuan", 1))
    table, paths = compare(ctx.agency, period, tolerance)
    target = ctx.incident_dir / f"invoice-comparison-{period}.csv"
    bad = table[table["mismatch"]]
    output = {"comparison": str(target), "clients": len(table), "mismatches": len(bad),
              "mismatched_clients": list(bad["client_id"]),
              "tax_gap_yuan": round(float(bad["tax_gap_yuan"].sum()), 2), **paths}
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would write {target.name}", {**output, "dry_run": True})
    target.parent.mkdir(parents=True, exist_ok=True)
    table.drop(columns=["line"]).to_csv(target, index=False, encoding="utf-8", float_format="%.2f")
    return ActionResult(True, f"{period}: {len(bad)} of {len(table)} clients differ between invoices and the "
                              f"declared sales (tax gap ¥{output['tax_gap_yuan']:,.2f}); table in {target.name}", output)


__all__ = ["compare_invoices", "snapshot", "triage"]
