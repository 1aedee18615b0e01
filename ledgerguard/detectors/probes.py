"""HTTP-probe detectors: the provincial e-tax bureau (emergency type ``etax_outage``, resource
``etax:<portal>``) and the bookkeeping SaaS (``saas_outage``, resource ``saas:<service>``), with
their paired drill injectors.

Data (see :mod:`ledgerguard.sources.probes`): ``probes/targets.yaml``, ``probes/probe-log.csv``,
``probes/filing-errors.csv``, ``probes/status/<service>.json``, ``probes/sync-status.csv``, and the
filing tracker (clients still unfiled) against the filing calendar.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
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
from ledgerguard.models import EvidenceItem
from ledgerguard.sources import probes as src

ETAX = "etax_outage"
SAAS = "saas_outage"
NETWORK_ERRORS = {"timeout", "connect_error", "read_error", "protocol_error", "dns_error", "tls_error", "http_error",
                  "error"}


def resource_name(resource: str, prefix: str) -> str:
    """``etax:shanghai`` → ``shanghai``; anything else is a ValueError naming the expected form."""
    head = f"{prefix}:"
    if not isinstance(resource, str) or not resource.startswith(head) or len(resource) == len(head):
        raise ValueError(f"resource {resource!r} is not of the form {prefix}:<name> "
                         f"(e.g. {prefix}:default)")
    return resource[len(head):]


def _local(agency, at: datetime | None) -> str:
    return "-" if at is None else at.astimezone(agency.tz).strftime("%Y-%m-%d %H:%M")


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(timezone.utc).isoformat(timespec="seconds")


def _probe_live(agency, targets: list[src.ProbeTarget], now: datetime) -> list[src.ProbeResult]:
    """Probe the live targets now and append the results to the probe log."""
    results = [src.probe(t, now=now) for t in targets if t.live]
    if results:
        src.append_probe_results(agency, results)
    return results


def _http_evidence(agency, rows: list[dict[str, Any]], log_path: Path) -> list[EvidenceItem]:
    items = []
    for r in rows:
        outcome = f"HTTP {r['status']}" if r["status"] is not None else ""
        if r["error"]:
            outcome = f"{outcome} {r['error']}".strip()
        items.append(EvidenceItem(
            kind="http", description=f"probe {r['target']} at {_local(agency, pd.Timestamp(r['at']).to_pydatetime())}: "
                                     f"{'ok' if r['ok'] else 'FAILED'} {outcome}".rstrip(),
            path=f"{log_path}:{r['line']}", data=r, observed_at=pd.Timestamp(r["at"]).to_pydatetime()))
    return items


def _control_verdict(log: pd.DataFrame, controls: list[src.ProbeTarget], start: datetime,
                     end: datetime) -> tuple[bool | None, list[dict[str, Any]]]:
    """Did the reference endpoints answer while the portal failed? True: at least one kept
    answering (our network works: the outage is theirs); False: every one failed too (look at our
    network); None: no control results in that window, or a mixed picture."""
    rows = src.log_rows(log, [c.name for c in controls], start=start, end=end)
    ratios = []
    for c in controls:
        mine = [r for r in rows if r["target"] == c.name]
        if mine:
            ratios.append(sum(1 for r in mine if r["ok"]) / len(mine))
    if not ratios:
        return None, rows
    if max(ratios) >= 0.8:
        return True, rows
    if max(ratios) <= 0.2:
        return False, rows
    return None, rows


def next_deadline_facts(now: datetime, calendar_file: str | None = None) -> dict[str, Any]:
    """Hours to the next monthly filing deadline (for SaaS and office outages)."""
    from ledgerguard.calendar import CalendarError

    try:
        deadline = src.filing_calendar(calendar_file).next_monthly_deadline(now)
    except CalendarError as exc:
        return {"deadline_unknown": str(exc)}
    return {"deadline_at": deadline.isoformat(), "hours_to_deadline": round((deadline - now).total_seconds() / 3600, 2)}


# --------------------------------------------------------------------------- e-tax
@register_detector
class EtaxProbeDetector(Detector):
    """Consecutive failed probes of the portal's login/filing endpoints covering ≥ fail_minutes,
    weighed against the filing deadline and the clients still unfiled."""

    id = "etax.probe"
    emergency_type = ETAX
    description = "probe log (live probe first when the target is live) of the e-tax portal's endpoints"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        portal_arg = resource_name(ctx.resource, "etax")
        p = ctx.params
        fail_minutes = float(p.get("fail_minutes", 15))
        min_failures = int(p.get("min_failures", 2))
        window = timedelta(hours=float(p.get("window_hours", 24)))
        cfg = src.load_targets(agency)
        portal = cfg.resolve_portal(portal_arg)
        targets = cfg.for_portal(portal, p.get("endpoints"))
        controls = cfg.controls()
        live = _probe_live(agency, targets + controls, ctx.now) if p.get("live", True) else []
        log = src.read_probe_log(agency)
        log_path = src.probe_log_path(agency)
        since = ctx.now - window
        runs = [src.trailing_failures(log, t.name, now=ctx.now, since=since) for t in targets]
        if not any(r.probes for r in runs):
            return DetectorResult.clear(
                f"no probe results for portal {portal} ({', '.join(t.name for t in targets)}) in the last "
                f"{window.total_seconds() / 3600:g} h of {log_path}; nothing to judge (are the sweeps running?)")
        down = [r for r in runs if r.failing and r.failures >= min_failures and r.minutes >= fail_minutes]
        if not down:
            parts = []
            for r in runs:
                if not r.probes:
                    parts.append(f"{r.target}: no results")
                elif r.failing:
                    parts.append(f"{r.target}: {r.failures} failure(s) over {r.minutes:.0f} min, below "
                                 f"{fail_minutes:g} min")
                else:
                    parts.append(f"{r.target}: ok at {_local(agency, r.last_at)} ({r.probes} probes in window)")
            return DetectorResult.clear(f"e-tax portal {portal} answers: " + "; ".join(parts))

        newest = max(r.last_at for r in runs if r.last_at is not None)
        log_age = round((ctx.now - newest).total_seconds() / 60, 1)
        interval = float(p.get("interval_minutes") or max(t.interval_minutes for t in targets))
        first = min(r.first_failure_at for r in down)
        last = max(r.last_failure_at for r in down)
        oks = [r.last_ok_at for r in down if r.last_ok_at is not None]
        last_ok = max(oks) if oks else None
        minutes = round((last - first).total_seconds() / 60, 1)
        kinds = sorted({k for r in down for k in r.error_kinds})
        failures = sum(r.failures for r in down)
        deadline = src.deadline_facts(agency, now=ctx.now, portal=portal, taxes=p.get("taxes"),
                                      calendar_file=p.get("calendar_file"))
        unfiled = deadline["unfiled_clients"]
        h = deadline.get("hours_to_deadline")
        late_risk = bool(unfiled) and h is not None and h <= 24 and not deadline["official_extension"]
        facts = base_facts(agency, unfiled, statutory_consequence=late_risk)
        facts.update(deadline)
        facts.update(portal=portal, probe_failed_minutes=minutes, outage_minutes=minutes, failures=failures,
                     first_failure_at=_iso(first), last_failure_at=_iso(last), last_ok_at=_iso(last_ok),
                     error_kinds=kinds, endpoints_down=[r.target for r in down],
                     probe_log_age_minutes=log_age, probe_log_stale=log_age > 3 * interval,
                     live_probes=[r.to_dict() for r in live if r.target in {t.name for t in targets}])
        verdict, control_rows = _control_verdict(log, controls, first, ctx.now)
        if verdict is not None:
            facts["outage_external"] = verdict
            facts["control_probes"] = len(control_rows)
        start = last_ok or first
        rows = src.log_rows(log, [t.name for t in targets], start=start, end=ctx.now)
        evidence = _http_evidence(agency, rows + control_rows, log_path)
        evidence.append(EvidenceItem(kind="file", description="probe log read", path=str(log_path),
                                     data={"rows_in_window": len(rows), "window_start": _iso(start)}))
        where = "" if verdict is None else (" (control endpoints answer: external)" if verdict
                                            else " (control endpoints fail too: check our network)")
        dl = "deadline unknown" if h is None else (f"{h:.1f} h to the deadline" if h >= 0
                                                   else f"deadline passed {-h:.1f} h ago")
        stale = (f" [newest probe {log_age:.0f} min old: are the sweeps running?]"
                 if facts["probe_log_stale"] else "")
        summary = (f"e-tax portal {portal} failing for {minutes:.0f} min since {_local(agency, first)}{stale} "
                   f"({failures} failed probes: {', '.join(kinds) or 'failed'}){where}; "
                   f"{deadline['clients_unfiled']} of {deadline['clients_total']} clients still unfiled for "
                   f"{deadline['filing_period']}, {dl}")
        return self.finding(ctx, summary, facts, evidence)


@register_detector
class EtaxFilingErrorsDetector(Detector):
    """A burst of filing errors for the portal in the export: ≥ min_errors within window_minutes."""

    id = "etax.filing_errors"
    emergency_type = ETAX
    description = "filing-error export: errors per window for the portal"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        portal_arg = resource_name(ctx.resource, "etax")
        portal = src.load_targets(agency).resolve_portal(portal_arg)
        min_errors = int(ctx.params.get("min_errors", 3))
        window = timedelta(minutes=float(ctx.params.get("window_minutes", 30)))
        df = src.read_filing_errors(agency)
        path = agency.data_file(*src.FILING_ERRORS_FILE)
        sel = df[(df["at"] > pd.Timestamp(ctx.now - window)) & (df["at"] <= pd.Timestamp(ctx.now))
                 & df["portal"].isin([portal, ""])]
        if len(sel) < min_errors:
            return DetectorResult.clear(f"{len(sel)} filing error(s) for portal {portal} in the last "
                                        f"{window.total_seconds() / 60:g} min of {path.name} "
                                        f"(threshold {min_errors})")
        deadline = src.deadline_facts(agency, now=ctx.now, portal=portal, taxes=ctx.params.get("taxes"),
                                      calendar_file=ctx.params.get("calendar_file"))
        h = deadline.get("hours_to_deadline")
        unfiled = deadline["unfiled_clients"]
        late_risk = bool(unfiled) and h is not None and h <= 24 and not deadline["official_extension"]
        facts = base_facts(agency, unfiled, statutory_consequence=late_risk)
        facts.update(deadline)
        codes = Counter(sel["error_code"])
        facts.update(portal=portal, filing_errors=len(sel), filing_error_codes=dict(codes.most_common()),
                     error_clients=sorted({c for c in sel["client_id"] if c}),
                     first_error_at=_iso(sel["at"].min().to_pydatetime()),
                     last_error_at=_iso(sel["at"].max().to_pydatetime()))
        evidence = [EvidenceItem(kind="log_line", description=f"{r.error_code} {r.client_id} {r.tax}: {r.message}",
                                 path=f"{path}:{r.line}", observed_at=r.at.to_pydatetime(),
                                 data={"at": _iso(r.at.to_pydatetime()), "client_id": r.client_id, "tax": r.tax,
                                       "error_code": r.error_code, "message": r.message})
                    for r in sel.itertuples(index=False)]
        top = ", ".join(f"{c}×{n}" for c, n in codes.most_common(3))
        return self.finding(ctx, f"{len(sel)} filing errors for portal {portal} in the last "
                                 f"{window.total_seconds() / 60:g} min ({top}); {deadline['clients_unfiled']} "
                                 f"clients still unfiled for {deadline['filing_period']}", facts, evidence)


# --------------------------------------------------------------------------- SaaS
def service_clients(agency, service: str) -> list[str]:
    """Clients booked on ``service`` (the sync-status export lists them); all clients without one."""
    try:
        df = src.read_sync_status(agency)
    except AgencyDataError:
        if src.sync_status_path(agency).is_file():
            raise
        return list(agency.client_ids)
    return sorted(set(df.loc[df["service"] == service, "client_id"]))


def _saas_facts(ctx: DetectionContext, service: str, clients: list[str]) -> dict[str, Any]:
    facts = base_facts(ctx.agency, clients)
    facts.update(next_deadline_facts(ctx.now, ctx.params.get("calendar_file")))
    facts["service"] = service
    return facts


@register_detector
class SaasStatusPageDetector(Detector):
    """The vendor's status page (Statuspage ``status.json``) shows minor/major/critical."""

    id = "saas.status_page"
    emergency_type = SAAS
    description = "vendor status page: live GET of the status JSON when the target is live, else the saved snapshot"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        cfg = src.load_targets(agency)
        service = cfg.resolve_service(resource_name(ctx.resource, "saas"))
        page = next((t for t in cfg.for_service(service) if t.status_url), None)
        if page is None:
            return DetectorResult.clear(f"no status_url configured for service {service} in {cfg.path.name}")
        fetched_live = False
        if page.live:
            data = src.fetch_status(page.status_url, timeout_s=page.timeout_s, now=ctx.now)
            src.save_status_snapshot(agency, service, data)
            fetched_live = True
        snapshot = src.read_status_snapshot(agency, service)
        path = src.status_snapshot_path(agency, service)
        fetched = pd.Timestamp(snapshot["fetched_at"]).to_pydatetime()
        age = (ctx.now - fetched).total_seconds() / 60
        how = "fetched now" if fetched_live else f"snapshot {age:.0f} min old"
        if "error" in snapshot:
            return DetectorResult.clear(f"status page {page.status_url} could not be read ({snapshot['error']}, "
                                        f"{how}); the API probes (saas.api_errors) decide")
        status = snapshot["status"]
        indicator = status.get("indicator")
        if indicator in ("none", "maintenance"):
            return DetectorResult.clear(f"status page of {service}: {indicator} — "
                                        f"{status.get('description', '')} ({how})")
        clients = service_clients(agency, service)
        facts = _saas_facts(ctx, service, clients)
        open_incidents = [i for i in snapshot.get("incidents") or []
                          if isinstance(i, dict) and i.get("status") not in ("resolved", "postmortem")]
        starts = [pd.Timestamp(i["created_at"]).to_pydatetime() for i in open_incidents if i.get("created_at")]
        if starts:
            facts["outage_minutes"] = round((ctx.now - min(starts)).total_seconds() / 60, 1)
            facts["outage_started_at"] = _iso(min(starts))
        facts.update(status_indicator=indicator, status_description=status.get("description", ""),
                     vendor_acknowledged=True, status_fetched_at=_iso(fetched),
                     status_snapshot_age_minutes=round(age, 1),
                     vendor_incidents=[{k: i.get(k) for k in ("name", "status", "impact", "created_at", "shortlink")}
                                       for i in open_incidents])
        evidence = [EvidenceItem(kind="http", description=f"status page {page.status_url}: {indicator} — "
                                                          f"{status.get('description', '')} ({how})",
                                 path=str(path), observed_at=fetched,
                                 data={"status": status, "incidents": facts["vendor_incidents"],
                                       "fetched_at": snapshot["fetched_at"], "url": page.status_url})]
        dur = f", open for {facts['outage_minutes']:.0f} min" if "outage_minutes" in facts else ""
        return self.finding(ctx, f"{service} status page reports {indicator}: {status.get('description', '')}"
                                 f"{dur} ({how}); {len(clients)} clients booked on it", facts, evidence)


