"""Filing-tracker detector (emergency type ``filing_backlog``, resource ``filings:<YYYY-MM>`` or
``filings:current``) and its paired injector.

The tracker (CSV or .xlsx, see :mod:`ledgerguard.sources.filings`) is compared with the period's
statutory deadline from the filing calendar: returns still unfiled inside the warning window
(``warn_hours``, default 48/24 h) or after the deadline are a backlog; after the deadline the
滞纳金 (0.05 %/day of the tax due, 征管法 第32条) accrues from the day after the deadline.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

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
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import filings as src

EMERGENCY_TYPE = "filing_backlog"
DEFAULT_WARN_HOURS = (48, 24)
ABNORMAL_MONTHS = 2   # 连续3个月未申报 → 非正常户: two months unfiled is the last warning


def _warn_hours(params: dict[str, Any]) -> list[float]:
    raw = params.get("warn_hours", DEFAULT_WARN_HOURS)
    if isinstance(raw, (int, float)):
        raw = [raw]
    try:
        values = sorted({float(v) for v in raw}, reverse=True)
    except (TypeError, ValueError):
        raise ValueError(f"warn_hours must be a list of hours, got {raw!r}") from None
    if not values or any(v <= 0 for v in values):
        raise ValueError(f"warn_hours must be positive hours, got {raw!r}")
    return values


def backlog_facts(agency: Any, bl: src.Backlog, now: datetime, *, clients_total: int) -> dict[str, Any]:
    """Facts of a backlog, whether or not it is inside the warning window."""
    passed = src.deadline_passed(bl.deadline, now)
    late_days = src.days_late(bl.deadline, now)
    clients = bl.clients
    facts = base_facts(agency, clients, statutory_consequence=passed and len(bl.unfiled) > 0)
    unfiled = bl.unfiled
    tax_due = bl.tax_due_yuan
    facts.update(
        filing_period=bl.period,
        unfiled_returns=len(unfiled), returns_unfiled=len(unfiled), returns_total=bl.total_returns,
        clients_unfiled=len(clients), clients_total=clients_total,
        taxes=sorted(set(unfiled["tax"])),
        deadline=bl.deadline.isoformat(), deadline_at=bl.deadline.isoformat(),
        hours_to_deadline=hours(src.time_left(bl.deadline, now)),
        deadline_passed=passed, days_late=late_days,
        tax_due_yuan=tax_due, tax_due_known=bl.tax_due_known,
        months_unfiled=bl.months_unfiled, abnormal_risk_clients=bl.months_unfiled_clients,
    )
    if passed and len(unfiled):
        facts["late_fee_from"] = src.day_after(bl.deadline).isoformat()
        if tax_due is None:
            facts["late_fee_so_far_yuan"] = None
            facts["late_fee_per_day_yuan"] = None
            facts["late_fee_note"] = "tax_due missing in the tracker: surcharge not computable"
        else:
            facts["late_fee_so_far_yuan"] = round(sum(
                src.late_fee_yuan(v, bl.deadline, now) for v in unfiled["tax_due"].fillna(0)), 2)
            facts["late_fee_per_day_yuan"] = round(tax_due * src.LATE_FEE_RATE_PER_DAY, 2)
            facts["cost_accruing_daily"] = tax_due > 0
    return facts


@register_detector
class TrackerBacklogDetector(Detector):
    """Unfiled returns of the period vs hours to its statutory deadline (and after it)."""

    id = "filing.tracker_backlog"
    emergency_type = EMERGENCY_TYPE
    description = "filing tracker (CSV/Excel) vs the filing calendar's deadline for the period"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        period = src.period_from_resource(ctx.resource, ctx.now, agency.tz)
        warn = _warn_hours(ctx.params)
        deadline = src.period_deadline(src.calendar_for(ctx.params), period)
        path, df = src.load(agency, params=ctx.params)
        taxes = ctx.params.get("taxes") or None
        bl = src.backlog(df, period, deadline, taxes)
        left = src.time_left(deadline, ctx.now)
        if bl.total_returns == 0:
            return DetectorResult.clear(f"{path.name} lists no returns for {period} "
                                        f"(deadline {deadline.date()}); nothing to file")
        n = len(bl.unfiled)
        passed = left < 0
        inside = passed or left <= warn[0]
        if n == 0:
            return DetectorResult.clear(f"{period}: all {bl.total_returns} returns in {path.name} are filed "
                                        f"(deadline {deadline.date()}, {left:.1f} h left)")
        if not inside and bl.months_unfiled < ABNORMAL_MONTHS:
            return DetectorResult.clear(
                f"{period}: {n} of {bl.total_returns} returns still unfiled but the deadline "
                f"{deadline.date()} is {left:.1f} h away (warning from {warn[0]:g} h); no client has "
                f"gone {ABNORMAL_MONTHS}+ months without filing")
        facts = backlog_facts(agency, bl, ctx.now, clients_total=len(agency.client_ids))
        crossed = [w for w in warn if left <= w]
        facts["warn_stage_hours"] = min(crossed) if crossed else None
        worklist = bl.unfiled.sort_values("tax_due", ascending=False, na_position="last")
        top = [{"client_id": r.client_id, "tax": r.tax, "tax_due": None if pd.isna(r.tax_due) else float(r.tax_due),
                "row": int(r.row)} for r in worklist.head(50).itertuples()]
        evidence = [EvidenceItem(kind="file", description=f"filing tracker: {n} unfiled returns for {period}",
                                 path=str(path), data={"unfiled": top, "rows_read": len(df),
                                                       "returns_in_period": bl.total_returns}),
                    EvidenceItem(kind="calendar", description=f"statutory deadline for {period}",
                                 data={"deadline": deadline.isoformat(),
                                       "calendar": src.calendar_for(ctx.params).source})]
        if passed:
            fee = facts.get("late_fee_so_far_yuan")
            fee_text = f"滞纳金 so far ¥{fee:,.2f}" if fee is not None else "滞纳金 unknown (no tax_due)"
            summary = (f"{n} returns of {facts['clients_affected']} clients for {period} are "
                       f"{facts['days_late']} day(s) past the {deadline.date()} deadline; {fee_text}")
        else:
            summary = (f"{n} returns of {facts['clients_affected']} clients for {period} unfiled, "
                       f"{left:.1f} h to the {deadline.date()} deadline")
        if bl.months_unfiled >= ABNORMAL_MONTHS:
            summary += (f"; {len(bl.months_unfiled_clients)} client(s) have filed nothing for "
                        f"{bl.months_unfiled} months (非正常户 risk)")
        return self.finding(ctx, summary, facts, evidence)


# -- injector -----------------------------------------------------------------------------------
def _period_for(ctx: InjectionContext, period: str | None) -> str:
    if period:
        return src.period_from_resource(f"filings:{period}", ctx.now, ctx.agency.tz)
    if ctx.resource.startswith("filings:"):
        return src.period_from_resource(ctx.resource, ctx.now, ctx.agency.tz)
    return src.current_period(ctx.now, ctx.agency.tz)


def _seed_period(df: pd.DataFrame, agency: Any, period: str, taxes: list[str], filed_at: datetime,
                 rng: random.Random) -> pd.DataFrame:
    """Add a filed row for each client and tax the tracker lacks for ``period``."""
    have = set(zip(df.loc[df["period"] == period, "client_id"], df.loc[df["period"] == period, "tax"]))
    new = []
    for cid in agency.client_ids:
        for tax in taxes:
            if (cid, tax) not in have:
                new.append({"client_id": cid, "period": period, "tax": tax, "status": "filed",
                            "filed_at": pd.Timestamp(filed_at).tz_convert("UTC"),
                            "tax_due": float(sample_tax_due(rng, tax)), "row": 0})
    if not new:
        return df
    return pd.concat([df, pd.DataFrame(new)], ignore_index=True)


def sample_tax_due(rng: random.Random, tax: str, vat: float | None = None) -> float:
    """A realistic monthly amount for a small client (yuan)."""
    if tax == "vat":
        return round(rng.choice([rng.uniform(0, 3_000), rng.uniform(1_000, 30_000), rng.uniform(5_000, 120_000)]), 2)
    if tax == "surtax":
        return round((vat if vat is not None else rng.uniform(0, 20_000)) * 0.12, 2)
    if tax == "iit":
        return round(rng.uniform(0, 6_000), 2)
    if tax == "cit":
        return round(rng.uniform(0, 50_000), 2)
    return round(rng.uniform(0, 2_000), 2)


@register_injector
class InjectBacklogInjector(Injector):
    """Mark ``count`` returns of ``tax`` for the period unfiled (rows are added, filed, when the
    tracker has none for that period — so a scenario date can be planted with ``ctx.now``)."""

    id = "filing.inject_backlog"
    emergency_type = EMERGENCY_TYPE
    detector = "filing.tracker_backlog"

    def inject(self, ctx: InjectionContext, *, count: int = 5, tax: str = "vat",
               clients: list[str] | None = None, period: str | None = None,
               taxes: list[str] | tuple[str, ...] = ("vat", "surtax", "iit"), **_: Any) -> InjectionReport:
        agency = ctx.agency
        period = _period_for(ctx, period)
        rng = random.Random(ctx.seed)
        path = src.tracker_path(agency)
        df = src.read_tracker(path) if path.exists() else pd.DataFrame(columns=src.COLUMNS + ["row"])
        deadline = src.period_deadline(src.calendar_for(), period)
        # Filed rows of a planted period are dated inside its filing window, before "now".
        window_start = deadline - timedelta(days=14)
        filed_at = min(ctx.now, max(window_start, ctx.now - timedelta(days=1)))
        df = _seed_period(df, agency, period, sorted(set(taxes) | {tax}), filed_at, rng)
        pool = df[(df["period"] == period) & (df["tax"] == tax) & (df["status"] == "filed")]
        if clients:
            unknown = sorted(set(clients) - set(agency.client_ids))
            if unknown:
                raise ValueError(f"unknown clients: {', '.join(unknown)}")
            pool = pool[pool["client_id"].isin(clients)]
            chosen = list(pool.index)
        else:
            n = min(int(count), len(pool))
            chosen = sorted(rng.sample(list(pool.index), n))
        before = [{"client_id": df.at[i, "client_id"], "tax": tax,
                   "filed_at": None if pd.isna(df.at[i, "filed_at"]) else pd.Timestamp(df.at[i, "filed_at"]).isoformat()}
                  for i in chosen]
        df.loc[chosen, "status"] = "unfiled"
        df.loc[chosen, "filed_at"] = pd.NaT
        src.write_tracker(path, df)
        ids = sorted({b["client_id"] for b in before})
        return InjectionReport(
            injector=self.id, resource=ctx.resource,
            summary=f"marked {len(chosen)} {tax} returns of {len(ids)} clients unfiled for {period} in {path.name}",
            changes={"path": str(path), "period": period, "tax": tax, "returns": len(chosen), "clients": ids,
                     "deadline": deadline.isoformat()},
            undo={"path": str(path), "period": period, "rows": before}, detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        undo = report.undo or {}
        path = src.tracker_path(ctx.agency)
        df = src.read_tracker(path)
        for row in undo.get("rows", []):
            mask = (df["client_id"] == row["client_id"]) & (df["period"] == undo["period"]) & (df["tax"] == row["tax"])
            df.loc[mask, "status"] = "filed"
            df.loc[mask, "filed_at"] = pd.Timestamp(row["filed_at"]).tz_convert("UTC") if row["filed_at"] else pd.Timestamp(ctx.now)
        src.write_tracker(path, df)


__all__ = ["TrackerBacklogDetector", "InjectBacklogInjector", "EMERGENCY_TYPE", "backlog_facts", "sample_tax_due"]
