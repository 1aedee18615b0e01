"""Urgent-claim detectors (emergency type ``urgent_claim``, resource ``claim:<request_id>``) and the
paired injector that plants a request with its documents.

Both detectors check every claim of the request against its documents (supported / unsupported
with a reason) and read the month-end close (``FilingCalendar.month_end``) with working days
from chinese_calendar. A request already decided (status booked/closed, or a trail deciding every
claim) is clear.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta
from typing import Any

from ledgerguard.calendar import FilingCalendar, to_shanghai, working_days_between
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
from ledgerguard.sources import claims as src

EMERGENCY_TYPE = "urgent_claim"
DEFAULT_CLOSE_DAYS = 2


def _decided(agency: Any, req: src.ClaimRequest) -> str | None:
    if req.status != "open":
        return f"request {req.request_id} is {req.status}"
    trail = src.read_trail(agency, req.request_id)
    if trail:
        decided = {d["claim_id"] for d in trail.get("decisions", []) if d.get("decision") in ("booked", "refused")}
        if decided >= {c.claim_id for c in req.claims}:
            return f"every claim of {req.request_id} was decided on {trail.get('decided_at', '?')} (trail)"
    return None


def claim_facts(ctx: DetectionContext) -> tuple[src.ClaimRequest, dict[str, Any], list[EvidenceItem], str | None]:
    request_id = src.request_id_from_resource(ctx.resource)
    path, req = src.load_request(ctx.agency, request_id)
    done = _decided(ctx.agency, req)
    checks = src.check_request(ctx.agency, path, req)
    close = FilingCalendar.month_end(ctx.now)
    unsupported = [c for c in checks if not c.supported]
    facts = base_facts(ctx.agency, [req.client_id])
    facts.update(
        request_id=req.request_id, flagged_urgent=req.urgent, requested_at=req.requested_at.isoformat(),
        claims_total=len(checks), claims_supported=len(checks) - len(unsupported),
        claims_unsupported=len(unsupported),
        unsupported_reasons={r: sum(1 for c in unsupported if c.reason == r) for r in src.REASONS
                             if any(c.reason == r for c in unsupported)},
        amount_total_yuan=round(sum(c.amount_yuan for c in checks), 2),
        amount_unsupported_yuan=round(sum(c.amount_yuan for c in unsupported), 2),
        deadline_at=close.isoformat(), close_at=close.isoformat(),
        hours_to_close=hours((close - to_shanghai(ctx.now)).total_seconds() / 3600),
        working_days_to_deadline=working_days_between(ctx.now, close),
    )
    facts["hours_to_deadline"] = facts["hours_to_close"]
    evidence = [EvidenceItem(kind="file", description=f"claim request {req.request_id} ({req.channel})", path=str(path),
                             data={"sha256": src.sha256(path), "requested_by": req.requested_by,
                                   "urgent": req.urgent, "claims": len(checks)}),
                EvidenceItem(kind="documents", description="claims checked against their documents",
                             path=str(src.documents_dir(ctx.agency)),
                             data={"unsupported": [c.to_dict() for c in unsupported],
                                   "supported_claim_ids": [c.claim_id for c in checks if c.supported]})]
    return req, facts, evidence, done


def _summary(req: src.ClaimRequest, facts: dict[str, Any], why: str) -> str:
    return (f"{why}: request {req.request_id} of {req.client_id}{' (VIP)' if facts['vip'] else ''} — "
            f"{facts['claims_total']} claims, {facts['claims_unsupported']} unsupported "
            f"({', '.join(f'{k} {v}' for k, v in facts['unsupported_reasons'].items()) or 'none'}); "
            f"{facts['working_days_to_deadline']} working day(s), {facts['hours_to_close']:.1f} h to the month-end close")


@register_detector
class UrgentFlagDetector(Detector):
    """The client flagged the request urgent."""

    id = "claims.urgent_flag"
    emergency_type = EMERGENCY_TYPE
    description = "claim request JSON: the urgent flag"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        req, facts, evidence, done = claim_facts(ctx)
        if done:
            return DetectorResult.clear(f"{done}; nothing pending")
        if not req.urgent:
            return DetectorResult.clear(f"request {req.request_id} of {req.client_id} is not flagged urgent "
                                        f"({facts['claims_total']} claims)")
        return self.finding(ctx, _summary(req, facts, "urgent claim request"), facts, evidence)


@register_detector
class CloseWindowDetector(Detector):
    """The request is open within ``working_days_before_close`` working days of the month-end close."""

    id = "claims.close_window"
    emergency_type = EMERGENCY_TYPE
    description = "claim request vs the month-end close (working days, chinese_calendar)"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        window = int(ctx.params.get("working_days_before_close", DEFAULT_CLOSE_DAYS))
        req, facts, evidence, done = claim_facts(ctx)
        if done:
            return DetectorResult.clear(f"{done}; nothing pending")
        facts["close_window_days"] = window
        if facts["working_days_to_deadline"] > window:
            return DetectorResult.clear(f"request {req.request_id}: {facts['working_days_to_deadline']} working days "
                                        f"to the close on {facts['close_at'][:10]} (window {window})")
        return self.finding(ctx, _summary(req, facts, "claim request inside the close window"), facts, evidence)


# -- injector ------------------------------------------------------------------------------------
CATEGORIES = [("差旅费", 200, 3000), ("业务招待费", 150, 2500), ("办公费", 30, 1500), ("交通费", 15, 300),
              ("通讯费", 50, 300), ("快递费", 10, 200), ("广告宣传费", 500, 8000)]


def write_request(agency: Any, request_id: str, client_id: str, requested_at: datetime, *, claims: int,
                  unsupported: int, urgent: bool, rng: random.Random, status: str = "open",
                  requested_by: str = "客户财务") -> dict[str, Any]:
    """Write a request JSON and the e-invoice documents of its supported claims."""
    docs = src.documents_dir(agency) / request_id
    docs.mkdir(parents=True, exist_ok=True)
    local = to_shanghai(requested_at)
    items, bad = [], set(rng.sample(range(claims), unsupported))
    for i in range(claims):
        category, low, high = rng.choice(CATEGORIES)
        amount = round(rng.uniform(low, high), 2)
        cid = f"{i + 1:03d}"
        day = local.date() - timedelta(days=rng.randint(0, min(25, local.day - 1)))
        if i in bad:
            # Receipts without an invoice (a shop receipt photo, a taxi slip): no invoice number.
            receipt = docs / f"{cid}-receipt.jpg"
            receipt.write_bytes(b"\xff\xd8\xff\xe0" + f"receipt {cid} {amount:.2f}".encode())
            items.append({"claim_id": cid, "amount_yuan": amount, "category": category, "invoice_no": "",
                          "date": day.isoformat(), "description": f"{category}（无发票，仅收据）",
                          "documents": [f"{request_id}/{receipt.name}"]})
            continue
        invoice_no = f"2644{local.year % 100:02d}{rng.randint(10**13, 10**14 - 1)}"
        doc = docs / f"{cid}-invoice.json"
        doc.write_text(json.dumps({"invoice_no": invoice_no, "amount_yuan": amount, "issued_at": day.isoformat(),
                                   "seller": f"{category}供应商", "type": "全电发票"}, ensure_ascii=False), encoding="utf-8")
        items.append({"claim_id": cid, "amount_yuan": amount, "category": category, "invoice_no": invoice_no,
                      "date": day.isoformat(), "description": category, "documents": [f"{request_id}/{doc.name}"]})
    payload = {"request_id": request_id, "client_id": client_id, "requested_at": local.isoformat(timespec="seconds"),
               "urgent": urgent, "requested_by": requested_by, "channel": "wecom", "status": status, "claims": items}
    path = src.request_path(agency, request_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, ensure_ascii=False, indent=2), encoding="utf-8")
    return {"path": str(path), "unsupported": sorted(items[i]["claim_id"] for i in bad)}


@register_injector
class UrgentRequestInjector(Injector):
    """Plant a claim request (``claims`` claims, ``unsupported`` without invoice) at ``ctx.now``."""

    id = "claims.inject_urgent_request"
    emergency_type = EMERGENCY_TYPE
    detector = "claims.close_window"

    def inject(self, ctx: InjectionContext, *, client: str | None = None, claims: int = 48, unsupported: int = 6,
               urgent: bool = True, **_: Any) -> InjectionReport:
        request_id = src.request_id_from_resource(ctx.resource)
        if src.request_path(ctx.agency, request_id).exists():
            raise FileExistsError(f"claim request {request_id} exists already: {src.request_path(ctx.agency, request_id)}")
        rng = random.Random(ctx.seed)
        client = client or rng.choice(ctx.agency.client_ids)
        ctx.agency.client(client)
        if not 0 <= int(unsupported) <= int(claims) or int(claims) < 1:
            raise ValueError("need 1 <= claims and 0 <= unsupported <= claims")
        written = write_request(ctx.agency, request_id, client, ctx.now, claims=int(claims),
                                unsupported=int(unsupported), urgent=bool(urgent), rng=rng)
        return InjectionReport(injector=self.id, resource=ctx.resource,
                               summary=f"planted request {request_id} of {client}: {claims} claims, "
                                       f"{unsupported} without invoice{', urgent' if urgent else ''}",
                               changes={"client_id": client, **written}, detector=self.detector)


__all__ = ["UrgentFlagDetector", "CloseWindowDetector", "UrgentRequestInjector", "claim_facts", "write_request"]