@register_detector
class SaasApiErrorsDetector(Detector):
    """5xx / time-out share of the SaaS API probes in the window ≥ min_5xx_pct."""

    id = "saas.api_errors"
    emergency_type = SAAS
    description = "probe log of the SaaS API targets: share of 5xx and time-outs in the window"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        cfg = src.load_targets(agency)
        service = cfg.resolve_service(resource_name(ctx.resource, "saas"))
        targets = cfg.for_service(service)
        min_pct = float(ctx.params.get("min_5xx_pct", 20))
        window = timedelta(minutes=float(ctx.params.get("window_minutes", 10)))
        if ctx.params.get("live", True):
            _probe_live(agency, targets, ctx.now)
        log = src.read_probe_log(agency)
        log_path = src.probe_log_path(agency)
        names = [t.name for t in targets]
        rows = src.log_rows(log, names, start=ctx.now - window, end=ctx.now)
        if not rows:
            return DetectorResult.clear(f"no probe results for {', '.join(names)} in the last "
                                        f"{window.total_seconds() / 60:g} min of {log_path.name}; nothing to judge")
        bad = [r for r in rows if (r["status"] is not None and r["status"] >= 500) or r["error"] in NETWORK_ERRORS]
        pct = round(100 * len(bad) / len(rows), 1)
        if pct < min_pct:
            return DetectorResult.clear(f"{service} API: {len(bad)} of {len(rows)} probes 5xx/time-out in the "
                                        f"last {window.total_seconds() / 60:g} min ({pct:g} % < {min_pct:g} %)")
        clients = service_clients(agency, service)
        facts = _saas_facts(ctx, service, clients)
        runs = [src.trailing_failures(log, n, now=ctx.now, since=ctx.now - timedelta(days=1)) for n in names]
        failing = [r for r in runs if r.failing]
        if failing:
            first = min(r.first_failure_at for r in failing)
            facts["outage_minutes"] = round((max(r.last_failure_at for r in failing) - first).total_seconds() / 60, 1)
            facts["first_failure_at"] = _iso(first)
            oks = [r.last_ok_at for r in failing if r.last_ok_at]
            facts["last_ok_at"] = _iso(max(oks)) if oks else None
        facts.update(api_5xx_pct=pct, api_errors=len(bad), api_probes=len(rows),
                     error_kinds=sorted({r["error"] for r in bad if r["error"]}))
        evidence = _http_evidence(agency, rows, log_path)
        dur = f", failing for {facts['outage_minutes']:.0f} min" if "outage_minutes" in facts else ""
        return self.finding(ctx, f"{service} API: {len(bad)} of {len(rows)} probes 5xx/time-out in the last "
                                 f"{window.total_seconds() / 60:g} min ({pct:g} %){dur}; {len(clients)} clients "
                                 f"booked on it", facts, evidence)


