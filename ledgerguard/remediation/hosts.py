"""Host and forensic actions: isolate hosts (the quarantine list the file-share monitor honours),
snapshot evidence with a SHA-256 manifest, and find the newest clean backup from before the
first malicious event."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from ledgerguard import backups as bk
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import fileshare as fs
from ledgerguard.sources import logs as lg

TYPE_BY_PREFIX = {"fileserver": "ransomware", "user": "insider_exfiltration", "account": "account_takeover"}

# evidence source name → (data_files name, default path)
EVIDENCE_SOURCES: dict[str, tuple[str, str]] = {
    "auth_log": lg.AUTH_LOG, "dlp_log": lg.DLP_LOG, "mail_clicks": lg.MAIL_CLICKS, "staff": lg.STAFF,
    "accounts": lg.ACCOUNTS, "file_events": fs.FILE_EVENTS, "edr_alerts": fs.EDR_ALERTS,
    "isolated_hosts": fs.ISOLATED_HOSTS, "certificate_inventory": ("certificate_inventory", "certificates/inventory.csv"),
}


def _detect(ctx: ActionContext):
    """The type's detectors (catalog params) on live data, for the facts an action needs."""
    from ledgerguard.catalog import load_catalog
    from ledgerguard.config import get_settings
    from ledgerguard.response.detection import run_detectors

    prefix = ctx.resource.split(":", 1)[0]
    if prefix not in TYPE_BY_PREFIX:
        raise ValueError(f"resource {ctx.resource!r}: expected fileserver:<share>, user:… or account:…")
    entry = load_catalog(get_settings().catalog_dir).get(TYPE_BY_PREFIX[prefix])
    return run_detectors(entry=entry, agency=ctx.agency, resource=ctx.resource, scratch_dir=ctx.incident_dir,
                         now=ctx.now)


def _remember(ctx: ActionContext, name: str, compute) -> Any:
    """A value computed once per incident (kept in the incident folder)."""
    path = ctx.incident_dir / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))["value"]
    value = compute()
    if not ctx.dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"value": value, "at": ctx.now.isoformat()}, ensure_ascii=False), encoding="utf-8")
    return value


@register_action("host.isolate")
def isolate(ctx: ActionContext) -> ActionResult:
    """Put the infected hosts (``params.hosts``, else those the detectors name) on the isolation
    list it/isolated-hosts.json; the monitor then flags their later events as isolated."""
    fs.parse_share(ctx.resource)

    def compute() -> list[str]:
        detection = _detect(ctx)
        return sorted({h for f in detection.findings for h in (f.facts.get("hosts") or [])})

    hosts = [str(h) for h in ctx.params.get("hosts") or _remember(ctx, "isolate-hosts", compute)]
    if not hosts:
        raise ActionFailed(f"no infected host named by the detectors on {ctx.resource}; give params.hosts")
    current = fs.isolated_hosts(ctx.agency)
    new = [h for h in hosts if h not in current]
    out = {"hosts": hosts, "isolated": new, "already_isolated": [h for h in hosts if h in current],
           "list": str(ctx.agency.data_file(*fs.ISOLATED_HOSTS))}
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would isolate {', '.join(new) or 'nothing new'}", {**out, "dry_run": True})
    for h in new:
        current[h] = {"isolated_at": ctx.now.isoformat(), "incident": ctx.incident_id,
                      "reason": str(ctx.params.get("reason") or f"ransomware response {ctx.incident_id}")}
    if new:
        fs.write_isolated_hosts(ctx.agency, current)
    return ActionResult(True, f"isolated {', '.join(new) or 'nothing new'}"
                              + (f"; already isolated: {', '.join(out['already_isolated'])}" if out["already_isolated"] else ""),
                        out)


def _copy_versioned(src: Path, folder: Path, manifest: dict[str, Any], label: str) -> dict[str, Any]:
    """Copy ``src`` unless the same bytes are already kept; never overwrite a kept copy."""
    sha = bk.sha256_file(src)
    for item in manifest["files"]:
        if item["source"] == str(src) and item["sha256"] == sha:
            return {**item, "already": True}
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / src.name
    n = 1
    while dest.exists():
        dest = folder / f"{src.stem}.{n}{src.suffix}"
        n += 1
    shutil.copy2(src, dest)
    if bk.sha256_file(dest) != sha:
        raise ActionFailed(f"copy of {src} does not match its sha256")
    item = {"source": str(src), "label": label, "path": str(dest), "sha256": sha, "bytes": dest.stat().st_size,
            "copied_at": datetime.now().astimezone().isoformat()}
    manifest["files"].append(item)
    return item


