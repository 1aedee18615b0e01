"""Vendor-breach detectors (emergency type ``vendor_breach``, resource ``vendor:<vendor_id>``): vendor
notices and the threat-intel feed, weighed through the vendor register (which of our clients and
whose personal data the vendor holds); with their paired drill injectors."""

from __future__ import annotations

import json
from datetime import timedelta, timezone
from pathlib import Path
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
    register_detector,
    register_injector,
)
from ledgerguard.detectors.probes import resource_name
from ledgerguard.masking import mask_value
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import vendors as src

VENDOR = "vendor_breach"
CAC_THRESHOLD = 1_000_000  # people: the incident is 较大 and the vendor reports to the CAC within 4 h


def _people(agency, clients: list[str], v: src.Vendor) -> int:
    """People whose personal data the vendor holds for these clients: their employees, or one
    contact (the legal representative) per client."""
    if v.data_subjects == "employees":
        return int(sum(agency.client(c).employees for c in clients))
    if v.data_subjects == "contacts":
        return len(clients)
    return 0


def vendor_scope_facts(agency, v: src.Vendor, *, clients: list[str], data_kinds: list[str], confirmed: bool,
                       scope_confirmed: bool, credentials_exposed: bool,
                       persons_affected: int | None) -> dict[str, Any]:
    kinds = [k for k in (data_kinds or v.data_processed) if k in src.PII_KINDS]
    people = _people(agency, clients, v) if kinds else 0
    involved = bool(kinds) and people > 0
    facts = base_facts(agency, clients, pii_leaked=involved and confirmed)
    facts.update(pii_leak_suspected=involved and not confirmed, pii_kinds=kinds, pii_people=people,
                 agency_role={"employees": "entrusted", "contacts": "handler"}.get(v.data_subjects, "handler"),
                 vendor_id=v.id, vendor_name=v.name, vendor_service=v.service, scope_confirmed=scope_confirmed,
                 credentials_exposed=credentials_exposed,
                 vendor_contacts=[mask_value(c.model_dump()) for c in v.contacts])
    if involved and confirmed:
        facts["pii_people_leaked"] = people
    if persons_affected is not None:
        facts["vendor_persons_affected"] = int(persons_affected)
        facts["vendor_reporting_duty"] = int(persons_affected) >= CAC_THRESHOLD
    return facts


@register_detector
class VendorNoticeDetector(Detector):
    """A breach notice naming the vendor, received within max_age_days."""

    id = "vendor.notice"
    emergency_type = VENDOR
    description = "vendor notices (vendors/notices/*.json) through the vendor register and clients' employees"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        v = src.vendor(agency, resource_name(ctx.resource, "vendor"))
        max_age = timedelta(days=float(ctx.params.get("max_age_days", 30)))
        now = pd.Timestamp(ctx.now)
        notices = [(p, n) for p, n in src.read_notices(agency)
                   if n.vendor_id == v.id and now - max_age <= n.received_at <= now]
        if not notices:
            return DetectorResult.clear(f"no notice from vendor {v.id} ({v.name}) received in the last "
                                        f"{max_age.days} days under {src.notices_dir(agency)}")
        vendor_clients = v.client_ids(agency)
        named = [c for p, n in notices for c in (n.clients or [])]
        unknown = sorted({c for c in named if not agency.has_client(c)})
        clients = [c for c in vendor_clients if c in set(named)] if named else vendor_clients
        kinds = sorted({k for _, n in notices for k in n.data_kinds}) or v.data_processed
        persons = [n.persons_affected for _, n in notices if n.persons_affected is not None]
        facts = vendor_scope_facts(
            agency, v, clients=clients, data_kinds=kinds,
            confirmed=any(n.status == "confirmed" for _, n in notices),
            scope_confirmed=any(n.scope_confirmed for _, n in notices),
            credentials_exposed=any(n.credentials_exposed for _, n in notices) or ("credentials" in kinds and v.credentials),
            persons_affected=max(persons) if persons else None)
        facts.update(notices=len(notices), notice_titles=[n.title for _, n in notices],
                     notice_received_at=min(n.received_at for _, n in notices).isoformat(),
                     clients_named_unknown=unknown)
        incident = [n.incident_at for _, n in notices if n.incident_at is not None]
        if incident:
            facts["vendor_incident_at"] = min(incident).isoformat()
        evidence = [EvidenceItem(kind="file", description=f"vendor notice: {n.title} ({n.status})", path=str(p),
                                 observed_at=n.received_at.to_pydatetime(),
                                 data=json.loads(p.read_text(encoding="utf-8"))) for p, n in notices]
        evidence.append(EvidenceItem(kind="file", description=f"vendor register entry {v.id}",
                                     path=str(src.register_path(agency)),
                                     data={"clients": len(vendor_clients), "data_processed": v.data_processed,
                                           "data_subjects": v.data_subjects}))
        what = "leaked" if facts["pii_leaked"] else ("possibly leaked" if facts["pii_leak_suspected"] else "involved")
        pii = (f"personal data ({', '.join(facts['pii_kinds'])}) of about {facts['pii_people']} people {what}"
               if facts["pii_kinds"] else "no personal data named")
        return self.finding(ctx, f"breach notice from {v.name} ({v.id}): {len(clients)} of our clients, {pii}"
                                 f"{'; scope not confirmed' if not facts['scope_confirmed'] else ''}", facts, evidence)