@register_detector
class SaasSyncLagDetector(Detector):
    """Clients whose last successful sync is more than max_lag_minutes behind the export's check time."""

    id = "saas.sync_lag"
    emergency_type = SAAS
    description = "sync-status export: last successful sync per client vs max_lag_minutes"

    def detect(self, ctx: DetectionContext) -> DetectorResult:
        agency = ctx.agency
        cfg = src.load_targets(agency)
        service = cfg.resolve_service(resource_name(ctx.resource, "saas"))
        max_lag = float(ctx.params.get("max_lag_minutes", 60))
        df = src.read_sync_status(agency)
        path = src.sync_status_path(agency)
        rows = df[(df["service"] == service) & (df["checked_at"] <= pd.Timestamp(ctx.now))]
        if rows.empty:
            return DetectorResult.clear(f"no sync status for service {service} in {path.name}")
        lag = (rows["checked_at"] - rows["last_sync_at"]).dt.total_seconds() / 60
        never = rows["last_sync_at"].isna()
        late = rows[never | (lag > max_lag)]
        checked = rows["checked_at"].max().to_pydatetime()
        if late.empty:
            return DetectorResult.clear(f"{service}: all {len(rows)} clients synced within {max_lag:g} min "
                                        f"(max lag {lag.max():.0f} min, checked {_local(agency, checked)})")
        clients = sorted(set(late["client_id"]))
        late_lag = lag[late.index]
        max_minutes = None if late_lag.isna().all() else round(float(late_lag.max()), 1)
        facts = _saas_facts(ctx, service, clients)
        facts.update(sync_lag_minutes=max_minutes, clients_lagging=len(clients), clients_never_synced=int(never.sum()),
                     max_lag_minutes=max_lag, sync_checked_at=_iso(checked),
                     sync_export_age_minutes=round((ctx.now - checked).total_seconds() / 60, 1))
        evidence = [EvidenceItem(kind="log_line", path=f"{path}:{r.line}",
                                 description=f"{r.client_id}: last sync "
                                             f"{_local(agency, None if pd.isna(r.last_sync_at) else r.last_sync_at.to_pydatetime())}"
                                             f" ({r.status} {r.message})".rstrip(),
                                 data={"client_id": r.client_id, "last_sync_at": None if pd.isna(r.last_sync_at)
                                       else _iso(r.last_sync_at.to_pydatetime()),
                                       "checked_at": _iso(r.checked_at.to_pydatetime()), "status": r.status,
                                       "message": r.message})
                    for r in late.itertuples(index=False)][:200]
        lag_text = "never synced" if max_minutes is None else f"up to {max_minutes:.0f} min behind"
        return self.finding(ctx, f"{service}: {len(clients)} of {len(rows)} clients' sync {lag_text} "
                                 f"(max {max_lag:g} min)", facts, evidence)


