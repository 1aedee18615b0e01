"""Sample probe data: targets (e-tax portal of the agency's province, a control portal, a public
reference, the bookkeeping SaaS, the agency's own systems), a healthy probe log for the last 24 h,
a quiet filing-error export, an all-green SaaS status snapshot and a fresh sync-status export.

Sample URLs use the reserved ``.invalid`` top-level domain: they never resolve, so every target is
``live: false`` and the detectors read the log instead of probing.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

from ledgerguard.sources import probes as src

NAME = "probes"

# City of the sample agency → its provincial e-tax bureau (深圳 has its own bureau).
PORTALS = {"上海": "shanghai", "杭州": "zhejiang", "深圳": "shenzhen", "成都": "sichuan", "苏州": "jiangsu"}
CONTROL_PORTAL = "beijing"
SERVICE = "bookkeeping"


def portal_for(agency) -> str:
    name = agency.config.name
    return next((p for city, p in PORTALS.items() if name.startswith(city)), "shanghai")


def targets_for(portal: str) -> dict[str, Any]:
    def etax(name: str, p: str, endpoint: str, path: str, role: str = "primary") -> dict[str, Any]:
        return {"name": name, "kind": "etax", "portal": p, "endpoint": endpoint, "role": role,
                "url": f"https://etax.{p}.chinatax.invalid{path}", "method": "GET", "timeout_s": 10,
                "expect_status": [200], "interval_minutes": 5, "live": False}

    return {
        "default_portal": portal,
        "default_service": SERVICE,
        "targets": [
            etax(f"etax-{portal}-login", portal, "login", "/sso/login"),
            etax(f"etax-{portal}-filing", portal, "filing", "/wszx-web/api/sb/health"),
            etax(f"etax-{CONTROL_PORTAL}-login", CONTROL_PORTAL, "login", "/sso/login", role="control"),
            {"name": "public-reference", "kind": "internal", "role": "control", "url": "https://www.reference.invalid/",
             "method": "HEAD", "timeout_s": 5, "expect_status": [200, 204, 301, 302], "interval_minutes": 5,
             "live": False, "description": "a public site: reachable means our own network is fine"},
            {"name": f"{SERVICE}-api", "kind": "saas", "service": SERVICE, "endpoint": "api",
             "url": f"https://api.{SERVICE}-saas.invalid/v1/health", "method": "GET", "timeout_s": 10,
             "expect_status": [200], "interval_minutes": 5, "live": False,
             "status_url": f"https://status.{SERVICE}-saas.invalid/api/v2/status.json"},
            {"name": "agency-fileserver", "kind": "internal", "site": "main",
             "url": "http://fileserver.agency.invalid/health", "method": "GET", "timeout_s": 5,
             "expect_status": [200], "interval_minutes": 5, "live": False},
            {"name": "agency-vpn", "kind": "internal", "site": "main",
             "url": "https://vpn.agency.invalid/", "method": "HEAD", "timeout_s": 5,
             "expect_status": [200, 302], "interval_minutes": 5, "live": False},
        ],
    }


def healthy_rows(target_names: list[str], now: datetime, rng, *, hours: float = 24,
                 interval_minutes: float = 5) -> list[dict[str, Any]]:
    """One ok probe per target every ``interval_minutes`` over the last ``hours``, aligned to the grid."""
    step = timedelta(minutes=interval_minutes)
    end = now.replace(second=0, microsecond=0)
    end -= timedelta(minutes=end.minute % int(interval_minutes))
    slots = int(hours * 60 / interval_minutes)
    rows = []
    for i in range(slots, -1, -1):
        at = end - i * step
        for name in target_names:
            rows.append({"target": name, "at": at.astimezone(timezone.utc).isoformat(timespec="seconds"),
                         "ok": "true", "status": "200", "elapsed_ms": f"{rng.uniform(60, 650):.1f}", "error": ""})
    return rows


def generate(ctx) -> dict[str, Any]:
    agency = ctx.agency
    rng = ctx.rng(NAME)
    now = ctx.now.astimezone(timezone.utc)
    portal = portal_for(agency)
    spec = targets_for(portal)
    tpath = src.targets_path(agency)
    tpath.parent.mkdir(parents=True, exist_ok=True)
    tpath.write_text("# Probe targets: what the e-tax, SaaS and office detectors probe (live: true) or read "
                     "from the probe log.\n" + yaml.safe_dump(spec, allow_unicode=True, sort_keys=False),
                     encoding="utf-8")

    rows = healthy_rows([t["name"] for t in spec["targets"]], now, rng)
    src.write_probe_log(src.probe_log_path(agency), rows)

    # Two isolated filing errors in the last day: below any burst threshold.
    errors = []
    for hours_ago, code, msg in ((20, "SB-1002", "申报表校验未通过：附表二第5栏与主表不一致"),
                                 (9, "SB-2031", "税款所属期已申报，请勿重复申报")):
        cid = rng.choice(agency.client_ids) if agency.client_ids else ""
        errors.append({"at": (now - timedelta(hours=hours_ago)).isoformat(timespec="seconds"), "portal": portal,
                       "client_id": cid, "tax": "vat", "error_code": code, "message": msg})
    src.write_filing_errors(agency.data_file(*src.FILING_ERRORS_FILE), errors)

    snapshot = {"page": {"id": "sample", "name": "Bookkeeping SaaS", "url": f"https://status.{SERVICE}-saas.invalid",
                         "updated_at": (now - timedelta(days=2)).isoformat(timespec="seconds")},
                "status": {"indicator": "none", "description": "All Systems Operational"},
                "url": spec["targets"][4]["status_url"],
                "fetched_at": (now - timedelta(minutes=2)).isoformat(timespec="seconds")}
    src.save_status_snapshot(agency, SERVICE, snapshot)

    sync_path = src.sync_status_path(agency)
    with open(sync_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=src.SYNC_COLUMNS)
        w.writeheader()
        for cid in agency.client_ids:
            w.writerow({"client_id": cid, "service": SERVICE,
                        "last_sync_at": (now - timedelta(minutes=rng.randint(1, 30))).isoformat(timespec="seconds"),
                        "checked_at": now.isoformat(timespec="seconds"), "status": "ok", "message": ""})
    return {"targets": len(spec["targets"]), "portal": portal, "probe_log_rows": len(rows),
            "filing_errors": len(errors), "sync_clients": len(agency.client_ids)}


def plant_filing_status(agency, period: str, unfiled: list[str], *, taxes: tuple[str, ...] = ("vat", "surtax", "iit"),
                        unfiled_taxes: tuple[str, ...] = ("vat",), filed_at: datetime | None = None) -> Path:
    """Rewrite the filing tracker for ``period``: every client has ``taxes``; the clients in
    ``unfiled`` still have ``unfiled_taxes`` to file, everything else is filed. (Scenario tests.)"""
    path = agency.filing_tracker_path
    filed_at = filed_at or datetime.now(timezone.utc)
    missing = set(unfiled) - set(agency.client_ids)
    if missing:
        raise ValueError(f"unknown clients: {', '.join(sorted(missing))}")
    todo = set(unfiled)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["client_id", "period", "tax", "status", "filed_at"])
        w.writeheader()
        for cid in agency.client_ids:
            for tax in taxes:
                is_unfiled = cid in todo and tax in unfiled_taxes
                w.writerow({"client_id": cid, "period": period, "tax": tax,
                            "status": "unfiled" if is_unfiled else "filed",
                            "filed_at": "" if is_unfiled else filed_at.isoformat(timespec="seconds")})
    return path


def plant_etax_outage(agency, *, now: datetime, unfiled: int = 37, minutes: float = 180, interval_minutes: float = 5,
                      period: str | None = None, seed: str = "scenario-a") -> dict[str, Any]:
    """Scenario A's conditions: ``unfiled`` clients still have VAT to file for the current period
    (everything else filed) and the portal's probes fail (502 / time-outs) for ``minutes`` up to ``now``."""
    import random

    from ledgerguard.detectors import InjectionContext, get_injector

    period = period or src.current_period(now, agency.tz)
    chosen = sorted(random.Random(seed).sample(list(agency.client_ids), min(unfiled, len(agency.client_ids))))
    plant_filing_status(agency, period, chosen, filed_at=now - timedelta(days=3))
    portal = portal_for(agency)
    report = get_injector("etax.inject_outage").inject(
        InjectionContext(agency=agency, resource=f"etax:{portal}", now=now),
        minutes=minutes, interval_minutes=interval_minutes, statuses=[502, 502, "timeout"])
    return {"portal": portal, "resource": f"etax:{portal}", "period": period, "unfiled_clients": chosen,
            "injection": report.to_dict()}


__all__ = ["NAME", "generate", "healthy_rows", "plant_etax_outage", "plant_filing_status", "portal_for",
           "targets_for"]
