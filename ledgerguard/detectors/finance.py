"""Money detectors and their paired injectors.

* ``wrong_filing`` (resource ``returns:<YYYY-MM>``): ``filing.invoice_vs_declared`` compares the
  invoices issued with the sales declared per client; ``etax.risk_prompt`` reads the e-tax bureau's
  risk-prompt export.
* ``payment_failure`` (resource ``payments:<client_id>`` or ``payments:all``):
  ``payment.debit_status`` (failed tax debits), ``payment.bank_change_requests`` (bank-account
  changes not verified by a call-back: the payment-fraud signal).

Bank account numbers only ever appear masked in summaries and evidence.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ledgerguard.calendar import CalendarError
from ledgerguard.detectors.base import (
    DetectionContext,
    Detector,
    DetectorResult,
    InjectionContext,
    InjectionReport,
    Injector,
    base_facts,
    hours,
    register_detector,
    register_injector,
)
from ledgerguard.masking import mask_text
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import filings as fsrc
from ledgerguard.sources import finance as src

FALSIFIED_RISK_TYPES = {"falsified_invoice", "fake_invoice", "虚开发票", "伪造凭证", "虚假申报"}


# --------------------------------------------------------------------------- resources
def returns_period(resource: str) -> str:
    head, sep, value = resource.partition(":")
    if head != "returns" or not sep or not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise ValueError(f"resource {resource!r} is not of the form returns:<YYYY-MM>")
    return value


def payments_scope(agency: Any, resource: str) -> str | None:
    """``payments:all`` → None (every client); ``payments:C0001`` → the client (must exist)."""
    head, sep, value = resource.partition(":")
    if head != "payments" or not sep or not value:
        raise ValueError(f"resource {resource!r} is not of the form payments:<client_id> or payments:all")
    if value == "all":
        return None
    agency.client(value)   # UnknownClientError naming clients.csv
    return value


def _deadline_facts(period: str, now: datetime, params: dict[str, Any], amount_due: float) -> dict[str, Any]:
    """Before/after the period's deadline, and the 滞纳金 accruing on ``amount_due`` after it.

    ``deadline_at`` is only set while the deadline lies ahead: once it has passed, the deadline that
    matters is the one the classifier finds itself (the next filing deadline)."""
    try:
        deadline = fsrc.period_deadline(fsrc.calendar_for(params), period)
    except CalendarError as exc:
        return {"period_deadline": None, "after_deadline": False, "deadline_unknown": str(exc)}
    after = fsrc.deadline_passed(deadline, now)
    facts: dict[str, Any] = {"period_deadline": deadline.isoformat(), "after_deadline": after,
                             "days_late": fsrc.days_late(deadline, now)}
    if not after:
        facts["deadline_at"] = deadline.isoformat()
        facts["hours_to_deadline"] = hours(fsrc.time_left(deadline, now))
    elif amount_due > 0:
        facts.update(late_fee_from=fsrc.day_after(deadline).isoformat(),
                     late_fee_so_far_yuan=fsrc.late_fee_yuan(amount_due, deadline, now),
                     late_fee_per_day_yuan=round(amount_due * fsrc.LATE_FEE_RATE_PER_DAY, 2),
                     cost_accruing_daily=True)
    facts["statutory_consequence"] = after and amount_due > 0
    return facts


def compare_invoices(agency: Any, period: str, tolerance: float) -> tuple[pd.DataFrame, dict[str, str]]:
    """Per client that declared VAT for ``period``: invoiced vs declared sales and tax."""
    inv_path, inv = src.read(agency, "invoices")
    dec_path, dec = src.read(agency, "declared")
    inv = inv[(inv["period"] == period) & (inv["status"] != "void")]
    dec = dec[(dec["period"] == period) & (dec["tax"] == "vat")]
    issued = inv.groupby("client_id").agg(invoiced_sales_yuan=("amount_yuan", "sum"),
                                          invoiced_tax_yuan=("tax_yuan", "sum"),
                                          invoices=("invoice_no", "count"))
    table = dec.set_index("client_id")[["declared_sales_yuan", "declared_tax_yuan", "line"]].join(issued, how="left")
    table[["invoiced_sales_yuan", "invoiced_tax_yuan"]] = table[["invoiced_sales_yuan", "invoiced_tax_yuan"]].fillna(0.0)
    table["invoices"] = table["invoices"].fillna(0).astype(int)
    table["sales_gap_yuan"] = (table["invoiced_sales_yuan"] - table["declared_sales_yuan"]).round(2)
    table["tax_gap_yuan"] = (table["invoiced_tax_yuan"] - table["declared_tax_yuan"]).round(2)
    table["mismatch"] = (table["sales_gap_yuan"].abs() > tolerance) | (table["tax_gap_yuan"].abs() > tolerance)
    return table.reset_index().sort_values("client_id"), {"invoices": str(inv_path), "declared": str(dec_path)}


@register_detector
class InvoiceVsDeclaredDetector(Detector):
    """Invoices issued vs sales declared, per client, beyond ``tolerance_yuan``."""

    id = "filing.invoice_vs_declared"
    emergency_type = "wrong_filing"
    description = "finance/invoices.csv totals vs finance/declared.csv for the period"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        period = returns_period(ctx.resource)
        tolerance = float(ctx.params.get("tolerance_yuan", 1))
        table, paths = compare_invoices(ctx.agency, period, tolerance)
        bad = table[table["mismatch"]]
        if bad.empty:
            return DetectorResult.clear(f"{period}: invoices match the declared sales of all {len(table)} clients "
                                        f"that declared VAT (tolerance ¥{tolerance:g})")
        clients = list(bad["client_id"])
        tax_gap = round(float(bad["tax_gap_yuan"].sum()), 2)
        facts = base_facts(ctx.agency, clients)
        facts.update(_deadline_facts(period, ctx.now, ctx.params, max(tax_gap, 0.0)))
        facts.update(filing_period=period, tax_gap_yuan=tax_gap,
                     sales_gap_yuan=round(float(bad["sales_gap_yuan"].sum()), 2),
                     clients=clients, mismatches=len(bad), tolerance_yuan=tolerance,
                     underpaid=tax_gap > 0)
        rows = [{k: (float(v) if isinstance(v, float) else v) for k, v in r.items()}
                for r in bad.drop(columns=["mismatch"]).to_dict(orient="records")]
        evidence = [EvidenceItem(kind="reconciliation", description=f"invoices vs declared sales, {period}",
                                 path=paths["declared"], data={"mismatches": rows[:100], **paths})]
        when = "after" if facts["after_deadline"] else "before"
        summary = (f"{period}: invoices and declared sales differ for {len(clients)} client(s) — sales gap "
                   f"¥{facts['sales_gap_yuan']:,.2f}, tax gap ¥{tax_gap:,.2f}, found {when} the deadline")
        if facts.get("late_fee_so_far_yuan"):
            summary += f"; 滞纳金 so far ¥{facts['late_fee_so_far_yuan']:,.2f}"
        return self.finding(ctx, summary, facts, evidence)


@register_detector
class RiskPromptDetector(Detector):
    """Open risk prompts (风险提示) of the tax bureau for the period."""

    id = "etax.risk_prompt"
    emergency_type = "wrong_filing"
    description = "the e-tax bureau's risk-prompt export (finance/risk-prompts.csv)"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        period = returns_period(ctx.resource)
        path, df = src.read(ctx.agency, "risk_prompts")
        open_ = df[(df["period"] == period) & (df["status"] == "open")]
        if open_.empty:
            resolved = int(((df["period"] == period) & (df["status"] == "resolved")).sum())
            return DetectorResult.clear(f"{period}: no open risk prompt in {path.name} ({resolved} resolved)")
        clients = sorted(set(open_["client_id"]))
        gap = round(float(open_["tax_amount_yuan"].fillna(0).sum()), 2)
        falsified = bool(open_["risk_type"].str.lower().isin(FALSIFIED_RISK_TYPES).any())
        facts = base_facts(ctx.agency, clients)
        facts.update(_deadline_facts(period, ctx.now, ctx.params, max(gap, 0.0)))
        facts.update(filing_period=period, tax_gap_yuan=gap, falsified=falsified, risk_prompts=len(open_),
                     risk_types=sorted(set(open_["risk_type"])), prompt_ids=list(open_["prompt_id"]))
        evidence = [EvidenceItem(kind="file", description=f"open risk prompts for {period}", path=str(path),
                                 data={"prompts": [{"prompt_id": r.prompt_id, "client_id": r.client_id,
                                                    "risk_type": r.risk_type,
                                                    "description": mask_text(r.description),
                                                    "tax_amount_yuan": None if pd.isna(r.tax_amount_yuan) else float(r.tax_amount_yuan),
                                                    "received_at": r.received_at.isoformat(), "line": int(r.line)}
                                                   for r in open_.itertuples()]})]
        summary = (f"{len(open_)} open tax-bureau risk prompt(s) for {period} ({', '.join(facts['risk_types'])}), "
                   f"{len(clients)} client(s), tax at issue ¥{gap:,.2f}")
        return self.finding(ctx, summary, facts, evidence)


@register_detector
class DebitStatusDetector(Detector):
    """Tax debits that failed (and were not re-queued or paid since)."""

    id = "payment.debit_status"
    emergency_type = "payment_failure"
    description = "finance/tax-debits.csv: failed 三方协议 debits"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        scope = payments_scope(ctx.agency, ctx.resource)
        path, df = src.read(ctx.agency, "tax_debits")
        if scope:
            df = df[df["client_id"] == scope]
        failed = df[df["status"] == "failed"]
        if failed.empty:
            queued = int((df["status"] == "queued").sum())
            return DetectorResult.clear(f"{scope or 'all clients'}: no failed debit among {len(df)} in {path.name}"
                                        + (f" ({queued} re-queued)" if queued else ""))
        clients = sorted(set(failed["client_id"]))
        amount = round(float(failed["amount"].sum()), 2)
        facts = base_facts(ctx.agency, clients)
        # The earliest deadline among the failed debits is the one that matters.
        periods = sorted(set(failed["period"]))
        per = {p: _deadline_facts(p, ctx.now, ctx.params, float(failed.loc[failed["period"] == p, "amount"].sum()))
               for p in periods}
        facts.update(per[periods[0]])
        fees = [f.get("late_fee_so_far_yuan") for f in per.values() if f.get("late_fee_so_far_yuan")]
        if fees:
            facts["late_fee_so_far_yuan"] = round(sum(fees), 2)
        facts.update(debit_failed=True, amount_yuan=amount, failed_debits=len(failed),
                     failure_reasons=sorted(set(failed["reason"]) - {""}), periods=periods,
                     debit_ids=list(failed["debit_id"]))
        evidence = [EvidenceItem(kind="file", description="failed tax debits", path=str(path),
                                 data={"failed": [{"debit_id": r.debit_id, "client_id": r.client_id, "period": r.period,
                                                   "tax": r.tax, "amount": float(r.amount), "reason": mask_text(r.reason),
                                                   "account": src.mask_account(r.account_no), "attempts": int(r.attempts),
                                                   "line": int(r.line)} for r in failed.head(100).itertuples()]})]
        summary = (f"{len(failed)} tax debit(s) failed for {len(clients)} client(s), ¥{amount:,.2f} "
                   f"({', '.join(facts['failure_reasons']) or 'no reason given'})")
        if facts.get("after_deadline"):
            summary += f"; past the deadline, 滞纳金 so far ¥{facts.get('late_fee_so_far_yuan', 0):,.2f}"
        return self.finding(ctx, summary, facts, evidence)


@register_detector
class BankChangeRequestsDetector(Detector):
    """Bank-account change requests not verified by calling back a known number."""

    id = "payment.bank_change_requests"
    emergency_type = "payment_failure"
    description = "finance/bank-changes.csv: unverified account changes (payment fraud signal)"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        scope = payments_scope(ctx.agency, ctx.resource)
        path, df = src.read(ctx.agency, "bank_changes")
        if scope:
            df = df[df["client_id"] == scope]
        live = df[df["status"].isin(["pending", "applied"])]
        risky = live[~live["verified_by_callback"]]
        if risky.empty:
            return DetectorResult.clear(f"{scope or 'all clients'}: {len(live)} open/applied bank-account change(s) "
                                        f"in {path.name}, all verified by call-back")
        clients = sorted(set(risky["client_id"]))
        amount = round(float(risky["amount_yuan"].fillna(0).sum()), 2)
        facts = base_facts(ctx.agency, clients, control_failure=bool((risky["status"] == "applied").any()))
        facts.update(bank_change_requested=True, callback_verified=False, unverified_requests=len(risky),
                     applied_unverified=int((risky["status"] == "applied").sum()),
                     amount_yuan=amount, channels=sorted(set(risky["channel"])),
                     request_ids=list(risky["request_id"]))
        items = [{"request_id": r.request_id, "client_id": r.client_id, "channel": r.channel,
                  "requested_by": mask_text(r.requested_by), "status": r.status,
                  "old_account": src.mask_account(r.old_account), "new_account": src.mask_account(r.new_account),
                  "requested_at": r.requested_at.isoformat(), "line": int(r.line)} for r in risky.itertuples()]
        evidence = [EvidenceItem(kind="file", description="bank-account changes not verified by call-back",
                                 path=str(path), data={"requests": items})]
        first = items[0]
        summary = (f"{len(risky)} bank-account change request(s) not verified by call-back "
                   f"({', '.join(facts['channels'])}), e.g. {first['client_id']} → account {first['new_account']} "
                   f"requested by {first['requested_by']}")
        return self.finding(ctx, summary, facts, evidence)


# --------------------------------------------------------------------------- injectors
def _pick_client(ctx: InjectionContext, client: str | None) -> str:
    if client:
        ctx.agency.client(client)
        return client
    tail = ctx.resource.partition(":")[2]
    if ctx.resource.startswith("payments:") and tail not in ("", "all"):
        ctx.agency.client(tail)
        return tail
    return random.Random(ctx.seed).choice(ctx.agency.client_ids)


def _unique(agency: Any, table: str, base: str) -> str:
    """``base``, or ``base-2``, ``base-3``… when a row with that id exists (drills run repeatedly)."""
    path = src.path_of(agency, table)
    key = src.TABLES[table].key[0]
    existing = set(src.read(agency, table)[1][key]) if path.exists() else set()
    candidate, n = base, 1
    while candidate in existing:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def _append(agency: Any, table: str, row: dict[str, Any]) -> str:
    path, df = src.read(agency, table) if src.path_of(agency, table).exists() else (src.path_of(agency, table), pd.DataFrame())
    df = pd.concat([df, pd.DataFrame([row])], ignore_index=True) if len(df) else pd.DataFrame([row])
    src.write(path, table, df)
    return str(path)


@register_injector
class InvoiceGapInjector(Injector):
    """Issue an invoice the client's VAT return did not declare (an under-declaration)."""

    id = "filing.inject_invoice_gap"
    emergency_type = "wrong_filing"
    detector = "filing.invoice_vs_declared"

    def inject(self, ctx: InjectionContext, *, client: str | None = None, amount_yuan: float = 24_615.38,
               tax_rate: float = 0.13, **_: Any) -> InjectionReport:
        period = returns_period(ctx.resource)
        _, dec = src.read(ctx.agency, "declared")
        declared = sorted(set(dec[(dec["period"] == period) & (dec["tax"] == "vat")]["client_id"]))
        if client is None:
            client = random.Random(ctx.seed).choice(declared or ctx.agency.client_ids)
        ctx.agency.client(client)
        if client not in declared:
            # Plant a matching declaration first (a period the sample does not cover), so the
            # only difference is the invoice below.
            _, inv = src.read(ctx.agency, "invoices")
            mine = inv[(inv["client_id"] == client) & (inv["period"] == period) & (inv["status"] != "void")]
            _append(ctx.agency, "declared", {
                "client_id": client, "period": period, "tax": "vat",
                "declared_sales_yuan": round(float(mine["amount_yuan"].sum()), 2),
                "declared_tax_yuan": round(float(mine["tax_yuan"].sum()), 2), "declared_at": pd.Timestamp(ctx.now)})
        tax = round(float(amount_yuan) * float(tax_rate), 2)
        no = _unique(ctx.agency, "invoices", f"DRILL{period.replace('-', '')}{random.Random(ctx.seed).randint(10**7, 10**8 - 1)}")
        year, month = int(period[:4]), int(period[5:])
        path = _append(ctx.agency, "invoices", {
            "invoice_no": no, "client_id": client, "period": period,
            "issued_at": pd.Timestamp(datetime(year, month, 28, 15, 0), tz="Asia/Shanghai").tz_convert("UTC"),
            "amount_yuan": float(amount_yuan), "tax_yuan": tax, "status": "valid"})
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"issued undeclared invoice {no} of ¥{amount_yuan:,.2f} (tax ¥{tax:,.2f}) for {client}",
                               changes={"path": path, "invoice_no": no, "client_id": client, "tax_yuan": tax,
                                        "amount_yuan": float(amount_yuan)},
                               undo={"invoice_no": no}, detector=self.detector)