# --------------------------------------------------------------------------- injectors
def _raw_log(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _key(row: dict[str, Any]) -> tuple:
    return tuple(str(row.get(c, "")) for c in src.PROBE_LOG_COLUMNS)


def inject_probe_failures(agency, target_names: list[str], *, now: datetime, minutes: float, interval_minutes: float,
                          statuses: list[int | str], control_names: list[str] = ()) -> dict[str, Any]:
    """Replace the targets' probe results in the last ``minutes`` by failures every ``interval_minutes``
    (cycling through ``statuses``: an int is that HTTP status, ``"timeout"`` a time-out); controls get
    ok results where they have none. Returns the undo record (rows added and removed)."""
    path = src.probe_log_path(agency)
    rows = _raw_log(path)
    start = now - timedelta(minutes=minutes)
    names = set(target_names)

    def in_window(r: dict[str, str]) -> bool:
        at = pd.Timestamp(r["at"])
        return pd.Timestamp(start) <= at <= pd.Timestamp(now)

    removed = [r for r in rows if r["target"] in names and in_window(r)]
    kept = [r for r in rows if not (r["target"] in names and in_window(r))]
    added: list[dict[str, str]] = []
    n = int(minutes // interval_minutes) + 1
    for i in range(n):
        at = now - timedelta(minutes=interval_minutes * (n - 1 - i))
        status = statuses[i % len(statuses)]
        for name in target_names:
            if status == "timeout":
                added.append({"target": name, "at": src._iso(at), "ok": "false", "status": "",
                              "elapsed_ms": "10000.0", "error": "timeout"})
            else:
                added.append({"target": name, "at": src._iso(at), "ok": "false", "status": str(int(status)),
                              "elapsed_ms": "85.0", "error": f"http_{int(status)}"})
        for name in control_names:
            if not any(r["target"] == name and in_window(r) for r in kept):
                added.append({"target": name, "at": src._iso(at), "ok": "true", "status": "200",
                              "elapsed_ms": "120.0", "error": ""})
    all_rows = sorted(kept + added, key=lambda r: pd.Timestamp(r["at"]))
    src.write_probe_log(path, all_rows)
    return {"path": str(path), "added": added, "removed": removed}


def restore_probe_log(undo: dict[str, Any]) -> None:
    path = Path(undo["path"])
    rows = _raw_log(path)
    to_drop = Counter(_key(r) for r in undo["added"])
    kept = []
    for r in rows:
        k = _key(r)
        if to_drop[k]:
            to_drop[k] -= 1
            continue
        kept.append(r)
    src.write_probe_log(path, sorted(kept + list(undo["removed"]), key=lambda r: pd.Timestamp(r["at"])))


@register_injector
class EtaxOutageInjector(Injector):
    """Failing probes (502 and time-outs) of the portal's endpoints covering ``minutes`` up to now."""

    id = "etax.inject_outage"
    emergency_type = ETAX
    detector = "etax.probe"

    def inject(self, ctx: InjectionContext, *, minutes: float = 60, interval_minutes: float = 5,
               statuses: list[int | str] | None = None, endpoints: list[str] | None = None,
               controls_ok: bool = True, **_: Any) -> InjectionReport:
        cfg = src.load_targets(ctx.agency)
        portal = cfg.resolve_portal(resource_name(ctx.resource, "etax"))
        targets = [t.name for t in cfg.for_portal(portal, endpoints)]
        controls = [t.name for t in cfg.controls()] if controls_ok else []
        undo = inject_probe_failures(ctx.agency, targets, now=ctx.now, minutes=float(minutes),
                                     interval_minutes=float(interval_minutes),
                                     statuses=list(statuses or [502, 502, "timeout"]), control_names=controls)
        failed = sum(1 for r in undo["added"] if r["ok"] == "false")
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"{failed} failing probes of {', '.join(targets)} over the last "
                                       f"{float(minutes):g} min", undo=undo,
                               changes={"portal": portal, "targets": targets, "failed_probes": failed,
                                        "minutes": float(minutes), "replaced_rows": len(undo["removed"])})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        restore_probe_log(report.undo)


FILING_ERROR_MESSAGES = [("SYS-502", "系统繁忙，请稍后再试（502 Bad Gateway）"),
                         ("SYS-504", "申报提交超时，请稍后重试"),
                         ("SB-9001", "申报数据提交失败：服务不可用")]


@register_injector
class EtaxFilingErrorsInjector(Injector):
    """``count`` filing errors for the portal in the last ``minutes`` (clients still unfiled first)."""

    id = "etax.inject_filing_errors"
    emergency_type = ETAX
    detector = "etax.filing_errors"

    def inject(self, ctx: InjectionContext, *, count: int = 5, minutes: float = 20, **_: Any) -> InjectionReport:
        agency = ctx.agency
        portal = src.load_targets(agency).resolve_portal(resource_name(ctx.resource, "etax"))
        path = agency.data_file(*src.FILING_ERRORS_FILE)
        existing = src.read_filing_errors(agency) if path.is_file() else None
        rows = [] if existing is None else [
            {**{c: getattr(r, c) for c in src.FILING_ERROR_COLUMNS if c != "at"}, "at": _iso(r.at.to_pydatetime())}
            for r in existing.itertuples(index=False)]
        period = src.current_period(ctx.now, agency.tz)
        unfiled = list(dict.fromkeys(src.unfiled_returns(agency, period)["client_id"])) or list(agency.client_ids)
        added = []
        for i in range(int(count)):
            code, msg = FILING_ERROR_MESSAGES[i % len(FILING_ERROR_MESSAGES)]
            at = ctx.now - timedelta(minutes=float(minutes) * i / max(1, int(count)))
            added.append({"at": _iso(at), "portal": portal, "client_id": unfiled[i % len(unfiled)], "tax": "vat",
                          "error_code": code, "message": msg})
        src.write_filing_errors(path, rows + added)
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"{len(added)} filing errors for portal {portal} in the last {float(minutes):g} min",
                               changes={"portal": portal, "errors": len(added)},
                               undo={"path": str(path), "added": added})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        df = src.read_filing_errors(ctx.agency)
        drop = Counter(json.dumps(a, sort_keys=True) for a in report.undo["added"])
        keep = []
        for r in df.itertuples(index=False):
            row = {**{c: getattr(r, c) for c in src.FILING_ERROR_COLUMNS if c != "at"}, "at": _iso(r.at.to_pydatetime())}
            k = json.dumps(row, sort_keys=True)
            if drop[k]:
                drop[k] -= 1
                continue
            keep.append(row)
        src.write_filing_errors(Path(report.undo["path"]), keep)