@register_detector
class ThreatIntelFeedDetector(Detector):
    """Threat-intel entries naming the vendor's domains (or the domains of clients it serves)."""

    id = "threatintel.feed"
    emergency_type = VENDOR
    description = "threat-intel feed entries matching vendor_domains / client_domains"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        v = src.vendor(agency, resource_name(ctx.resource, "vendor"))
        match = set(ctx.params.get("match") or ["vendor_domains", "client_domains"])
        window = timedelta(days=float(ctx.params.get("window_days", 7)))
        now = pd.Timestamp(ctx.now)
        entries = [e for e in src.read_feed(agency) if now - window <= e["at"] <= now]
        vendor_clients = v.client_ids(agency)
        client_domains = {d: c for d, c in src.read_client_domains(agency).items() if c in set(vendor_clients)} \
            if "client_domains" in match else {}
        vendor_hits, client_hits = [], []
        for e in entries:
            if "vendor_domains" in match and any(src.domain_matches(d, w) for d in e["domains"] for w in v.domains):
                vendor_hits.append(e)
            else:
                hit = sorted({c for d in e["domains"] for w, c in client_domains.items() if src.domain_matches(d, w)})
                if hit:
                    client_hits.append((e, hit))
        if not vendor_hits and not client_hits:
            return DetectorResult.clear(f"{len(entries)} threat-intel entries in the last {window.days} days; none "
                                        f"names {v.id}'s domains ({', '.join(v.domains) or 'none'}) or its "
                                        f"{len(client_domains)} clients' domains")
        clients = vendor_clients if vendor_hits else sorted({c for _, cs in client_hits for c in cs})
        all_hits = vendor_hits + [e for e, _ in client_hits]
        kinds = sorted({k for e in all_hits for k in e.get("data_kinds") or []})
        creds = any(e.get("type") == "credential_leak" or "credentials" in (e.get("data_kinds") or [])
                    for e in all_hits)
        facts = vendor_scope_facts(agency, v, clients=clients, data_kinds=kinds, confirmed=False,
                                   scope_confirmed=False, credentials_exposed=creds, persons_affected=None)
        facts.update(threat_intel_hits=len(all_hits), vendor_domain_hits=len(vendor_hits),
                     client_domain_hits=len(client_hits),
                     matched_domains=sorted({d for e in all_hits for d in e["domains"]}),
                     feed_sources=sorted({str(e.get("source", "")) for e in all_hits}))
        path = src.feed_path(agency)
        evidence = [EvidenceItem(kind="log_line", description=f"{e.get('source', '')}: {e.get('title', '')}",
                                 path=f"{path}:{e['line']}", observed_at=e["at"].to_pydatetime(),
                                 data={k: (v_.isoformat() if k == "at" else v_) for k, v_ in e.items()})
                    for e in all_hits]
        return self.finding(ctx, f"threat intel names {v.name} ({v.id}): {len(vendor_hits)} entr(ies) on its domains, "
                                 f"{len(client_hits)} on its clients' domains; {len(clients)} clients exposed"
                                 f"{', credentials may be exposed' if creds else ''}", facts, evidence)