@register_injector
class RiskPromptInjector(Injector):
    """Add an open tax-bureau risk prompt to the export."""

    id = "etax.inject_risk_prompt"
    emergency_type = "wrong_filing"
    detector = "etax.risk_prompt"

    def inject(self, ctx: InjectionContext, *, client: str | None = None, tax_amount_yuan: float = 8000.0,
               risk_type: str = "invoice_declared_mismatch", **_: Any) -> InjectionReport:
        period = returns_period(ctx.resource)
        client = _pick_client(ctx, client)
        pid = _unique(ctx.agency, "risk_prompts", f"FX{period.replace('-', '')}{random.Random(ctx.seed).randint(100000, 999999)}")
        path = _append(ctx.agency, "risk_prompts", {
            "prompt_id": pid, "client_id": client, "period": period, "received_at": pd.Timestamp(ctx.now),
            "risk_type": risk_type, "description": "开票金额大于申报销售额，请核实并更正申报",
            "tax_amount_yuan": float(tax_amount_yuan), "status": "open"})
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"added open risk prompt {pid} ({risk_type}, ¥{tax_amount_yuan:,.2f}) for {client}",
                               changes={"path": path, "prompt_id": pid, "client_id": client}, detector=self.detector)


@register_injector
class DebitFailureInjector(Injector):
    """Make a tax debit fail (余额不足) for the period."""

    id = "payment.inject_debit_failure"
    emergency_type = "payment_failure"
    detector = "payment.debit_status"

    def inject(self, ctx: InjectionContext, *, client: str | None = None, amount: float = 12_800.0,
               period: str | None = None, reason: str = "余额不足", **_: Any) -> InjectionReport:
        client = _pick_client(ctx, client)
        period = period or fsrc.current_period(ctx.now, ctx.agency.tz)
        path, df = src.read(ctx.agency, "tax_debits")
        did = _unique(ctx.agency, "tax_debits", f"D{period.replace('-', '')}{client}-DRILL{random.Random(ctx.seed).randint(100, 999)}")
        account = ""
        mine = df[df["client_id"] == client]
        if len(mine):
            account = mine.iloc[-1]["account_no"]
        row = {"debit_id": did, "client_id": client, "period": period, "tax": "vat", "amount": float(amount),
               "status": "failed", "reason": reason, "attempted_at": pd.Timestamp(ctx.now), "attempts": 1,
               "account_no": account}
        df = pd.concat([df, pd.DataFrame([row])], ignore_index=True)
        src.write(path, "tax_debits", df)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"debit {did} of ¥{amount:,.2f} failed for {client} ({reason})",
                               changes={"path": str(path), "debit_id": did, "client_id": client, "amount": float(amount),
                                        "period": period}, detector=self.detector)