@register_injector
class SaasStatusInjector(Injector):
    """The saved status snapshot shows ``indicator`` with an open incident started ``minutes`` ago."""

    id = "saas.inject_status"
    emergency_type = SAAS
    detector = "saas.status_page"

    def inject(self, ctx: InjectionContext, *, indicator: str = "major", minutes: float = 300,
               description: str = "Partial System Outage", **_: Any) -> InjectionReport:
        agency = ctx.agency
        service = src.load_targets(agency).resolve_service(resource_name(ctx.resource, "saas"))
        path = src.status_snapshot_path(agency, service)
        before = path.read_text(encoding="utf-8") if path.is_file() else None
        data = json.loads(before) if before else {}
        started = ctx.now - timedelta(minutes=float(minutes))
        data.update(status={"indicator": indicator, "description": description}, fetched_at=_iso(ctx.now),
                    incidents=[{"name": "记账服务访问异常 / API errors and login failures", "status": "investigating",
                                "impact": indicator, "created_at": _iso(started),
                                "shortlink": "https://stspg.invalid/drill"}])
        src.save_status_snapshot(agency, service, data)
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"status snapshot of {service} now {indicator}, incident open "
                                       f"{float(minutes):g} min", changes={"service": service, "indicator": indicator},
                               undo={"path": str(path), "before": before})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        path = Path(report.undo["path"])
        if report.undo["before"] is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(report.undo["before"], encoding="utf-8")


