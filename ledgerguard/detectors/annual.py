"""Annual-items detector (emergency type ``annual_deadline``, resource ``annual:<year>``) and its
paired injector. Open items are compared with the annual deadlines of the filing calendar;
working days left come from chinese_calendar (holidays and 调休)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ledgerguard.calendar import to_shanghai, working_days_between
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
from ledgerguard.sources import annual as src
from ledgerguard.sources.filings import calendar_for

EMERGENCY_TYPE = "annual_deadline"
DEFAULT_ITEMS = list(src.ITEMS)
DEFAULT_WARN_DAYS = 15
LISTING_ITEMS = {"business_annual_report"}   # missing it → 经营异常名录


@register_detector
class AnnualUnfiledCountDetector(Detector):
    """Annual items still open within ``warn_days`` of their deadline (or past it)."""

    id = "annual.unfiled_count"
    emergency_type = EMERGENCY_TYPE
    description = "annual-items tracker vs the filing calendar's annual deadlines"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        year = src.year_from_resource(ctx.resource)
        items = list(ctx.params.get("items") or DEFAULT_ITEMS)
        unknown = [i for i in items if i not in src.ITEMS]
        if unknown:
            raise ValueError(f"unknown annual items {unknown}; known: {', '.join(src.ITEMS)}")
        warn_days = float(ctx.params.get("warn_days", DEFAULT_WARN_DAYS))
        calendar = calendar_for(ctx.params)
        path, df = src.read_items(agency)
        df = df[df["year"] == year]
        now = to_shanghai(ctx.now)
        breakdown: dict[str, dict[str, Any]] = {}
        for item in items:
            deadline = calendar.annual_deadline(item, year)
            rows = df[df["item"] == item]
            open_rows = rows[rows["status"] == "pending"]
            days_left = (deadline - now).total_seconds() / 86400
            breakdown[item] = {"deadline": deadline.isoformat(), "open": len(open_rows), "total": len(rows),
                               "days_left": round(days_left, 2), "in_window": days_left <= warn_days,
                               "clients": sorted(open_rows["client_id"]), "rows": open_rows}
        live = {k: v for k, v in breakdown.items() if v["open"] and v["in_window"]}
        if not live:
            parts = [f"{k}: {v['open']} open of {v['total']}, due {v['deadline'][:10]}" for k, v in breakdown.items()]
            return DetectorResult.clear(f"annual items {year} in {path.name}: nothing open within {warn_days:g} "
                                        f"days of its deadline ({'; '.join(parts)})")
        upcoming = [k for k, v in live.items() if v["days_left"] >= 0]
        # The nearest deadline still ahead matters most; else the one that passed most recently.
        name = (min(upcoming, key=lambda k: live[k]["days_left"]) if upcoming
                else max(live, key=lambda k: live[k]["days_left"]))
        chosen = live[name]
        deadline = datetime.fromisoformat(chosen["deadline"])
        passed = now > deadline
        clients = [c for c in chosen["clients"] if c != src.AGENCY_ID]
        listing = name in LISTING_ITEMS
        facts = base_facts(agency, clients, statutory_consequence=passed)
        facts.update(
            deadline_name=name, deadline_at=deadline.isoformat(), annual_year=year,
            items_unfiled=chosen["open"], items_unfiled_total=sum(v["open"] for v in live.values()),
            clients_total=len(agency.client_ids), agency_item_open=src.AGENCY_ID in chosen["clients"],
            hours_to_deadline=hours((deadline - now).total_seconds() / 3600),
            working_days_to_deadline=working_days_between(now, deadline),
            deadline_passed=passed, days_overdue=max(0, (now.date() - deadline.date()).days),
            listing_risk=listing, listing_risk_clients=clients if listing else [],
            items={k: {kk: vv for kk, vv in v.items() if kk not in ("rows", "clients")} for k, v in breakdown.items()},
        )
        label = src.ITEMS[name]
        evidence = [EvidenceItem(kind="file", description=f"annual items {year}: open {name}", path=str(path),
                                 data={"open": [{"client_id": r.client_id, "item": r.item, "line": int(r.row)}
                                                for r in chosen["rows"].head(200).itertuples()]}),
                    EvidenceItem(kind="calendar", description=f"deadline of {name}",
                                 data={"deadline": deadline.isoformat(), "calendar": calendar.source,
                                       "working_days_left": facts["working_days_to_deadline"]})]
        when = (f"{facts['days_overdue']} day(s) past" if passed
                else f"{facts['working_days_to_deadline']} working day(s) before")
        summary = (f"{chosen['open']} {label['en']} ({label['zh']}) items of {year} still open, {when} the "
                   f"{deadline.date()} deadline; {len(clients)} of {len(agency.client_ids)} clients"
                   + (f" at risk of {label['consequence_en']}" if listing else ""))
        return self.finding(ctx, summary, facts, evidence)


@register_injector
class InjectUnfiledInjector(Injector):
    """Mark ``count`` clients' ``item`` of the resource's year as pending (rows added if missing)."""

    id = "annual.inject_unfiled"
    emergency_type = EMERGENCY_TYPE
    detector = "annual.unfiled_count"

    def inject(self, ctx: InjectionContext, *, count: int = 5, item: str = "business_annual_report",
               clients: list[str] | None = None, **_: Any) -> InjectionReport:
        agency = ctx.agency
        year = src.year_from_resource(ctx.resource)
        if item not in src.ITEMS:
            raise ValueError(f"unknown annual item {item!r}; known: {', '.join(src.ITEMS)}")
        rng = random.Random(ctx.seed)
        path = src.items_path(agency)
        df = src.read_items(agency)[1] if path.exists() else pd.DataFrame(columns=src.COLUMNS + ["row"])
        have = set(df.loc[(df["year"] == year) & (df["item"] == item), "client_id"])
        missing = [c for c in agency.client_ids if c not in have]
        if missing:
            stamp = pd.Timestamp(ctx.now - timedelta(days=1)).tz_convert("UTC")
            df = pd.concat([df, pd.DataFrame([{"client_id": c, "year": year, "item": item, "status": "submitted",
                                               "submitted_at": stamp, "row": 0} for c in missing])],
                           ignore_index=True)
        pool = df[(df["year"] == year) & (df["item"] == item) & (df["status"] == "submitted")
                  & (df["client_id"] != src.AGENCY_ID)]
        if clients:
            unknown = sorted(set(clients) - set(agency.client_ids))
            if unknown:
                raise ValueError(f"unknown clients: {', '.join(unknown)}")
            chosen = list(pool[pool["client_id"].isin(clients)].index)
        else:
            chosen = sorted(rng.sample(list(pool.index), min(int(count), len(pool))))
        before = {df.at[i, "client_id"]: pd.Timestamp(df.at[i, "submitted_at"]).isoformat() for i in chosen}
        df.loc[chosen, "status"] = "pending"
        df.loc[chosen, "submitted_at"] = pd.NaT
        src.write_items(path, df)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"marked {item} of {len(chosen)} clients pending for {year} in {path.name}",
                               changes={"path": str(path), "item": item, "year": year,
                                        "clients": sorted(before), "count": len(chosen)},
                               undo={"item": item, "year": year, "submitted_at": before}, detector=self.detector)

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        undo = report.undo or {}
        path, df = src.read_items(ctx.agency)
        for cid, at in (undo.get("submitted_at") or {}).items():
            mask = (df["client_id"] == cid) & (df["year"] == undo["year"]) & (df["item"] == undo["item"])
            df.loc[mask, "status"] = "submitted"
            df.loc[mask, "submitted_at"] = pd.Timestamp(at).tz_convert("UTC")
        src.write_items(path, df)


__all__ = ["AnnualUnfiledCountDetector", "InjectUnfiledInjector", "EMERGENCY_TYPE"]