# --------------------------------------------------------------------------- injectors
@register_injector
class VendorNoticeInjector(Injector):
    """Write a breach notice from the vendor naming ``clients`` of our clients (default 40, or all
    its clients when fewer) and ``persons_affected`` across its incident."""

    id = "vendor.inject_notice"
    emergency_type = VENDOR
    detector = "vendor.notice"

    def inject(self, ctx: InjectionContext, *, clients: int | None = 40, status: str = "confirmed",
               persons_affected: int | None = None, scope_confirmed: bool = True,
               credentials_exposed: bool = False, data_kinds: list[str] | None = None, **_: Any) -> InjectionReport:
        agency = ctx.agency
        v = src.vendor(agency, resource_name(ctx.resource, "vendor"))
        ids = v.client_ids(agency)
        named = ids[: int(clients)] if clients is not None else ids
        at = ctx.now.astimezone(timezone.utc)
        notice = {"vendor_id": v.id, "received_at": at.isoformat(timespec="seconds"),
                  "incident_at": (at - timedelta(hours=20)).isoformat(timespec="seconds"),
                  "title": f"{v.name}数据安全事件告知函", "status": status,
                  "data_kinds": list(data_kinds or v.data_processed), "clients": named,
                  "persons_affected": persons_affected, "scope_confirmed": scope_confirmed,
                  "credentials_exposed": credentials_exposed, "source": "drill",
                  "summary": "未授权访问导致部分客户数据被导出（演练）"}
        path = src.write_notice(agency, f"{at:%Y%m%dT%H%M%S}-{v.id}-drill", notice)
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"breach notice from {v.name} naming {len(named)} clients written to {path.name}",
                               changes={"path": str(path), "clients": named}, undo={"path": str(path)})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        Path(report.undo["path"]).unlink(missing_ok=True)


@register_injector
class ThreatIntelInjector(Injector):
    """Append a feed entry naming the vendor's first domain (a leaked-data or credential dump)."""

    id = "threatintel.inject_entry"
    emergency_type = VENDOR
    detector = "threatintel.feed"

    def inject(self, ctx: InjectionContext, *, type: str = "breach", data_kinds: list[str] | None = None,
               **_: Any) -> InjectionReport:
        agency = ctx.agency
        v = src.vendor(agency, resource_name(ctx.resource, "vendor"))
        if not v.domains:
            raise ValueError(f"vendor {v.id} has no domains in {src.register_path(agency)} to match")
        entry = {"at": ctx.now.astimezone(timezone.utc).isoformat(timespec="seconds"), "source": "drill-feed",
                 "type": type, "domains": [f"portal.{v.domains[0]}"],
                 "title": f"Data dump attributed to {v.domains[0]} offered on a forum (drill)",
                 "data_kinds": list(data_kinds or v.data_processed)}
        src.append_feed(agency, [entry])
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"threat-intel entry naming {v.domains[0]} appended",
                               changes={"entry": entry}, undo={"entry": entry})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        path = src.feed_path(ctx.agency)
        target = json.dumps(report.undo["entry"], ensure_ascii=False, sort_keys=True)
        kept, dropped = [], False
        for line in path.read_text(encoding="utf-8").splitlines():
            if not dropped and line.strip() and json.dumps(json.loads(line), ensure_ascii=False, sort_keys=True) == target:
                dropped = True
                continue
            kept.append(line)
        path.write_text("\n".join(kept) + ("\n" if kept else ""), encoding="utf-8")


__all__ = ["VendorNoticeDetector", "ThreatIntelFeedDetector", "VendorNoticeInjector", "ThreatIntelInjector",
           "vendor_scope_facts"]
