"""Urgent-claim actions (resource ``claim:<request_id>``).

* ``claims.prioritise`` moves the request to the top of the claims work queue (claims/queue.csv).
* ``claims.book_supported`` books only the supported claims as balanced vouchers in the client's
  ledger (Dr expense / Cr 其他应付款 by default), refuses the others with a written letter
  (templates ``claim_refusal.*``, Chinese by default) and keeps the decision trail
  (``<request_id>.trail.json`` next to the request). Idempotent: a claim booked once is never
  booked again (its voucher number is looked up first).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ledgerguard.calendar import FilingCalendar, to_shanghai
from ledgerguard.ledgers import VoucherLine, add_vouchers, connect, ledger_stats
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import claims as src

# 小企业会计准则 accounts for the usual claim categories; anything else goes to 管理费用.
EXPENSE_ACCOUNTS = {"广告宣传费": "5601", "运输费": "5601", "快递费": "5601", "销售费用": "5601",
                    "advertising": "5601", "marketing": "5601", "shipping": "5601",
                    "利息": "5603", "手续费": "5603", "bank_fees": "5603"}
DEFAULT_EXPENSE = "5602"          # 管理费用
DEFAULT_CREDIT = "2241"           # 其他应付款 (owed to the person who paid)
PRIORITY_ORDER = {"urgent": 0, "high": 1, "normal": 2, "low": 3}


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# --------------------------------------------------------------------------- prioritise
@register_action("claims.prioritise")
def prioritise(ctx: ActionContext) -> ActionResult:
    """Put the request at the top of claims/queue.csv with priority urgent and the close as due date."""
    request_id = src.request_id_from_resource(ctx.resource)
    _, req = src.load_request(ctx.agency, request_id)
    path = src.queue_path(ctx.agency)
    rows: list[dict[str, str]] = []
    if path.is_file():
        with open(path, newline="", encoding="utf-8") as fh:
            rows = [dict(r) for r in csv.DictReader(fh)]
    due = FilingCalendar.month_end(ctx.now).isoformat()
    mine = next((r for r in rows if r.get("request_id") == request_id), None)
    if mine and mine.get("priority") == "urgent" and rows.index(mine) == 0:
        return ActionResult(True, f"{request_id} is already first in the queue (urgent)", {"queue": str(path),
                                                                                           "already": True})
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would move {request_id} to the top of {path.name}", {"dry_run": True})
    if mine is None:
        mine = {"request_id": request_id, "client_id": req.client_id, "received_at": req.requested_at.isoformat(),
                "status": "open", "note": ""}
        rows.append(mine)
    mine.update(priority="urgent", due_at=due, updated_at=ctx.now.isoformat(timespec="seconds"),
                note=f"incident {ctx.incident_id}: urgent={req.urgent}, close {due[:10]}")
    active = [r for r in rows if r.get("status", "open") == "open"]
    done = [r for r in rows if r.get("status", "open") != "open"]
    active.sort(key=lambda r: (r is not mine, PRIORITY_ORDER.get(r.get("priority", "normal"), 2),
                               r.get("due_at") or "9999", r.get("received_at") or ""))
    ordered = active + done
    tmp = path.with_name(path.name + ".tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=src.QUEUE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(ordered)
    os.replace(tmp, path)
    return ActionResult(True, f"moved {request_id} of {req.client_id} to the top of the claims queue "
                              f"(urgent, due {due[:10]})",
                        {"queue": str(path), "position": 1, "queue_length": len(active)})


# --------------------------------------------------------------------------- book_supported
def _voucher_no(request_id: str, claim_id: str) -> str:
    return f"报-{request_id}-{claim_id}"


def _existing(ledger: Path, numbers: list[str]) -> set[str]:
    conn = connect(ledger, read_only=True)
    try:
        found: set[str] = set()
        for i in range(0, len(numbers), 500):
            chunk = numbers[i:i + 500]
            found |= {r[0] for r in conn.execute(
                f"SELECT voucher_no FROM vouchers WHERE voucher_no IN ({','.join('?' * len(chunk))})", chunk)}
        return found
    finally:
        conn.close()


def _render_letter(ctx: ActionContext, req: src.ClaimRequest, checks: list[src.ClaimCheck], language: str) -> str:
    from ledgerguard.channels.messaging import get_environment

    zh = language.startswith("zh")
    env = get_environment(language=language)
    refused = [{**c.to_dict(), "amount_cents": int(round(c.amount_yuan * 100)),
                "reason_text": src.REASONS[c.reason]["zh" if zh else "en"]} for c in checks if not c.supported]
    client = ctx.agency.client(req.client_id)
    return env.get_template("claim_refusal.txt.j2").render(
        client_name=client.name, agency_name=ctx.agency.config.name, request_id=req.request_id,
        requested_at=req.requested_at, claims_total=len(checks), booked=[c for c in checks if c.supported],
        refused=refused, period=f"{to_shanghai(req.requested_at):%Y-%m}", issued_at=ctx.now)


@register_action("claims.book_supported")
def book_supported(ctx: ActionContext) -> ActionResult:
    """Book the supported claims, refuse the others in writing, keep the trail.

    params: ``credit_account`` (default 2241 其他应付款; 1002 when paid from the bank), ``preparer``,
    ``approved_by`` (who approved the booking), ``language`` (letter; default the settings').
    """
    from ledgerguard.config import get_settings

    request_id = src.request_id_from_resource(ctx.resource)
    req_path, req = src.load_request(ctx.agency, request_id)
    if req.status != "open":
        return ActionResult(True, f"request {request_id} is {req.status}; nothing to book", {"status": req.status})
    checks = src.check_request(ctx.agency, req_path, req)
    client_id = req.client_id
    ledger = ctx.agency.ledger_path(client_id)
    if not ledger.is_file():
        raise ActionFailed(f"ledger of {client_id} is missing: {ledger}")
    if ctx.agency.frozen_marker(client_id).exists():
        raise ActionFailed(f"ledger of {client_id} is frozen ({ctx.agency.frozen_marker(client_id).name}); "
                           "unfreeze it before booking")
    credit = str(ctx.params.get("credit_account") or DEFAULT_CREDIT)
    preparer = str(ctx.params.get("preparer") or "LedgerGuard")
    approved_by = str(ctx.params.get("approved_by") or "")
    language = str(ctx.params.get("language") or get_settings().language)
    supported = [c for c in checks if c.supported]
    refused = [c for c in checks if not c.supported]
    numbers = [_voucher_no(request_id, c.claim_id) for c in supported]
    already = _existing(ledger, numbers)
    claims_by_id = {c.claim_id: c for c in req.claims}
    local_day = to_shanghai(req.requested_at).date()
    vouchers = []
    for c in supported:
        no = _voucher_no(request_id, c.claim_id)
        if no in already:
            continue
        claim = claims_by_id[c.claim_id]
        cents = int(round(c.amount_yuan * 100))
        account = EXPENSE_ACCOUNTS.get(c.category, DEFAULT_EXPENSE)
        memo = f"{c.category} 发票{c.invoice_no} 报账{request_id}"
        vouchers.append((no, local_day.isoformat(), f"报销{c.category}（{claim.description or c.category}）", preparer,
                         [VoucherLine(account, debit_cents=cents, memo=memo),
                          VoucherLine(credit, credit_cents=cents, memo=memo)]))
    letter_path = src.letters_dir(ctx.agency) / f"{request_id}-refusal.txt"
    trail = src.trail_path(ctx.agency, request_id)
    output: dict[str, Any] = {"request": str(req_path), "ledger": str(ledger), "to_book": len(vouchers),
                              "already_booked": len(already), "refused": len(refused), "trail": str(trail),
                              "letter": str(letter_path) if refused else None}
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would book {len(vouchers)} claims of {request_id} "
                                  f"({len(already)} booked before) and refuse {len(refused)}", {**output, "dry_run": True})
    if vouchers:
        conn = connect(ledger)
        try:
            add_vouchers(conn, vouchers)
            conn.commit()
        except Exception as exc:  # noqa: BLE001 — nothing half-booked: roll back and report
            conn.rollback()
            raise ActionFailed(f"booking into {ledger.name} failed, nothing booked: {exc}", output) from exc
        finally:
            conn.close()
    stats = ledger_stats(ledger)
    if not (stats.integrity_ok and stats.balanced):
        raise ActionFailed(f"ledger of {client_id} does not balance after booking "
                           f"(difference {stats.difference_cents} cents)", {**output, "stats": stats.to_dict()})
    if refused:
        _atomic_write(letter_path, _render_letter(ctx, req, checks, language) + "\n")
    previous = src.read_trail(ctx.agency, request_id) or {}
    runs = list(previous.get("runs", []))
    runs.append({"at": ctx.now.isoformat(), "incident_id": ctx.incident_id, "booked_now": len(vouchers),
                 "approved_by": approved_by or None})
    decisions = []
    for c in checks:
        d = {**c.to_dict(), "decision": "booked" if c.supported else "refused",
             "voucher_no": _voucher_no(request_id, c.claim_id) if c.supported else None}
        if not c.supported:
            d["reason_text"] = src.REASONS[c.reason]["zh" if language.startswith("zh") else "en"]
        decisions.append(d)
    record = {"request_id": request_id, "client_id": client_id, "request_file": str(req_path),
              "request_sha256": src.sha256(req_path), "requested_at": req.requested_at.isoformat(),
              "urgent": req.urgent, "decided_at": previous.get("decided_at") or ctx.now.isoformat(),
              "approved_by": approved_by or previous.get("approved_by"), "credit_account": credit,
              "booked": len(supported), "refused": len(refused),
              "amount_booked_yuan": round(sum(c.amount_yuan for c in supported), 2),
              "amount_refused_yuan": round(sum(c.amount_yuan for c in refused), 2),
              "refusal_letter": str(letter_path) if refused else None, "ledger": str(ledger),
              "trial_balance": {"balanced": stats.balanced, "debit_cents": stats.debit_cents,
                                "credit_cents": stats.credit_cents},
              "decisions": decisions, "runs": runs}
    _atomic_write(trail, json.dumps(record, ensure_ascii=False, indent=2))
    output.update(booked_now=len(vouchers), booked_total=len(supported), trial_balance_ok=stats.balanced)
    summary = f"{request_id}: booked {len(vouchers)} supported claims into {ledger.name}"
    if already:
        summary += f" ({len(already)} were booked before)"
    if refused:
        summary += f", refused {len(refused)} in writing ({letter_path.name})"
    return ActionResult(True, summary, output)


__all__ = ["book_supported", "prioritise"]