@register_injector
class SaasApiErrorsInjector(Injector):
    """The SaaS API probes answer 503/time-out for the last ``minutes``."""

    id = "saas.inject_api_errors"
    emergency_type = SAAS
    detector = "saas.api_errors"

    def inject(self, ctx: InjectionContext, *, minutes: float = 30, interval_minutes: float = 5,
               statuses: list[int | str] | None = None, **_: Any) -> InjectionReport:
        cfg = src.load_targets(ctx.agency)
        service = cfg.resolve_service(resource_name(ctx.resource, "saas"))
        targets = [t.name for t in cfg.for_service(service)]
        undo = inject_probe_failures(ctx.agency, targets, now=ctx.now, minutes=float(minutes),
                                     interval_minutes=float(interval_minutes),
                                     statuses=list(statuses or [503, "timeout"]))
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"{len(undo['added'])} failing probes of {', '.join(targets)} over the last "
                                       f"{float(minutes):g} min", undo=undo,
                               changes={"service": service, "targets": targets, "failed_probes": len(undo["added"])})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        restore_probe_log(report.undo)


@register_injector
class SaasSyncLagInjector(Injector):
    """``clients`` clients (default all) of the service last synced ``lag_minutes`` before the check."""

    id = "saas.inject_sync_lag"
    emergency_type = SAAS
    detector = "saas.sync_lag"

    def inject(self, ctx: InjectionContext, *, lag_minutes: float = 180, clients: int | None = None,
               **_: Any) -> InjectionReport:
        agency = ctx.agency
        service = src.load_targets(agency).resolve_service(resource_name(ctx.resource, "saas"))
        path = src.sync_status_path(agency)
        before = path.read_text(encoding="utf-8")
        df = src.read_sync_status(agency)
        idx = df.index[df["service"] == service]
        if clients is not None:
            idx = idx[: int(clients)]
        now = pd.Timestamp(ctx.now)
        df.loc[df["service"] == service, "checked_at"] = now
        df.loc[idx, "last_sync_at"] = now - pd.Timedelta(minutes=float(lag_minutes))
        df.loc[idx, "status"] = "error"
        df.loc[idx, "message"] = "sync failed: upstream 503"
        src.write_sync_status(path, df)
        return InjectionReport(injector=self.id, resource=ctx.resource, detector=self.detector,
                               summary=f"{len(idx)} clients of {service} last synced {float(lag_minutes):g} min ago",
                               changes={"service": service, "clients": list(df.loc[idx, "client_id"])},
                               undo={"path": str(path), "before": before})

    def restore(self, ctx: InjectionContext, report: InjectionReport) -> None:
        Path(report.undo["path"]).write_text(report.undo["before"], encoding="utf-8")


__all__ = ["EtaxProbeDetector", "EtaxFilingErrorsDetector", "SaasStatusPageDetector", "SaasApiErrorsDetector",
           "SaasSyncLagDetector", "EtaxOutageInjector", "EtaxFilingErrorsInjector", "SaasStatusInjector",
           "SaasApiErrorsInjector", "SaasSyncLagInjector", "inject_probe_failures", "resource_name",
           "restore_probe_log", "service_clients", "next_deadline_facts"]
