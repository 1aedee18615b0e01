"""Payment actions (resource ``payments:<client_id>`` or ``payments:all``): re-queue failed tax
debits, hold bank-account changes that were not verified by call-back."""

from __future__ import annotations

from ledgerguard.detectors.finance import payments_scope
from ledgerguard.remediation.base import ActionContext, ActionResult, register_action
from ledgerguard.sources import finance as src


@register_action("payment.retry")
def retry(ctx: ActionContext) -> ActionResult:
    """Re-queue every failed debit in scope (status failed → queued, attempts + 1) for the bank's
    next debit run. Idempotent: a queued debit is not queued twice."""
    scope = payments_scope(ctx.agency, ctx.resource)
    path, df = src.read(ctx.agency, "tax_debits")
    mask = df["status"] == "failed"
    if scope:
        mask &= df["client_id"] == scope
    ids = list(df.loc[mask, "debit_id"])
    if not ids:
        queued = int(((df["status"] == "queued") & ((df["client_id"] == scope) if scope else True)).sum())
        return ActionResult(True, f"no failed debit to retry ({queued} already queued)", {"queued_before": queued})
    amount = round(float(df.loc[mask, "amount"].sum()), 2)
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would re-queue {len(ids)} debits (¥{amount:,.2f})",
                            {"debit_ids": ids, "dry_run": True})
    df.loc[mask, "status"] = "queued"
    df.loc[mask, "attempts"] = df.loc[mask, "attempts"] + 1
    df.loc[mask, "reason"] = df.loc[mask, "reason"].map(
        lambda r: f"{r}; re-queued by incident {ctx.incident_id}" if r else f"re-queued by incident {ctx.incident_id}")
    src.write(path, "tax_debits", df)
    return ActionResult(True, f"re-queued {len(ids)} failed debit(s), ¥{amount:,.2f}, for the next debit run",
                        {"debit_ids": ids, "amount_yuan": amount, "file": str(path)})


@register_action("payment.hold_changes")
def hold_changes(ctx: ActionContext) -> ActionResult:
    """Put every unverified pending/applied bank-account change in scope on hold. Idempotent."""
    scope = payments_scope(ctx.agency, ctx.resource)
    path, df = src.read(ctx.agency, "bank_changes")
    mask = df["status"].isin(["pending", "applied"]) & ~df["verified_by_callback"]
    if scope:
        mask &= df["client_id"] == scope
    ids = list(df.loc[mask, "request_id"])
    if not ids:
        held = int((df["status"] == "held").sum())
        return ActionResult(True, f"no unverified bank-account change to hold ({held} on hold)", {"held_before": held})
    masked = [{"request_id": r.request_id, "client_id": r.client_id, "new_account": src.mask_account(r.new_account),
               "was": r.status} for r in df[mask].itertuples()]
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would hold {len(ids)} change(s)", {"requests": masked, "dry_run": True})
    applied = int((df.loc[mask, "status"] == "applied").sum())
    df.loc[mask, "note"] = df.loc[mask].apply(
        lambda r: (f"{r['note']}; " if r["note"] else "") + f"held by incident {ctx.incident_id} pending call-back "
                  f"(was {r['status']})", axis=1)
    df.loc[mask, "status"] = "held"
    src.write(path, "bank_changes", df)
    summary = f"held {len(ids)} bank-account change(s) not verified by call-back"
    if applied:
        summary += f"; {applied} had been applied already — revert the debit account after the call-back"
    return ActionResult(True, summary, {"requests": masked, "applied_before_hold": applied, "file": str(path)})


__all__ = ["hold_changes", "retry"]