@register_action("evidence.snapshot")
def snapshot(ctx: ActionContext) -> ActionResult:
    """Copy the named sources (``params.sources``: auth_log, dlp_log, mail_clicks, file_events,
    edr_alerts, ransom_note, staff, accounts, …) into ``<scratch>/<incident>/evidence/`` with a
    ``manifest.json`` of SHA-256 checksums. Re-running adds only what changed since."""
    sources = list(ctx.params.get("sources") or ["auth_log", "dlp_log", "file_events"])
    folder = Path(ctx.params.get("dest") or ctx.incident_dir / "evidence")
    manifest_path = folder / "manifest.json"
    manifest = (json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.is_file()
                else {"incident": ctx.incident_id, "resource": ctx.resource, "files": []})
    wanted: list[tuple[str, Path]] = []
    missing: list[str] = []
    for name in sources:
        if name == "ransom_note":
            share = fs.parse_share(ctx.resource) if ctx.resource.startswith("fileserver:") else None
            roots = [fs.share_path(ctx.agency, share)] if share else [ctx.agency.data_file(*fs.SHARES_ROOT)]
            notes = [p for r in roots if r.is_dir() for p in fs.scan_ransom_notes(r, ["README_DECRYPT*", "*DECRYPT*.txt",
                                                                                       "*RESTORE_FILES*"], limit=50)]
            wanted += [("ransom_note", p) for p in notes]
            if not notes:
                missing.append("ransom_note")
            continue
        if name not in EVIDENCE_SOURCES:
            raise ActionFailed(f"unknown evidence source {name!r}; known: ransom_note, {', '.join(EVIDENCE_SOURCES)}")
        path = ctx.agency.data_file(*EVIDENCE_SOURCES[name])
        if path.is_file():
            wanted.append((name, path))
        else:
            missing.append(name)
    if not wanted:
        raise ActionFailed(f"none of the evidence sources exist: {', '.join(sources)}")
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would copy {len(wanted)} file(s) to {folder}",
                            {"files": [str(p) for _, p in wanted], "missing": missing, "dry_run": True})
    items = []
    for label, path in wanted:
        sub = folder / (label if label != "ransom_note" else f"ransom_note/{hashlib.sha256(str(path.parent).encode()).hexdigest()[:8]}")
        items.append(_copy_versioned(path, sub, manifest, label))
    manifest["updated_at"] = ctx.now.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    tmp = manifest_path.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    os.replace(tmp, manifest_path)
    new = [i for i in items if not i.get("already")]
    return ActionResult(True, f"evidence kept in {folder}: {len(new)} new file(s), {len(items) - len(new)} "
                              f"unchanged" + (f"; not found: {', '.join(missing)}" if missing else ""),
                        {"folder": str(folder), "manifest": str(manifest_path), "files": items, "missing": missing})


@register_action("backup.find_clean")
def find_clean(ctx: ActionContext) -> ActionResult:
    """The newest good backup set taken before the first malicious event (``params.before``, else
    the detectors' first_malicious_at / first_rename_at) whose files still match their manifest
    and start with the SQLite header. Recorded as ``<scratch>/<incident>/clean-backup.json``."""
    before_text = ctx.params.get("before")
    if not before_text:
        def compute() -> str | None:
            facts = _detect(ctx).facts
            stamps = [facts.get(k) for k in ("first_malicious_at", "first_rename_at", "first_at", "first_export_at")]
            stamps = [s for s in stamps if s]
            return min(stamps, key=lambda s: datetime.fromisoformat(s)) if stamps else None

        before_text = _remember(ctx, "first-malicious", compute)
    before = datetime.fromisoformat(before_text) if before_text else None
    checked = []
    for s in bk.list_backup_sets(ctx.agency):
        if not s.good or (before is not None and s.taken_at >= before):
            continue
        mismatches = bk.verify_checksums(s)
        unreadable = []
        for entry in s.files:
            with open(s.file_path(entry), "rb") as fh:
                if fh.read(16) != fs.SQLITE_HEADER:
                    unreadable.append(entry.client_id)
        checked.append({"backup_set": s.stamp, "mismatches": len(mismatches), "unreadable": unreadable[:20]})
        if mismatches or unreadable:
            continue
        age = s.age_hours(ctx.now)
        rpo = float(ctx.agency.config.rpo_hours)
        out = {"backup_set": s.stamp, "path": str(s.path), "taken_at": s.taken_at.isoformat(),
               "age_hours": round(age, 2), "rpo_hours": rpo, "rpo_breached": age > rpo, "files": len(s.files),
               "first_malicious_at": before_text, "checked": checked}
        if not ctx.dry_run:
            ctx.incident_dir.mkdir(parents=True, exist_ok=True)
            (ctx.incident_dir / "clean-backup.json").write_text(json.dumps(out, ensure_ascii=False, indent=2),
                                                                encoding="utf-8")
        return ActionResult(True, f"clean backup {s.stamp} ({age:.1f} h old, {len(s.files)} ledgers, taken before "
                                  f"{before_text or 'now'}; checksums and headers verified)"
                                  + ("; older than the RPO" if age > rpo else ""), out)
    raise ActionFailed(f"no good backup set from before {before_text or 'now'} passes its checksums and "
                       f"header checks", {"checked": checked, "first_malicious_at": before_text})


__all__ = ["isolate", "snapshot", "find_clean"]
