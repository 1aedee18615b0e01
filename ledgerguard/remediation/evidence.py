"""``evidence.capture``: copy the data behind an availability or vendor incident into an evidence
folder with a SHA-256 manifest, so the record still holds when the live files move on.

``<evidence_dir or scratch_dir/evidence>/<resource>/<incident_id>/<UTC stamp>/`` holds, by resource:

* ``etax:<portal>`` / ``saas:<service>``: ``probe-log-window.csv`` (every probe result of the portal's or
  service's targets and the control targets in the window), ``http-results.json`` (a fresh probe of
  every live target plus the newest logged result of the others); saas adds the status snapshot and
  the sync-status export;
* ``office:<site>``: the alarm export lines of the site and the presence export;
* ``vendor:<id>``: the vendor's notices, its register entry and the matching threat-intel lines;

and ``manifest.json`` (file name, bytes, sha256, what it is) plus ``manifest.json.sha256``.
Screenshots need a browser this installation does not have: they are listed as skipped, for a person.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd

from ledgerguard.agency.models import AgencyDataError
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import probes as src


KINDS = ("etax", "saas", "office", "vendor")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "resource"


def evidence_root(ctx: ActionContext) -> Path:
    base = Path(ctx.params["evidence_dir"]) if ctx.params.get("evidence_dir") else ctx.scratch_dir / "evidence"
    return base / _safe(ctx.resource) / _safe(ctx.incident_id)


def _window_start(ctx: ActionContext, log: pd.DataFrame, names: list[str]) -> datetime:
    """From 30 min before the current failure run of these targets (or ``window_hours``, default 24)."""
    if ctx.params.get("window_hours"):
        return ctx.now - timedelta(hours=float(ctx.params["window_hours"]))
    starts = [r.first_failure_at for r in (src.trailing_failures(log, n, now=ctx.now,
                                                                 since=ctx.now - timedelta(days=2)) for n in names)
              if r.failing]
    if starts:
        return min(starts) - timedelta(minutes=30)
    return ctx.now - timedelta(hours=24)


def _probe_files(ctx: ActionContext, folder: Path, targets: list[src.ProbeTarget], what: list[str]) -> list[dict]:
    from ledgerguard.remediation.etax import current_results

    files = []
    log = src.read_probe_log(ctx.agency)
    names = [t.name for t in targets]
    start = _window_start(ctx, log, names)
    if "probe_log" in what:
        rows = src.log_rows(log, names, start=start, end=ctx.now)
        path = folder / "probe-log-window.csv"
        pd.DataFrame(rows, columns=src.PROBE_LOG_COLUMNS + ["line"]).to_csv(path, index=False, encoding="utf-8")
        files.append({"file": path.name, "what": f"probe results of {', '.join(names)} from {start.isoformat()} "
                                                 f"to {ctx.now.isoformat()} (line = line in {src.probe_log_path(ctx.agency).name})",
                      "rows": len(rows)})
    if "http_results" in what:
        results = current_results(ctx, targets)
        path = folder / "http-results.json"
        path.write_text(json.dumps({"captured_at": ctx.now.isoformat(), "results": results}, ensure_ascii=False,
                                   indent=2, default=str), encoding="utf-8")
        files.append({"file": path.name, "what": "a fresh probe of every live target, the newest logged result "
                                                 "of the others", "rows": len(results)})
    return files


def _copy(folder: Path, source: Path, what: str, name: str | None = None) -> dict:
    dst = folder / (name or source.name)
    shutil.copy2(source, dst)
    return {"file": dst.name, "what": what, "source": str(source)}


@register_action("evidence.capture")
def capture(ctx: ActionContext) -> ActionResult:
    what = list(ctx.params.get("what") or ["probe_log", "http_results"])
    kind, _, name = ctx.resource.partition(":")
    if not name:
        raise ActionFailed(f"resource {ctx.resource!r} is not of the form <kind>:<name>")
    if kind not in KINDS:
        raise ActionFailed(f"evidence.capture does not know resources of kind {kind!r} ({', '.join(KINDS)})")
    folder = evidence_root(ctx) / ctx.now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would capture {', '.join(what)} into {folder}",
                            {"dry_run": True, "folder": str(folder)})
    folder.mkdir(parents=True, exist_ok=True)
    skipped: list[dict[str, str]] = []
    try:
        files = _collect(ctx, kind, name, folder, what, skipped)
    except (AgencyDataError, ValueError) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise ActionFailed(f"cannot capture evidence: {exc}") from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    for f in files:
        p = folder / f["file"]
        f.update(bytes=p.stat().st_size, sha256=_sha256(p))
    manifest = {"resource": ctx.resource, "incident_id": ctx.incident_id, "captured_at": ctx.now.isoformat(),
                "files": files, "skipped": skipped}
    mpath = folder / "manifest.json"
    mpath.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    digest = _sha256(mpath)
    (folder / "manifest.json.sha256").write_text(f"{digest}  manifest.json\n", encoding="utf-8")
    return ActionResult(True, f"{len(files)} evidence file(s) with a SHA-256 manifest in {folder}"
                              + (f"; skipped: {', '.join(s['what'] for s in skipped)}" if skipped else ""),
                        {"folder": str(folder), "manifest": str(mpath), "manifest_sha256": digest,
                         "files": files, "skipped": skipped})


def _collect(ctx: ActionContext, kind: str, name: str, folder: Path, what: list[str],
             skipped: list[dict[str, str]]) -> list[dict]:
    agency = ctx.agency
    if kind == "etax":
        cfg = src.load_targets(agency)
        portal = cfg.resolve_portal(name)
        files = _probe_files(ctx, folder, cfg.for_portal(portal) + cfg.controls(), what)
        if "screenshots" in what:
            skipped.append({"what": "screenshots", "why": "no headless browser is installed here; take "
                                                          "screenshots of the portal's error page by hand"})
        return files
    if kind == "saas":
        cfg = src.load_targets(agency)
        service = cfg.resolve_service(name)
        files = _probe_files(ctx, folder, cfg.for_service(service), [w for w in what if w != "screenshots"]
                             or ["probe_log", "http_results"])
        snap = src.status_snapshot_path(agency, service)
        if snap.is_file():
            files.append(_copy(folder, snap, "last saved vendor status page", f"status-{service}.json"))
        sync = src.sync_status_path(agency)
        if sync.is_file():
            files.append(_copy(folder, sync, "sync-status export"))
        return files
    if kind == "office":
        from ledgerguard.sources import facilities as fac

        site = fac.site(agency, name)
        alarms = fac.alarms_path(agency)
        lines = [ln for ln in alarms.read_text(encoding="utf-8").splitlines()
                 if ln.strip() and json.loads(ln).get("site") == site["id"]]
        path = folder / "alarms-site.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        files = [{"file": path.name, "what": f"UPS/ISP alarm lines of site {site['id']}", "rows": len(lines)}]
        if fac.presence_path(agency).is_file():
            files.append(_copy(folder, fac.presence_path(agency), "staff presence export"))
        return files
    if kind == "vendor":
        from ledgerguard.sources import vendors as ven

        v = ven.vendor(agency, name)
        files = [_copy(folder, p, f"vendor notice {n.title}") for p, n in ven.read_notices(agency) if n.vendor_id == v.id]
        path = folder / "vendor-register-entry.json"
        path.write_text(v.model_dump_json(indent=2), encoding="utf-8")
        files.append({"file": path.name, "what": f"register entry of {v.id}"})
        return files
    raise ActionFailed(f"evidence.capture does not know resources of kind {kind!r} "
                       f"(etax, saas, office, vendor)")


__all__ = ["capture", "evidence_root"]