@register_injector
class BankChangeInjector(Injector):
    """A bank-account change request by e-mail, not verified by call-back (the fraud pattern)."""

    id = "payment.inject_bank_change"
    emergency_type = "payment_failure"
    detector = "payment.bank_change_requests"

    def inject(self, ctx: InjectionContext, *, client: str | None = None, amount_yuan: float = 0.0,
               channel: str = "email", status: str = "pending", **_: Any) -> InjectionReport:
        client = _pick_client(ctx, client)
        rng = random.Random(ctx.seed)
        new = "6222" + "".join(str(rng.randint(0, 9)) for _ in range(15))
        path, df = src.read(ctx.agency, "bank_changes")
        mine = df[df["client_id"] == client]
        old = mine.iloc[-1]["new_account"] if len(mine) else ""
        rid = _unique(ctx.agency, "bank_changes", f"BC-DRILL-{rng.randint(10000, 99999)}")
        row = {"request_id": rid, "client_id": client, "requested_at": pd.Timestamp(ctx.now) - timedelta(minutes=30),
               "requested_by": "finance-dept@client-mail.example", "channel": channel, "old_account": old,
               "new_account": new, "verified_by_callback": False, "status": status,
               "amount_yuan": float(amount_yuan) if amount_yuan else float("nan"),
               "note": "客户邮件称对公账户变更，请更新三方协议扣款账户"}
        src.write(path, "bank_changes", pd.concat([df, pd.DataFrame([row])], ignore_index=True))
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"unverified bank-account change {rid} for {client} by {channel} "
                                       f"(new account {src.mask_account(new)})",
                               changes={"path": str(path), "request_id": rid, "client_id": client}, detector=self.detector)


__all__ = ["InvoiceVsDeclaredDetector", "RiskPromptDetector", "DebitStatusDetector", "BankChangeRequestsDetector",
           "compare_invoices", "payments_scope", "returns_period"]
