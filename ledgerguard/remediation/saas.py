"""``saas.export``: the offline path of a SaaS outage — a consistent copy of the latest ledger of
every affected client, plus the newest good backup's manifest, with a SHA-256 manifest, so the
accountants can keep booking (and the data survives a longer outage)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import timezone
from pathlib import Path

from ledgerguard import backups as bk
from ledgerguard.agency.models import AgencyDataError
from ledgerguard.detectors.probes import resource_name, service_clients
from ledgerguard.ledgers import connect, ledger_stats
from ledgerguard.remediation.base import ActionContext, ActionFailed, ActionResult, register_action
from ledgerguard.sources import probes as src


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy(src_path: Path, dst: Path) -> None:
    source = connect(src_path, read_only=True)
    try:
        target = sqlite3.connect(dst)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


@register_action("saas.export")
def export(ctx: ActionContext) -> ActionResult:
    agency = ctx.agency
    try:
        service = src.load_targets(agency).resolve_service(resource_name(ctx.resource, "saas"))
        clients = list(ctx.params.get("clients") or service_clients(agency, service))
    except (AgencyDataError, ValueError) as exc:
        raise ActionFailed(str(exc)) from None
    folder = ctx.incident_dir / "saas-export" / ctx.now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    if ctx.dry_run:
        return ActionResult(True, f"dry run: would export {len(clients)} ledgers of {service} to {folder}",
                            {"dry_run": True, "clients": len(clients), "folder": str(folder)})
    folder.mkdir(parents=True, exist_ok=True)
    files, missing = [], []
    for cid in clients:
        path = agency.ledger_path(cid)
        if not path.is_file():
            missing.append(cid)
            continue
        dst = folder / path.name
        _copy(path, dst)
        stats = ledger_stats(dst)
        files.append({"client_id": cid, "file": dst.name, "bytes": dst.stat().st_size, "sha256": _sha256(dst),
                      "vouchers": stats.vouchers, "balanced": stats.balanced})
    good = bk.newest_good_backup(agency)
    backup = None
    if good is not None:
        (folder / "newest-backup-manifest.json").write_text(good.manifest_path.read_text(encoding="utf-8"),
                                                            encoding="utf-8")
        backup = {"stamp": good.stamp, "taken_at": good.taken_at.isoformat(), "path": str(good.path)}
    manifest = {"service": service, "incident_id": ctx.incident_id, "exported_at": ctx.now.isoformat(),
                "files": files, "missing": missing, "newest_good_backup": backup}
    (folder / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
    output = {"folder": str(folder), "exported": len(files), "missing": missing, "newest_good_backup": backup}
    if not files:
        raise ActionFailed(f"no ledger to export for the {len(clients)} clients of {service}", output)
    return ActionResult(True, f"exported {len(files)} ledgers of {service} for offline work to {folder}"
                              + (f" ({len(missing)} missing)" if missing else ""), output)


__all__ = ["export"]
