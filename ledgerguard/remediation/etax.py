"""E-tax outage actions: tell "their outage" from "our network", queue the unfiled returns, and
mark them ready when the portal answers again.

The filing queue is ``etax/filing-queue.csv`` (``filing_queue``): one row per return
(client_id, period, tax, portal, status queued|ready|filed, queued_at, updated_at, incident_id).
Actually submitting a return needs the client's UKey/credentials in the e-tax client software,
which no program here holds: ``filing.retry`` makes the queue *ready* and the accountants file.
"""

from __future__ import annotations

import csv
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.detectors.probes import resource_name
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import probes as src

QUEUE_FILE = ("filing_queue", "etax/filing-queue.csv")
QUEUE_COLUMNS = ["client_id", "period", "tax", "portal", "status", "queued_at", "updated_at", "incident_id"]


def _iso(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="seconds")


def current_results(ctx: ActionContext, targets: list[src.ProbeTarget], *, probe_all: bool = False,
                    max_age_minutes: float | None = None) -> list[dict[str, Any]]:
    """Each target's state now: a live probe for live targets (or all with ``probe_all``), appended
    to the probe log; otherwise its newest logged result (``source: log``, with its age)."""
    live = [t for t in targets if t.live or probe_all]
    results: list[dict[str, Any]] = []
    fresh = [src.probe(t, now=ctx.now) for t in live]
    if fresh:
        src.append_probe_results(ctx.agency, fresh)
    results += [{**r.to_dict(), "source": "live"} for r in fresh]
    rest = [t for t in targets if t not in live]
    if rest:
        log = src.read_probe_log(ctx.agency)
        for t in rest:
            rows = log[(log["target"] == t.name) & (log["at"] <= pd.Timestamp(ctx.now))]
            if rows.empty:
                results.append({"target": t.name, "ok": None, "source": "log", "error": "no results"})
                continue
            r = rows.sort_values("at", kind="stable").iloc[-1]
            age = (ctx.now - r["at"].to_pydatetime()).total_seconds() / 60
            stale = max_age_minutes is not None and age > max_age_minutes
            results.append({"target": t.name, "at": _iso(r["at"].to_pydatetime()), "ok": None if stale else bool(r["ok"]),
                            "status": None if pd.isna(r["status"]) else int(r["status"]), "error": r["error"],
                            "source": "log", "age_minutes": round(age, 1), "stale": stale})
    return results


def _portal_targets(ctx: ActionContext) -> tuple[str, list[src.ProbeTarget], list[src.ProbeTarget]]:
    cfg = src.load_targets(ctx.agency)
    portal = cfg.resolve_portal(resource_name(ctx.resource, "etax"))
    return portal, cfg.for_portal(portal, ctx.params.get("endpoints")), cfg.controls()


@register_action("etax.confirm_external")
def confirm_external(ctx: ActionContext) -> ActionResult:
    """Probe the portal and the control targets (another province's portal, a public reference):
    portal failing while the controls answer → the outage is theirs; everything failing → look at
    our own network first."""
    try:
        portal, targets, controls = _portal_targets(ctx)
    except AgencyDataError as exc:
        raise ActionFailed(str(exc)) from None
    if not controls:
        raise ActionFailed(f"no control target (role: control) in {src.targets_path(ctx.agency)} to compare with")
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would probe {len(targets)} portal and {len(controls)} control targets",
                            {"dry_run": True, "targets": [t.name for t in targets + controls]})
    max_age = float(ctx.params.get("max_age_minutes", 30))
    portal_res = current_results(ctx, targets, max_age_minutes=max_age)
    control_res = current_results(ctx, controls, max_age_minutes=max_age)
    known_p = [r for r in portal_res if r["ok"] is not None]
    known_c = [r for r in control_res if r["ok"] is not None]
    output = {"portal": portal, "portal_results": portal_res, "control_results": control_res}
    if not known_p or not known_c:
        raise ActionFailed(f"cannot tell: no current result for the portal ({len(known_p)}) or the controls "
                           f"({len(known_c)}) within {max_age:g} min; probe from another network by hand", output)
    portal_down = not any(r["ok"] for r in known_p)
    controls_ok = any(r["ok"] for r in known_c)  # one reference answering shows our network works
    if not portal_down:
        output["verdict"] = "portal_answers"
        return ActionResult(True, f"portal {portal} answers now ({sum(1 for r in known_p if r['ok'])} of "
                                  f"{len(known_p)} endpoints ok)", output)
    if controls_ok:
        output["verdict"] = "external"
        output["outage_external"] = True
        return ActionResult(True, f"external outage confirmed: portal {portal} fails "
                                  f"({', '.join(sorted({str(r.get('error')) for r in known_p}))}) while "
                                  f"{len(known_c)} control target(s) answer", output)
    output["verdict"] = "our_network"
    output["outage_external"] = False
    raise ActionFailed(f"not confirmed external: every control target fails too "
                       f"({', '.join(r['target'] for r in known_c)}); check our own network/DNS first",
                       output)


def queue_path(agency) -> Path:
    return agency.data_file(*QUEUE_FILE)


def read_queue(agency) -> list[dict[str, str]]:
    path = queue_path(agency)
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows, start=2):
        if r.get("status") not in ("queued", "ready", "filed"):
            raise AgencyDataError(path, f"line {i}: status {r.get('status')!r} is not queued/ready/filed",
                                  field="status")
    return rows


def write_queue(agency, rows: list[dict[str, str]]) -> Path:
    path = queue_path(agency)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=QUEUE_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


@register_action("filing.queue")
def queue_filings(ctx: ActionContext) -> ActionResult:
    """Queue every return of the current period still unfiled in the filing tracker (idempotent)."""
    try:
        portal, _, _ = _portal_targets(ctx)
        period = str(ctx.params.get("period") or src.current_period(ctx.now, ctx.agency.tz))
        unfiled = src.unfiled_returns(ctx.agency, period, ctx.params.get("taxes"))
        rows = read_queue(ctx.agency)
    except AgencyDataError as exc:
        raise ActionFailed(str(exc)) from None
    have = {(r["client_id"], r["period"], r["tax"]) for r in rows}
    new = [{"client_id": r.client_id, "period": period, "tax": r.tax, "portal": portal, "status": "queued",
            "queued_at": _iso(ctx.now), "updated_at": _iso(ctx.now), "incident_id": ctx.incident_id}
           for r in unfiled.itertuples(index=False) if (r.client_id, period, r.tax) not in have]
    output = {"period": period, "portal": portal, "unfiled_returns": len(unfiled), "newly_queued": len(new),
              "already_queued": len(unfiled) - len(new), "queue": str(queue_path(ctx.agency)),
              "clients": sorted(set(unfiled["client_id"]))}
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would queue {len(new)} returns of {period}", {**output, "dry_run": True})
    if new:
        write_queue(ctx.agency, rows + new)
    return ActionResult(True, f"{len(unfiled)} unfiled returns of {period} for {len(output['clients'])} clients "
                              f"in the queue ({len(new)} new)", output)


@register_action("filing.retry")
def retry_filings(ctx: ActionContext) -> ActionResult:
    """Re-probe the portal; when every endpoint answers, mark the queued returns ready to file
    (returns the tracker already shows filed are marked filed). Fails while the portal still fails,
    so the runbook step retries."""
    try:
        portal, targets, _ = _portal_targets(ctx)
        rows = read_queue(ctx.agency)
        filings = ctx.agency.filings()
    except AgencyDataError as exc:
        raise ActionFailed(str(exc)) from None
    results = current_results(ctx, targets, max_age_minutes=float(ctx.params.get("max_age_minutes", 30)))
    output: dict[str, Any] = {"portal": portal, "results": results, "queue": str(queue_path(ctx.agency))}
    failing = [r for r in results if r["ok"] is not True]
    if failing:
        raise ActionFailed(f"portal {portal} still not answering: " + ", ".join(
            f"{r['target']} {r.get('error') or 'no current result'}" for r in failing), output)
    filed = {(r.client_id, r.period, r.tax) for r in filings.itertuples(index=False) if r.status == "filed"}
    ready = done = 0
    for r in rows:
        if r["portal"] != portal or r["status"] == "filed":
            continue
        if (r["client_id"], r["period"], r["tax"]) in filed:
            r["status"], done = "filed", done + 1
        elif r["status"] == "queued":
            r["status"], ready = "ready", ready + 1
        else:
            continue
        r["updated_at"] = _iso(ctx.now)
    output.update(marked_ready=ready, marked_filed=done,
                  open_returns=sum(1 for r in rows if r["portal"] == portal and r["status"] != "filed"))
    if ctx.dry_run:
        return ActionResult(True, f"dry run: portal answers; would mark {ready} ready, {done} filed",
                            {**output, "dry_run": True})
    write_queue(ctx.agency, rows)
    return ActionResult(True, f"portal {portal} answers again: {ready} queued returns ready to file, {done} already "
                              f"filed, {output['open_returns']} still to file", output)


__all__ = ["confirm_external", "current_results", "queue_filings", "read_queue", "retry_filings", "write_queue"]
